"""Server-side batching of concurrent requests, configured like TF Serving's ``--enable_batching`` with the
``batching_parameters.txt`` that ``tfrec-xcat export`` writes.

Requests to the same model version and signature that arrive together are run as one call of the model and
the answer is split back by rows, as TF Serving's batching session does:

- ``max_batch_size``: rows per model call. A request with more rows than that runs on its own (TF Serving
  refuses it unless ``enable_large_batch_splitting`` is set).
- ``batch_timeout_micros``: the longest a request waits for others to join its batch. Unlike TF Serving, which
  always waits that long for a batch that is not full, a batch here also closes as soon as every request the
  server has in hand for the model has joined it, so a lone request never waits.
- ``num_batch_threads``: batches run at once; ``max_enqueued_batches``: closed batches waiting to run (more are
  refused: HTTP 503, gRPC UNAVAILABLE, as TF Serving's "queue is full"); ``allowed_batch_sizes``: a batch is
  padded with copies of its first row up to the next allowed size, and those rows are dropped from the answer.
- ``pad_variable_length_inputs``: inputs whose signature documents ``""`` as padding (``history``) are padded
  with ``""`` to the longest in the batch. TF Serving pads every input with its first value, which for
  ``history`` repeats an item and so changes the answer; here every batched answer is exactly the unbatched one.
  For that, requests share a batch only if their other inputs have the same shape past the batch dimension and
  their integer inputs the same set of values (``k``: a retrieval batch returns its largest ``k``).

If a batch fails in the model, each of its requests is run again on its own, so an error reaches only the
request that caused it.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfrec_xcat.serving.metrics import Metrics
from tfrec_xcat.serving.predict import call, check, check_outputs
from tfrec_xcat.serving.registry import BadRequest, Servable

PADDED_INPUTS = ("history",)  # inputs whose signature documents "" as padding
MAX_KEY_VALUES = 64  # distinct integer values a request may carry and still be batched


class Unavailable(RuntimeError):
    """The batch queue is full (HTTP 503, gRPC UNAVAILABLE)."""


@dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's ``BatchingParameters`` (its defaults where the file says nothing)."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 1000
    num_batch_threads: int = 4
    pad_variable_length_inputs: bool = False
    allowed_batch_sizes: tuple[int, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"batching parameter {name} must be at least 1, got {getattr(self, name)}")
        if self.batch_timeout_micros < 0:
            raise ValueError(f"batching parameter batch_timeout_micros must be >= 0, got {self.batch_timeout_micros}")
        sizes = self.allowed_batch_sizes
        if sizes and (list(sizes) != sorted(set(sizes)) or sizes[-1] != self.max_batch_size or sizes[0] < 1):
            raise ValueError(
                f"allowed_batch_sizes {list(sizes)} must increase and end at max_batch_size {self.max_batch_size}"
            )


_INT_FIELDS = ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads")
_IGNORED = ("thread_pool_name", "enable_large_batch_splitting", "max_execution_batch_size", "num_batch_threads_max")
_ENTRY = re.compile(r"(\w+)\s*(?:\{\s*value\s*:\s*([^\s{}]+)\s*\}|:\s*([^\s{}]+))")


def read_batching_parameters(path: str | Path) -> BatchingParameters:
    """Parse a ``--batching_parameters_file`` (text ``BatchingParameters``); one-line ValueError if it is not one."""
    text = re.sub(r"#[^\n]*", "", Path(path).read_text())
    values: dict[str, Any] = {}
    sizes: list[int] = []
    for match in _ENTRY.finditer(text):
        name, raw = match.group(1), match.group(2) or match.group(3)
        raw = raw.strip("'\"")
        try:
            if name in _INT_FIELDS:
                values[name] = int(raw)
            elif name == "allowed_batch_sizes":
                sizes.append(int(raw))
            elif name == "pad_variable_length_inputs":
                if raw not in ("true", "false"):
                    raise ValueError(raw)
                values[name] = raw == "true"
            elif name not in _IGNORED:
                raise ValueError(f"unknown field {name!r}")
        except ValueError as exc:
            raise ValueError(f"{path}: bad batching parameter {name}: {exc}") from None
    leftover = _ENTRY.sub("", text).strip()
    if leftover:
        raise ValueError(f"{path}: cannot read {leftover[:60]!r} as a batching parameter")
    return BatchingParameters(**values, allowed_batch_sizes=tuple(sizes))


class _Task:
    __slots__ = ("arrays", "done", "error", "result", "rows")

    def __init__(self, arrays: dict[str, np.ndarray], rows: int) -> None:
        self.arrays, self.rows = arrays, rows
        self.done = threading.Event()
        self.result: dict[str, np.ndarray] | None = None
        self.error: BaseException | None = None


class _Batch:
    __slots__ = ("closed", "rows", "tasks")

    def __init__(self) -> None:
        self.tasks: list[_Task] = []
        self.rows = 0
        self.closed = False


class Batcher:
    """Runs checked requests (:meth:`run`, a drop-in for :func:`tfrec_xcat.serving.predict.run`) in batches.

    Request handlers announce a request for a model with :meth:`expecting` as soon as they know the model's name,
    before decoding the request; a batch stops waiting when no announced request is still on its way."""

    def __init__(
        self, params: BatchingParameters, metrics: Metrics | None = None, padded_inputs: tuple[str, ...] = PADDED_INPUTS
    ) -> None:
        self.params = params
        self.metrics = metrics
        self.padded_inputs = padded_inputs if params.pad_variable_length_inputs else ()
        self._cond = threading.Condition()
        self._open: dict[tuple[Any, ...], _Batch] = {}
        self._pending: dict[str, int] = {}
        self._enqueued = 0
        self._threads = threading.BoundedSemaphore(params.num_batch_threads)
        self._local = threading.local()

    # ------------------------------------------------------------------------------------ announced requests
    @contextmanager
    def expecting(self, model: str) -> Iterator[None]:
        with self._cond:
            self._pending[model] = self._pending.get(model, 0) + 1
        self._local.model = model
        try:
            yield
        finally:
            with self._cond:
                self._arrived_locked()

    def _arrived_locked(self) -> None:
        """The current thread's announced request joined a batch or gave up (once per announcement)."""
        model = getattr(self._local, "model", None)
        if model is None:
            return
        self._local.model = None
        self._pending[model] -= 1
        if not self._pending[model]:
            del self._pending[model]
        self._cond.notify_all()

    # ------------------------------------------------------------------------------------------------ running
    def _key(self, servable: Servable, arrays: dict[str, np.ndarray]) -> tuple[Any, ...] | None:
        """Requests with equal keys can share a batch and get exactly their unbatched answers; None: run alone."""
        if not arrays:
            return None
        parts: list[Any] = [servable.name, servable.version, servable.signature_name, id(servable.loaded)]
        for name in sorted(arrays):
            a = arrays[name]
            if a.ndim == 0:
                return None
            if name in self.padded_inputs and a.dtype == object:
                parts.append((name, a.ndim))
            elif a.dtype.kind in "iu":
                distinct = np.unique(a)
                if distinct.size > MAX_KEY_VALUES:
                    return None
                parts.append((name, a.shape[1:], tuple(distinct.tolist())))
            else:
                parts.append((name, a.shape[1:]))
        return tuple(parts)

    def run(self, servable: Servable, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        check(servable, arrays)  # this request's own errors, before it joins anyone
        rows = next(iter(arrays.values())).shape[0] if arrays and next(iter(arrays.values())).ndim else 0
        key = self._key(servable, arrays)
        if key is None or rows == 0 or rows > self.params.max_batch_size:
            with self._cond:
                self._arrived_locked()
            result = check_outputs(call(servable, arrays))
            if self.metrics is not None and rows:
                self.metrics.record_batch(servable.name, servable.version, servable.signature_name, rows)
            return result
        task = _Task(arrays, rows)
        with self._cond:
            self._arrived_locked()
            batch = self._open.get(key)
            leader = batch is None or batch.rows + rows > self.params.max_batch_size
            if leader:
                if batch is not None:
                    self._close_locked(key, batch)
                if self._enqueued >= self.params.max_enqueued_batches:
                    raise Unavailable("The batch scheduling queue to which this task was submitted is full")
                batch = _Batch()
                self._open[key] = batch
                self._enqueued += 1
            assert batch is not None
            batch.tasks.append(task)
            batch.rows += rows
            if batch.rows >= self.params.max_batch_size:
                self._close_locked(key, batch)
        if leader:
            self._lead(servable, key, batch)
        else:
            task.done.wait()
        if task.error is not None:
            raise task.error
        assert task.result is not None
        return task.result

    def _close_locked(self, key: tuple[Any, ...], batch: _Batch) -> None:
        batch.closed = True
        if self._open.get(key) is batch:
            del self._open[key]
        self._cond.notify_all()

    def _lead(self, servable: Servable, key: tuple[Any, ...], batch: _Batch) -> None:
        """Wait for the batch to fill (or the timeout, or no one else on the way), then run it."""
        deadline = time.monotonic() + self.params.batch_timeout_micros / 1e6
        with self._cond:
            while not batch.closed and self._pending.get(servable.name, 0) > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            self._close_locked(key, batch)
        try:
            with self._threads:
                with self._cond:
                    self._enqueued -= 1
                self._process(servable, batch.tasks)
        finally:
            for task in batch.tasks:
                if task.result is None and task.error is None:
                    task.error = RuntimeError("the batch was not run")
                task.done.set()

    def _process(self, servable: Servable, tasks: list[_Task]) -> None:
        total = sum(t.rows for t in tasks)
        try:
            if len(tasks) == 1:
                outputs = call(servable, tasks[0].arrays)
                results = [outputs]
            else:
                merged = {name: _stack([t.arrays[name] for t in tasks]) for name in tasks[0].arrays}
                size = next((s for s in self.params.allowed_batch_sizes if s >= total), total)
                if size > total:  # pad the batch with copies of its first row, as TF Serving does
                    merged = {n: np.concatenate([a, np.repeat(a[:1], size - total, axis=0)]) for n, a in merged.items()}
                outputs = call(servable, merged)
                if any(v.ndim == 0 or v.shape[0] != size for v in outputs.values()):
                    raise BadRequest("an output is not batched along its first dimension")
                results, start = [], 0
                for t in tasks:
                    results.append({n: v[start : start + t.rows] for n, v in outputs.items()})
                    start += t.rows
        except BadRequest as exc:
            if len(tasks) == 1:
                tasks[0].error = exc
                return
            for t in tasks:  # one request's problem must not fail the others: each again, on its own
                try:
                    t.result = check_outputs(call(servable, t.arrays))
                except Exception as alone:
                    t.error = alone
            return
        except Exception as exc:
            for t in tasks:
                t.error = exc
            return
        if self.metrics is not None:
            self.metrics.record_batch(servable.name, servable.version, servable.signature_name, total)
        for t, result in zip(tasks, results, strict=True):
            try:
                t.result = check_outputs(result)
            except BadRequest as exc:
                t.error = exc


def _stack(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate along rows, padding the other dimensions to the largest (with "" or 0) where they differ."""
    shape = tuple(max(p.shape[d] for p in parts) for d in range(1, parts[0].ndim))
    padded = []
    for p in parts:
        if p.shape[1:] != shape:
            out = np.full((p.shape[0], *shape), b"" if p.dtype == object else 0, dtype=p.dtype)
            out[tuple(slice(0, d) for d in p.shape)] = p
            p = out
        padded.append(p)
    return np.concatenate(padded)
