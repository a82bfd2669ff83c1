"""TF Serving parity of ``tfrec-xcat serve`` (issue 16), checked with the client code a TF Serving user has: the
``tensorflow-serving-api`` stubs (``ModelService``, ``PredictionService``) and plain HTTP.

- gRPC ``ModelService.GetModelStatus`` and ``PredictionService.GetModelMetadata`` (every signature_def);
- version labels (``stable``, ``canary``) and version policies from ``models.config``, on REST and gRPC;
- ``signature_name`` selects another signature of the SavedModel;
- ``/monitoring/prometheus/metrics``: TF Serving's request count and latency histogram, plus per version and
  signature;
- server-side batching with TF Serving's ``batching_parameters.txt``: batched answers are exactly the unbatched
  ones, and one bad request in a batch fails only itself;
- the popularity fallback's ``scores`` scale is the one docs/serving.md states.

The server runs as a subprocess on loopback ports chosen by the OS; nothing here asserts on time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tests.servers import launch_server, stop_server
from tfrec_xcat.serving.batching import Batcher, BatchingParameters, read_batching_parameters
from tfrec_xcat.serving.metrics import Metrics
from tfrec_xcat.serving.predict import run
from tfrec_xcat.serving.registry import BadRequest, Registry, Servable

REPO = Path(__file__).resolve().parents[1]
USERS = ["u0000001", "u0000002", "nobody", "u0000003"]
HISTORIES = [["FOO00003", "KIT00004", "FOO00007"], ["FOO00001"], [], ["KIT00002", "FOO00010"]]
MODELS_CONFIG = """model_config_list {
  config {
    name: 'xcat_item_tower'
    base_path: '/models/xcat_item_tower'
    model_platform: 'tensorflow'
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: 'stable' value: 1 }
    version_labels { key: 'canary' value: 2 }
  }
  config {
    name: 'xcat_retrieval'
    base_path: '/models/xcat_retrieval'
    model_platform: 'tensorflow'
    version_labels { key: 'stable' value: 1 }
  }
}
"""


class Server:
    """``python -m tfrec_xcat serve`` with ``extra`` flags on free loopback ports."""

    def __init__(self, models: Path, log: Path, extra: list[str]) -> None:
        self.log = log
        self.proc, line = launch_server(models, log, tuple(extra))
        match = re.search(r"REST (http://127\.0\.0\.1:\d+), gRPC (127\.0\.0\.1:\d+) \(batching (on|off)\)", line)
        assert match, f"the server did not start: {line!r}\n{log.read_text()[-3000:]}"
        self.rest, self.grpc, self.batching = match.groups()
        self.channel = grpc.insecure_channel(self.grpc)

    def stop(self) -> None:
        self.channel.close()
        stop_server(self.proc)


@pytest.fixture(scope="module")
def models(exported: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The export, with a second xcat_item_tower version and a models.config with labels."""
    folder = tmp_path_factory.mktemp("served-parity")
    shutil.copytree(exported, folder, dirs_exist_ok=True)
    shutil.copytree(folder / "xcat_item_tower" / "1", folder / "xcat_item_tower" / "2")
    (folder / "models.config").write_text(MODELS_CONFIG)
    return folder


@pytest.fixture(scope="module")
def server(models: Path):
    process = Server(models, models.parent / "parity-stderr.txt", [])
    yield process
    process.stop()


