"""Request counts and latency histograms in Prometheus' text format, at TF Serving's
``/monitoring/prometheus/metrics``.

The ``:tensorflow:serving:*`` series carry TF Serving's own names, label names and buckets (its
``/tensorflow/serving/request_count`` counter by ``model_name`` and ``status``, and its
``/tensorflow/serving/request_latency`` histogram in microseconds by ``model_name``, ``API`` and ``entrypoint``, with
TF Serving's exponential buckets 10 × 1.8^i), so dashboards and alerts written against one work against the
other. TF Serving does not break them down by version or signature; the ``:tfrec_xcat:serving:*`` series add that
(``version``, ``signature_name``), and ``:tfrec_xcat:serving:batch_size`` counts the rows of each model call when
batching is on.

``prometheus_client`` is not used: it is not installed in the project's environment, and the text format for two
metric kinds is a few lines, so it would be a new dependency for little.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable

PATH = "/monitoring/prometheus/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# TF Serving's request_latency buckets: Exponential(10, 1.8, 33), i.e. 10 × 1.8^i µs for i < 32, then +Inf
LATENCY_BUCKETS_US: tuple[float, ...] = tuple(10 * 1.8**i for i in range(32))
BATCH_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.sum = 0.0

    def add(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value


class Metrics:
    """Thread-safe counters and histograms for one server (REST and gRPC share one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._request_count: dict[tuple[str, str], int] = {}
        self._request_latency: dict[tuple[str, str, str], _Histogram] = {}
        self._xcat_count: dict[tuple[str, ...], int] = {}
        self._xcat_latency: dict[tuple[str, ...], _Histogram] = {}
        self._batch_size: dict[tuple[str, str, str], _Histogram] = {}

    def record(
        self,
        model: str,
        version: int | None,
        signature: str,
        api: str,
        entrypoint: str,
        status: str,
        seconds: float,
    ) -> None:
        """One request that reached a model by name: its status (``OK``, ``INVALID_ARGUMENT``, ...) and wall time.

        The latency histograms take every request that named a loaded model, as TF Serving's do; ``version`` is
        None when the request never got to one (an unknown version or label)."""
        micros = seconds * 1e6
        v = "" if version is None else str(version)
        with self._lock:
            key = (model, status)
            self._request_count[key] = self._request_count.get(key, 0) + 1
            lat_key = (model, api, entrypoint)
            if lat_key not in self._request_latency:
                self._request_latency[lat_key] = _Histogram(LATENCY_BUCKETS_US)
            self._request_latency[lat_key].add(micros)
            xkey = (model, v, signature, api, entrypoint, status)
            self._xcat_count[xkey] = self._xcat_count.get(xkey, 0) + 1
            xlat = (model, v, signature, api, entrypoint)
            if xlat not in self._xcat_latency:
                self._xcat_latency[xlat] = _Histogram(LATENCY_BUCKETS_US)
            self._xcat_latency[xlat].add(micros)

    def record_batch(self, model: str, version: int, signature: str, rows: int) -> None:
        with self._lock:
            key = (model, str(version), signature)
            if key not in self._batch_size:
                self._batch_size[key] = _Histogram(BATCH_BUCKETS)
            self._batch_size[key].add(rows)

    def render(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        with self._lock:
            lines: list[str] = []
            lines += _counter(
                ":tensorflow:serving:request_count",
                "The total number of requests.",
                ("model_name", "status"),
                self._request_count.items(),
            )
            lines += _histograms(
                ":tensorflow:serving:request_latency",
                "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
                ("model_name", "API", "entrypoint"),
                self._request_latency.items(),
            )
            lines += _counter(
                ":tfrec_xcat:serving:request_count",
                "Requests by model, version, signature, API, entrypoint and status.",
                ("model_name", "version", "signature_name", "API", "entrypoint", "status"),
                self._xcat_count.items(),
            )
            lines += _histograms(
                ":tfrec_xcat:serving:request_latency",
                "Wall time (in microseconds) of requests by model, version, signature, API and entrypoint.",
                ("model_name", "version", "signature_name", "API", "entrypoint"),
                self._xcat_latency.items(),
            )
            lines += _histograms(
                ":tfrec_xcat:serving:batch_size",
                "Rows per model call with server-side batching on.",
                ("model_name", "version", "signature_name"),
                self._batch_size.items(),
            )
        return "\n".join(lines) + "\n"


def _counter(name: str, help_text: str, names: tuple[str, ...], items: Iterable) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
    lines += [f"{name}{_labels(names, key)} {value}" for key, value in sorted(items)]
    return lines


def _histograms(name: str, help_text: str, names: tuple[str, ...], items: Iterable) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    for key, histogram in sorted(items, key=lambda kv: kv[0]):
        cumulative = 0
        for i, count in enumerate(histogram.counts):
            cumulative += count
            le = "+Inf" if i == len(histogram.buckets) else _number(histogram.buckets[i])
            bound = f'le="{le}"'
            lines.append(f"{name}_bucket{_labels(names, key, bound)} {cumulative}")
        lines.append(f"{name}_sum{_labels(names, key)} {_number(histogram.sum)}")
        lines.append(f"{name}_count{_labels(names, key)} {cumulative}")
    return lines