def http(base: str, path: str, body: Any = None) -> tuple[int, Any, str]:
    """(status, parsed JSON or text, Content-Type) of a GET, or of a POST of ``body`` as JSON."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            status, payload, kind = reply.status, reply.read(), reply.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, payload, kind = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    text = payload.decode()
    return status, (json.loads(text) if "json" in kind else text), kind


def spec(request: Any, model: str, version: int | None = None, label: str | None = None) -> None:
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label


def status_call(server: Server, model: str, **choice: Any) -> Any:
    request = get_model_status_pb2.GetModelStatusRequest()
    spec(request, model, **choice)
    return model_service_pb2_grpc.ModelServiceStub(server.channel).GetModelStatus(request, timeout=30)


def retrieval_inputs(users: list[str], histories: list[list[str]], k: list[int]) -> dict[str, list[Any]]:
    width = max(1, max(len(h) for h in histories))
    return {"user_id": users, "history": [h + [""] * (width - len(h)) for h in histories], "k": k}


# ------------------------------------------------------------------------------------------- model status


def test_grpc_get_model_status_all_versions_one_version_and_a_label(server: Server) -> None:
    reply = status_call(server, "xcat_item_tower")
    assert [(s.version, s.state) for s in reply.model_version_status] == [
        (2, get_model_status_pb2.ModelVersionStatus.AVAILABLE),
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE),
    ]  # the specific policy in models.config keeps both loaded
    assert all(s.status.error_code == 0 and s.status.error_message == "" for s in reply.model_version_status)
    assert [s.version for s in status_call(server, "xcat_item_tower", version=1).model_version_status] == [1]
    assert [s.version for s in status_call(server, "xcat_item_tower", label="canary").model_version_status] == [2]
    assert [s.version for s in status_call(server, "xcat_ranking").model_version_status] == [1]


@pytest.mark.parametrize(
    ("model", "choice", "code"),
    [
        ("nope", {}, grpc.StatusCode.NOT_FOUND),
        ("xcat_item_tower", {"version": 7}, grpc.StatusCode.NOT_FOUND),
        ("xcat_item_tower", {"label": "nope"}, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_grpc_get_model_status_errors_are_tf_servings(server: Server, model: str, choice: dict, code: Any) -> None:
    with pytest.raises(grpc.RpcError) as info:
        status_call(server, model, **choice)
    assert info.value.code() == code, info.value.details()


def test_grpc_get_model_status_without_model_spec_is_invalid(server: Server) -> None:
    stub = model_service_pb2_grpc.ModelServiceStub(server.channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# ----------------------------------------------------------------------------------------------- metadata


def metadata_call(server: Server, model: str, fields: tuple[str, ...] = ("signature_def",), **choice: Any) -> Any:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=list(fields))
    spec(request, model, **choice)
    return prediction_service_pb2_grpc.PredictionServiceStub(server.channel).GetModelMetadata(request, timeout=30)


def test_grpc_metadata_has_every_signature_def_as_saved(server: Server, models: Path) -> None:
    from tensorflow.core.protobuf import saved_model_pb2

    reply = metadata_call(server, "xcat_retrieval")
    assert reply.model_spec.name == "xcat_retrieval" and reply.model_spec.version.value == 1
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert reply.metadata["signature_def"].Unpack(signatures)
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((models / "xcat_retrieval" / "1" / "saved_model.pb").read_bytes())
    assert dict(signatures.signature_def) == dict(saved.meta_graphs[0].signature_def)  # what TF Serving sends
    assert {"serving_default", "query", "candidates"} <= set(signatures.signature_def)
    default = signatures.signature_def["serving_default"]
    assert default.method_name == "tensorflow/serving/predict"
    assert default.inputs["k"].name == "serving_default_k:0" and default.inputs["k"].dtype == tf.int32.as_datatype_enum
    assert {"item_ids", "scores", "popularity_fallback"} == set(default.outputs)


def test_grpc_metadata_by_label_and_bad_fields(server: Server) -> None:
    assert metadata_call(server, "xcat_item_tower", label="canary").model_spec.version.value == 2
    assert metadata_call(server, "xcat_item_tower", label="stable").model_spec.version.value == 1
    for fields, message in (((), "at least one metadata_field"), (("nope",), "Metadata field nope is not supported")):
        with pytest.raises(grpc.RpcError) as info:
            metadata_call(server, "xcat_item_tower", fields)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in info.value.details()
    twice = metadata_call(server, "xcat_item_tower", ("signature_def", "signature_def"))  # allowed, as in TF Serving
    assert twice.model_spec.version.value == 2  # the highest loaded


def test_rest_metadata_shows_every_signature(server: Server) -> None:
    status, reply, _ = http(server.rest, "/v1/models/xcat_retrieval/metadata")
    assert status == 200
    signatures = reply["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "query", "candidates"} <= set(signatures)
    assert signatures["serving_default"]["inputs"]["k"]["dtype"] == "DT_INT32"
    assert signatures["serving_default"]["inputs"]["history"]["tensor_shape"]["dim"][1]["size"] == "-1"


# ---------------------------------------------------------------------------------------------- labels


def test_rest_labels_status_metadata_and_predict(server: Server) -> None:
    base = "/v1/models/xcat_item_tower"
    for label, version in (("stable", "1"), ("canary", "2")):
        status, reply, _ = http(server.rest, f"{base}/labels/{label}")
        assert status == 200 and [s["version"] for s in reply["model_version_status"]] == [version]
        status, reply, _ = http(server.rest, f"{base}/labels/{label}/metadata")
        assert status == 200 and reply["model_spec"]["version"] == version
    body = {"instances": [{"item_id": "FOO00001", "category": "Food", "text": "tea"}]}
    by_label = http(server.rest, f"{base}/labels/canary:predict", body)
    by_version = http(server.rest, f"{base}/versions/2:predict", body)
    assert by_label[0] == 200 and by_label[1] == by_version[1]
    status, reply, _ = http(server.rest, f"{base}/labels/nope:predict", body)
    assert status == 400 and "Unrecognized servable version label: nope" in reply["error"]
    status, reply, _ = http(server.rest, "/v1/models/xcat_ranking/labels/stable")  # ranking has no labels
    assert status == 400 and "Unrecognized servable version label" in reply["error"]


def test_grpc_predict_by_version_label(server: Server) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel)
    request = predict_pb2.PredictRequest()
    spec(request, "xcat_item_tower", label="canary")
    for name, value in {"item_id": ["FOO00001"], "category": ["Food"], "text": ["tea"]}.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    reply = stub.Predict(request, timeout=30)
    assert reply.model_spec.version.value == 2 and reply.model_spec.signature_name == "serving_default"
    request.model_spec.version_label = "nope"
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_models_config_is_re_read_policies_apply_and_a_broken_one_keeps_the_last(
    exported: Path, tmp_path: Path, caplog
) -> None:
    import logging

    models = tmp_path / "models"
    for version in (1, 2, 3):
        shutil.copytree(exported / "xcat_item_tower" / "1", models / "xcat_item_tower" / str(version))
    config = models / "models.config"

    def write(policy: str, labels: dict[str, int]) -> None:
        entries = "".join(f"    version_labels {{ key: '{k}' value: {v} }}\n" for k, v in labels.items())
        config.write_text(
            f"model_config_list {{\n  config {{\n    name: 'xcat_item_tower'\n    base_path: '/m'\n"
            f"    model_platform: 'tensorflow'\n    model_version_policy {{ {policy} }}\n{entries}  }}\n}}\n"
        )

    write("latest { num_versions: 2 }", {"stable": 2, "canary": 3})
    registry = Registry(models, poll_seconds=3600)
    assert registry.versions("xcat_item_tower") == [2, 3]
    assert registry.get("xcat_item_tower", label="canary").version == 3
    write("specific { versions: 1 versions: 3 }", {"stable": 3, "canary": 3})  # promote canary, roll 1 back in
    registry.refresh()
    assert registry.versions("xcat_item_tower") == [1, 3]
    assert registry.get("xcat_item_tower", label="stable").version == 3
    with pytest.raises(BadRequest, match="Unrecognized servable version label: old"):
        registry.get("xcat_item_tower", label="old")
    config.write_text("model_config_list { config { name: 'x' nonsense: 1 } }")
    with caplog.at_level(logging.ERROR):
        registry.refresh()
        registry.refresh()
    assert sum("not a text ModelServerConfig" in r.getMessage() for r in caplog.records) == 1  # logged once
    assert registry.get("xcat_item_tower", label="stable").version == 3  # the last good config stays
    config.unlink()  # no config: the server's default policy (the newest version), no labels
    registry.refresh()
    assert registry.versions("xcat_item_tower") == [3] and registry.labels("xcat_item_tower") == {}


# ------------------------------------------------------------------------------------------ signatures


def test_signature_name_selects_another_signature(server: Server) -> None:
    body = {"signature_name": "query", "inputs": {"user_id": ["u0000001"], "history": [["FOO00003"]]}}
    status, reply, _ = http(server.rest, "/v1/models/xcat_retrieval:predict", body)
    assert status == 200 and set(reply["outputs"]) == {"query", "usable", "wide"}  # a wide & deep model
    request = predict_pb2.PredictRequest()
    spec(request, "xcat_retrieval")
    request.model_spec.signature_name = "query"
    request.inputs["user_id"].CopyFrom(tf.make_tensor_proto(["u0000001"]))
    request.inputs["history"].CopyFrom(tf.make_tensor_proto([["FOO00003"]]))
    reply = prediction_service_pb2_grpc.PredictionServiceStub(server.channel).Predict(request, timeout=30)
    assert reply.model_spec.signature_name == "query" and set(reply.outputs) == {"query", "usable", "wide"}
    status, reply, _ = http(server.rest, "/v1/models/xcat_retrieval:predict", {**body, "signature_name": "nope"})
    assert status == 400 and "nope" in reply["error"]


# -------------------------------------------------------------------------------------------- metrics


def parse_metrics(text: str) -> dict[str, dict[frozenset, float]]:
    """``{metric name: {frozenset of (label, value): value}}`` from Prometheus' text format."""
    out: dict[str, dict[frozenset, float]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([:a-zA-Z_][:a-zA-Z0-9_]*)(?:\{(.*)\})? (\S+)", line)
        assert match, f"not a Prometheus sample line: {line!r}"
        name, labels, value = match.groups()
        pairs = frozenset(re.findall(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"', labels or ""))
        out.setdefault(name, {})[pairs] = float(value)
    return out


def test_prometheus_metrics_as_tf_serving_exposes_them(server: Server) -> None:
    before = parse_metrics(http(server.rest, "/monitoring/prometheus/metrics")[1])
    inputs = retrieval_inputs(USERS[:1], HISTORIES[:1], [3])
    for _ in range(3):
        assert http(server.rest, "/v1/models/xcat_retrieval:predict", {"inputs": inputs})[0] == 200
    assert http(server.rest, "/v1/models/xcat_retrieval:predict", {"inputs": {"user_id": [1]}})[0] == 400
    request = predict_pb2.PredictRequest()
    spec(request, "xcat_retrieval")
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(np.array(value, np.int32 if name == "k" else object)))
    prediction_service_pb2_grpc.PredictionServiceStub(server.channel).Predict(request, timeout=30)
    assert http(server.rest, "/v1/models/unknown-model:predict", {"inputs": inputs})[0] == 404

    status, text, kind = http(server.rest, "/monitoring/prometheus/metrics")
    assert status == 200 and kind.startswith("text/plain")
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    assert "# TYPE :tensorflow:serving:request_latency histogram" in text
    after = parse_metrics(text)

    def grew(name: str, **labels: str) -> float:
        key = frozenset(labels.items())
        return after.get(name, {}).get(key, 0) - before.get(name, {}).get(key, 0)

    count = ":tensorflow:serving:request_count"
    assert grew(count, model_name="xcat_retrieval", status="OK") == 4
    assert grew(count, model_name="xcat_retrieval", status="INVALID_ARGUMENT") == 1
    assert not any("unknown-model" in str(k) for k in after[count])  # unknown names are not series
    latency = ":tensorflow:serving:request_latency"
    assert grew(f"{latency}_count", model_name="xcat_retrieval", API="Predict", entrypoint="REST") == 4
    assert grew(f"{latency}_count", model_name="xcat_retrieval", API="Predict", entrypoint="GRPC") == 1
    rest_key = {"model_name": "xcat_retrieval", "API": "Predict", "entrypoint": "REST"}
    buckets = sorted(
        (float(dict(k)["le"].replace("+Inf", "inf")), v)
        for k, v in after[f"{latency}_bucket"].items()
        if {n: v for n, v in k if n != "le"} == rest_key
    )
    assert len(buckets) == 33 and buckets[0][0] == 10 and buckets[-1][0] == float("inf")  # TF Serving's buckets
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert buckets[-1][1] == after[f"{latency}_count"][frozenset(rest_key.items())]
    assert after[f"{latency}_sum"][frozenset(rest_key.items())] > 0
    xcat = ":tfrec_xcat:serving:request_count"
    labels = {"model_name": "xcat_retrieval", "version": "1", "signature_name": "serving_default", "API": "Predict"}
    assert grew(xcat, **labels, entrypoint="REST", status="OK") == 3
    assert grew(xcat, **labels, entrypoint="GRPC", status="OK") == 1


# ------------------------------------------------------------------------------------------- batching


def test_batching_parameters_file_is_read_as_tf_serving_reads_it(exported: Path, tmp_path: Path) -> None:
    params = read_batching_parameters(exported / "batching_parameters.txt")
    assert params == BatchingParameters(
        max_batch_size=256,
        batch_timeout_micros=1000,
        max_enqueued_batches=1000,
        num_batch_threads=4,
        pad_variable_length_inputs=True,
    )
    path = tmp_path / "b.txt"
    path.write_text("max_batch_size { value: 8 }\nallowed_batch_sizes: 4\nallowed_batch_sizes: 8\n# note\n")
    assert read_batching_parameters(path).allowed_batch_sizes == (4, 8)
    for bad in (
        "max_batch_size { value: x }",
        "nonsense_field: 3",
        "max_batch_size { value: 0 }",
        "max_batch_size { value: 8 }\nallowed_batch_sizes: 4",
        "max_batch_size ] 3",
    ):
        path.write_text(bad)
        with pytest.raises(ValueError) as info:
            read_batching_parameters(path)
        assert "\n" not in str(info.value), str(info.value)


def test_batching_is_on_by_default_can_be_turned_off_and_a_bad_file_is_one_line(server: Server, models: Path) -> None:
    assert server.batching == "on"
    off = Server(models, models.parent / "parity-off-stderr.txt", ["--no-enable-batching"])
    try:
        assert off.batching == "off"
    finally:
        off.stop()
    bad = models.parent / "bad-batching.txt"
    bad.write_text("max_batch_size { value: -3 }\n")
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, "-m", "tfrec_xcat", "serve", "--models", str(models), "--rest-port", "0"]
    command += ["--grpc-port", "0", "--batching-parameters-file", str(bad)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if "max_batch_size" in line]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]


def fake_servable(calls: list[int]) -> Servable:
    """A servable whose model records each call's batch size, echoes ``x`` and fails on the value 'boom'."""

    def signature(x: tf.Tensor, k: tf.Tensor) -> dict[str, tf.Tensor]:
        values = x.numpy()
        calls.append(int(values.shape[0]))
        if (values == b"boom").any():
            raise tf.errors.InvalidArgumentError(None, None, "boom in the batch")
        return {"first": tf.constant(values[:, 0]), "width": tf.fill([values.shape[0]], values.shape[1]), "k": k}

    inputs = {"x": tf.TensorSpec([None, None], tf.string), "k": tf.TensorSpec([None], tf.int32)}
    return Servable("fake", 1, signature, inputs, {}, object())


def run_together(batcher: Batcher, servable: Servable, requests: list[dict[str, np.ndarray]]) -> list[Any]:
    """Every request from its own thread, all announced before any runs, so the batch waits for all of them
    (deterministic: the batch closes when everyone has joined, not on a timer)."""
    results: list[Any] = [None] * len(requests)
    barrier = threading.Barrier(len(requests))

    def one(i: int) -> None:
        with batcher.expecting(servable.name):
            barrier.wait(timeout=60)
            try:
                results[i] = batcher.run(servable, requests[i])
            except Exception as exc:
                results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_concurrent_requests_share_one_model_call_and_get_their_own_rows() -> None:
    calls: list[int] = []
    servable = fake_servable(calls)
    metrics = Metrics()
    params = BatchingParameters(max_batch_size=64, batch_timeout_micros=60_000_000, pad_variable_length_inputs=True)
    batcher = Batcher(params, metrics, padded_inputs=("x",))
    requests = [
        {"x": np.array([[f"r{i}".encode()] * (1 + i % 3)] * (1 + i % 2), dtype=object), "k": np.full(1 + i % 2, 5)}
        for i in range(6)
    ]
    results = run_together(batcher, servable, requests)
    assert calls == [sum(r["x"].shape[0] for r in requests)]  # one call for all six
    for request, result in zip(requests, results, strict=True):
        assert result["first"].tolist() == request["x"][:, 0].tolist()  # each gets its own rows back
        assert result["width"].tolist() == [3] * request["x"].shape[0]  # padded to the batch's longest
    assert ':tfrec_xcat:serving:batch_size_count{model_name="fake",version="1",signature_name="serving_default"} 1' in (
        metrics.render()
    )


def test_a_bad_request_in_a_batch_fails_alone_and_allowed_sizes_pad_the_batch() -> None:
    calls: list[int] = []
    servable = fake_servable(calls)
    params = BatchingParameters(max_batch_size=8, batch_timeout_micros=60_000_000, allowed_batch_sizes=(4, 8))
    batcher = Batcher(params)
    requests = [{"x": np.array([[b"ok"]]), "k": np.array([5])} for _ in range(2)]
    requests.append({"x": np.array([[b"boom"]]), "k": np.array([5])})
    results = run_together(batcher, servable, requests)
    assert calls[0] == 4  # three rows padded up to the allowed size 4
    assert isinstance(results[2], BadRequest) and "boom" in str(results[2])
    assert [r["first"].tolist() for r in results[:2]] == [[b"ok"], [b"ok"]]


def test_requests_with_different_k_never_share_a_batch() -> None:
    """A retrieval batch returns its largest k: batching k=3 with k=7 would change the k=3 answer."""
    calls: list[int] = []
    servable = fake_servable(calls)
    batcher = Batcher(BatchingParameters(max_batch_size=8, batch_timeout_micros=60_000_000))
    requests = [{"x": np.array([[b"a"]]), "k": np.array([k])} for k in (3, 7, 3)]
    results = run_together(batcher, servable, requests)
    assert sorted(calls) == [1, 2] and [r["k"].tolist() for r in results] == [[3], [7], [3]]


def test_padding_history_with_empty_strings_leaves_every_retrieval_answer_unchanged(models: Path) -> None:
    """The real xcat_retrieval, one batch of requests with histories of different lengths: each answer (ids and
    scores) equals its unbatched one."""
    servable = Registry(models, poll_seconds=3600).get("xcat_retrieval")
    requests = []
    for user, history in zip(USERS, HISTORIES, strict=True):
        arrays = retrieval_inputs([user], [history], [5])
        requests.append({n: np.array(v, np.int32 if n == "k" else object) for n, v in arrays.items()})
    metrics = Metrics()
    batcher = Batcher(
        BatchingParameters(max_batch_size=64, batch_timeout_micros=60_000_000, pad_variable_length_inputs=True), metrics
    )
    results = run_together(batcher, servable, requests)
    assert "batch_size_count" in metrics.render() and " 1\n" in metrics.render()
    for request, result in zip(requests, results, strict=True):
        alone = run(servable, request)
        assert result["item_ids"].tolist() == alone["item_ids"].tolist()
        np.testing.assert_allclose(result["scores"], alone["scores"], rtol=1e-5)
        assert result["popularity_fallback"].tolist() == alone["popularity_fallback"].tolist()


def test_batched_answers_through_the_server_equal_unbatched_ones(server: Server, models: Path) -> None:
    """Many threads at once, mixed history lengths and k: every answer equals the in-process unbatched one."""
    registry = Registry(models, poll_seconds=3600)
    servable = registry.get("xcat_retrieval")
    cases = [(USERS[i % 4], HISTORIES[(i * 3) % 4], 4 if i % 3 else 6) for i in range(24)]
    expected = []
    for user, history, k in cases:
        arrays = retrieval_inputs([user], [history], [k])
        out = run(
            servable,
            {
                "user_id": np.array(arrays["user_id"], object),
                "history": np.array(arrays["history"], object),
                "k": np.array(arrays["k"], np.int32),
            },
        )
        expected.append(out["item_ids"].astype(str).tolist())
    got: list[Any] = [None] * len(cases)

    def one(i: int) -> None:
        user, history, k = cases[i]
        got[i] = http(
            server.rest, "/v1/models/xcat_retrieval:predict", {"inputs": retrieval_inputs([user], [history], [k])}
        )

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [g[0] for g in got] == [200] * len(cases)
    assert [g[1]["outputs"]["item_ids"] for g in got] == expected
    text = http(server.rest, "/monitoring/prometheus/metrics")[1]
    assert ":tfrec_xcat:serving:batch_size_count{" in text


# ---------------------------------------------------------------------------------- score scale, CLI


def test_popularity_fallback_scores_are_raw_counts_as_documented(server: Server) -> None:
    """docs/serving.md: fallback rows carry target-item training counts in ``scores``, not model scores."""
    inputs = retrieval_inputs(["nobody", "u0000001"], [[], ["FOO00003"]], [5, 5])
    status, reply, _ = http(server.rest, "/v1/models/xcat_retrieval:predict", {"inputs": inputs})
    assert status == 200
    fallback, scores = reply["outputs"]["popularity_fallback"], reply["outputs"]["scores"]
    assert fallback == [True, False]
    counts = scores[0]
    assert all(c >= 1 and float(c).is_integer() for c in counts) and counts == sorted(counts, reverse=True)
    doc = (REPO / "docs" / "serving.md").read_text()
    assert "**raw training counts**" in doc and "popularity_fallback = true" in doc


def test_serve_recommend_and_score_options_have_help() -> None:
    from tfrec_xcat.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    wanted = {"serve": ["--rest-port", "--grpc-port"], "recommend": ["--k", "--server"], "score": ["--k", "--quiet"]}
    for command, options in wanted.items():
        actions = {o: a for a in commands[command]._actions for o in a.option_strings}
        for option in options:
            assert actions[option].help, f"{command} {option} has no help text"
