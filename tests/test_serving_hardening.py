"""Hardening of ``tfrec-xcat serve`` and ``export`` (issue 15, items 1-8): no request may take the server down or
make it spend unbounded memory, every mistake gets one clear 4xx / gRPC status, hot reload stays visible and
bounded, and an interrupted export never publishes a mixed set.

The crash cases run the server in a subprocess (a crash there fails the test instead of killing pytest) and
check that it still answers afterwards. Two hypothesis tests generate request *structure* (nesting depth, rank,
declared shape, dtype, value encoding), one per protocol.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import selectors
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.servers import launch_server, stop_server
from tfrec_xcat.serving.client import GrpcClient, RestClient, ServingError
from tfrec_xcat.serving.grpc_server import make_grpc_server
from tfrec_xcat.serving.registry import Registry
from tfrec_xcat.serving.rest import make_rest_server, serve_in_thread

REPO = Path(__file__).resolve().parents[1]
GOOD = {"user_id": ["u0000001", "nobody"], "history": [["FOO00003", "KIT00004"], ["FOO00001", ""]], "k": [5, 5]}
# every serving_default input: (dtype enum, rank)
SIGNATURES: dict[str, dict[str, tuple[int, int]]] = {
    "xcat_retrieval": {
        "user_id": (types_pb2.DT_STRING, 1),
        "history": (types_pb2.DT_STRING, 2),
        "k": (types_pb2.DT_INT32, 1),
    },
    "xcat_ranking": {
        "user_id": (types_pb2.DT_STRING, 1),
        "history": (types_pb2.DT_STRING, 2),
        "candidates": (types_pb2.DT_STRING, 2),
    },
    "xcat_item_tower": {
        "item_id": (types_pb2.DT_STRING, 1),
        "category": (types_pb2.DT_STRING, 1),
        "text": (types_pb2.DT_STRING, 1),
    },
}


# ---------------------------------------------------------------------------------------------- helpers


class ServerProcess:
    """``python -m tfrec_xcat serve`` on free loopback ports, restarted by :meth:`ensure` if it died."""

    def __init__(self, models: Path, log: Path) -> None:
        self.models, self.log = models, log
        self.proc: subprocess.Popen[str] | None = None
        self.rest = self.grpc = ""

    def start(self) -> None:
        self.proc, line = launch_server(self.models, self.log)
        match = re.search(r"REST (http://127\.0\.0\.1:\d+), gRPC (127\.0\.0\.1:\d+)", line)
        assert match, f"the server did not start: {line!r}\n{self.stderr()}"
        self.rest, self.grpc = match.groups()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ensure(self) -> ServerProcess:
        if not self.alive():
            self.start()
        return self

    def stderr(self) -> str:
        return self.log.read_text()[-3000:] if self.log.exists() else ""

    def peak_rss_kb(self) -> int:
        assert self.proc is not None
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            stop_server(self.proc)

    def assert_answers(self) -> None:
        """Still running, and a good request on each protocol gets its answer."""
        assert self.alive(), f"the server died (exit {self.proc.returncode if self.proc else None}):\n{self.stderr()}"
        rest = RestClient(self.rest)
        assert len(rest.predict("xcat_retrieval", inputs=GOOD)["outputs"]["item_ids"][0]) == 5
        rest.close()
        client = GrpcClient(self.grpc)
        assert client.predict("xcat_retrieval", GOOD)["item_ids"].shape == (2, 5)
        client.close()


@pytest.fixture(scope="module")
def subprocess_server(exported: Path, tmp_path_factory: pytest.TempPathFactory):
    models = tmp_path_factory.mktemp("served-subprocess")
    shutil.copytree(exported, models, dirs_exist_ok=True)
    server = ServerProcess(models, models.parent / "server-stderr.txt")
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def proc_server(subprocess_server: ServerProcess) -> ServerProcess:
    return subprocess_server.ensure()


@pytest.fixture(scope="module")
def inproc(exported: Path, tmp_path_factory: pytest.TempPathFactory):
    """REST and gRPC in this process, for the cases that never crashed (faster, and logs are visible)."""
    models = tmp_path_factory.mktemp("served-inproc")
    shutil.copytree(exported, models, dirs_exist_ok=True)
    registry = Registry(models, poll_seconds=3600)
    rest = make_rest_server(registry, "127.0.0.1", 0)
    grpc_server = make_grpc_server(registry, "127.0.0.1", 0)
    grpc_server.start()
    serve_in_thread(rest)
    yield {"rest": f"http://127.0.0.1:{rest.server_address[1]}", "grpc": f"127.0.0.1:{grpc_server.bound_port}"}
    rest.shutdown()
    rest.server_close()
    grpc_server.stop(grace=0)


def rest_post(base: str, path: str, body: bytes, timeout: float = 60) -> tuple[int, Any]:
    """POST ``body`` on a fresh connection; (status, parsed JSON reply or raw text)."""
    host, port = base.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        sock.sendall(head.encode() + body)
        reply = read_all(sock)
    return parse_reply(reply)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def parse_reply(reply: bytes) -> tuple[int, Any]:
    head, _, payload = reply.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    assert re.match(r"HTTP/1\.[01] \d{3} ", status_line), f"no status line: {reply[:200]!r}"
    try:
        return int(status_line.split()[1]), json.loads(payload)
    except ValueError:
        return int(status_line.split()[1]), payload.decode("latin-1")


def predict_body(inputs_json: dict[str, str]) -> bytes:
    """A columnar body from already-encoded JSON texts (so depth is not limited by Python's encoder)."""
    return ('{"inputs": {' + ", ".join(f'"{k}": {v}' for k, v in inputs_json.items()) + "}}").encode()


def nested(depth: int, leaf: str = '""') -> str:
    return "[" * depth + leaf + "]" * depth


def string_tensor(dims: list[int], values: list[bytes]) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=values)
    for d in dims:
        proto.tensor_shape.dim.add(size=d)
    return proto


def grpc_predict(target: str, model: str, inputs: dict[str, tensor_pb2.TensorProto]) -> tuple[grpc.StatusCode, str]:
    """Send a hand-built PredictRequest; the status code it gets (OK included) and its message."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for name, proto in inputs.items():
        request.inputs[name].CopyFrom(proto)
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            stub.Predict(request, timeout=60)
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def good_protos(model: str = "xcat_retrieval") -> dict[str, tensor_pb2.TensorProto]:
    import tensorflow as tf

    return {k: tf.make_tensor_proto(np.array(v) if k != "k" else np.array(v, np.int32)) for k, v in GOOD.items()}


# ------------------------------------------------------------------------------- 1-3: crashes, in a subprocess


@pytest.mark.parametrize("depth", [255, 256, 33, 1000])
def test_1_deeply_nested_rest_tensor_is_a_400_not_an_abort(proc_server: ServerProcess, depth: int) -> None:
    body = predict_body({"user_id": '["a"]', "k": "[1]", "history": nested(depth)})
    status, reply = rest_post(proc_server.rest, "/v1/models/xcat_retrieval:predict", body)
    assert status == 400 and ("rank" in reply["error"] or "deeply" in reply["error"]), reply
    proc_server.assert_answers()


@pytest.mark.parametrize("model", sorted(SIGNATURES))
def test_1_every_input_of_every_model_rejects_depth_255(proc_server: ServerProcess, model: str) -> None:
    for name in SIGNATURES[model]:
        inputs = {n: '["a"]' if rank == 1 else '[["a"]]' for n, (_, rank) in SIGNATURES[model].items()}
        if "k" in inputs:
            inputs["k"] = "[1]"
        inputs[name] = nested(255, '"a"' if name != "k" else "1")
        status, reply = rest_post(proc_server.rest, f"/v1/models/{model}:predict", predict_body(inputs))
        assert status == 400, (model, name, reply)
    proc_server.assert_answers()


@pytest.mark.parametrize("rank", [33, 32, 64, 3])
def test_2_grpc_string_tensor_of_high_rank_is_rejected_not_a_segfault(proc_server: ServerProcess, rank: int) -> None:
    inputs = good_protos()
    inputs["user_id"] = string_tensor([1] * rank, [b"a"])
    code, details = grpc_predict(proc_server.grpc, "xcat_retrieval", inputs)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "rank" in details, (code, details)
    proc_server.assert_answers()


def test_3_declared_shape_is_checked_before_anything_is_materialised(proc_server: ServerProcess) -> None:
    before = proc_server.peak_rss_kb()
    for size in (20_000_000, 100_000_000, 2**40):
        inputs = good_protos()
        inputs["user_id"] = string_tensor([size], [b"a"])
        code, details = grpc_predict(proc_server.grpc, "xcat_retrieval", inputs)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "elements" in details, (size, code, details)
    grown_mb = (proc_server.peak_rss_kb() - before) / 1024
    assert grown_mb < 150, f"peak memory grew by {grown_mb:.0f} MB for requests of 100 bytes"
    proc_server.assert_answers()


def test_3_values_must_match_the_declared_shape(inproc) -> None:
    for dims, values in (([3], [b"a", b"b"]), ([2], [b"a", b"b", b"c"]), ([2], []), ([-1], [b"a"])):
        inputs = good_protos()
        inputs["user_id"] = string_tensor(dims, values)
        assert grpc_predict(inproc["grpc"], "xcat_retrieval", inputs)[0] == grpc.StatusCode.INVALID_ARGUMENT, dims
    inputs = good_protos()
    inputs["k"] = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32, tensor_content=b"\x05\x00\x00")
    inputs["k"].tensor_shape.dim.add(size=2)
    assert grpc_predict(inproc["grpc"], "xcat_retrieval", inputs)[0] == grpc.StatusCode.INVALID_ARGUMENT


# ---------------------------------------------------------------------------------------- 4: output is capped


def test_4_rows_times_k_out_is_capped_on_both_protocols(inproc) -> None:
    rows = 2_000
    body = json.dumps({"inputs": {"user_id": ["nobody"] * rows, "history": [[""]] * rows, "k": [700] * rows}}).encode()
    status, reply = rest_post(inproc["rest"], "/v1/models/xcat_retrieval:predict", body)
    assert status == 413 and "k" in reply["error"], (status, str(reply)[:300])
    client = GrpcClient(inproc["grpc"])
    with pytest.raises(ServingError) as info:
        client.predict(
            "xcat_retrieval",
            {"user_id": np.array(["a"] * rows), "history": np.array([[""]] * rows), "k": np.full(rows, 700, np.int32)},
        )
    assert info.value.status == grpc.StatusCode.RESOURCE_EXHAUSTED
    client.close()
    # the same rows with a small k are fine
    ok = json.dumps({"inputs": {"user_id": ["nobody"] * rows, "history": [[""]] * rows, "k": [3] * rows}}).encode()
    status, reply = rest_post(inproc["rest"], "/v1/models/xcat_retrieval:predict", ok)
    assert status == 200 and len(reply["outputs"]["item_ids"]) == rows


def test_4_the_issues_16000_rows_at_k_700_get_a_413(inproc) -> None:
    rows = 16_000
    body = json.dumps({"inputs": {"user_id": ["u"] * rows, "history": [[""]] * rows, "k": [700] * rows}}).encode()
    assert len(body) < 256 * 1024
    status, reply = rest_post(inproc["rest"], "/v1/models/xcat_retrieval:predict", body)
    assert status == 413 and "rows" in reply["error"], (status, str(reply)[:300])


def test_4_batch_size_is_capped(inproc) -> None:
    from tfrec_xcat.serving.predict import MAX_BATCH

    rows = MAX_BATCH + 1
    body = json.dumps({"inputs": {"item_id": ["a"] * rows, "category": ["b"] * rows, "text": [""] * rows}}).encode()
    status, reply = rest_post(inproc["rest"], "/v1/models/xcat_item_tower:predict", body)
    assert status == 413 and "rows" in reply["error"], (status, str(reply)[:300])


# ------------------------------------------------------------------------ 5: idle timeout, connection cap


def test_5_idle_and_half_sent_connections_are_closed(exported: Path) -> None:
    registry = Registry(exported, poll_seconds=3600)
    rest = make_rest_server(registry, "127.0.0.1", 0, idle_timeout=0.5)
    serve_in_thread(rest)
    port = rest.server_address[1]
    try:
        for opening in (b"", b"POST /v1/models/xcat_retrieval:predict HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"):
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(opening)
                reply = read_all(sock)  # returns once the server closes; the socket timeout fails the test
            assert reply == b"" or reply.startswith(b"HTTP/1.1 408"), reply[:200]
    finally:
        rest.shutdown()
        rest.server_close()


def test_5_a_trickled_request_is_cut_off(exported: Path) -> None:
    """A client sending one byte at a time (never idle) still has to finish its request within the deadline."""
    registry = Registry(exported, poll_seconds=3600)
    rest = make_rest_server(registry, "127.0.0.1", 0, idle_timeout=5, request_timeout=1.0)
    serve_in_thread(rest)
    request = b"POST /v1/models/xcat_retrieval:predict HTTP/1.1\r\nContent-Length: 100\r\nX-Pad: " + b"a" * 200
    closed = False
    try:
        with socket.create_connection(("127.0.0.1", rest.server_address[1]), timeout=30) as sock:
            selector = selectors.DefaultSelector()
            selector.register(sock, selectors.EVENT_READ)
            for byte in request:  # bounded: 200+ bytes, 0.1 s apart
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    closed = True
                    break
                if selector.select(timeout=0.1):  # the server answered or closed
                    closed = True
                    break
            selector.close()
    finally:
        rest.shutdown()
        rest.server_close()
    assert closed, "the server kept a trickling request open"


def test_5_connections_are_capped_with_a_503(exported: Path) -> None:
    registry = Registry(exported, poll_seconds=3600)
    rest = make_rest_server(registry, "127.0.0.1", 0, max_connections=4, idle_timeout=60)
    serve_in_thread(rest)
    port = rest.server_address[1]
    held = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(4)]
    try:
        for sock in held:
            sock.sendall(b"POST /v1/models/xcat_retrieval:predict HTTP/1.1\r\n")  # half-sent
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"GET /v1/models/xcat_retrieval HTTP/1.1\r\nHost: x\r\n\r\n")
            status, reply = parse_reply(read_all(sock))
        assert status == 503 and "connections" in reply["error"]
        for sock in held:
            sock.close()
        for _ in range(200):  # the held slots are freed once their threads see the hang-up
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(b"GET /v1/models/xcat_retrieval HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                status, _ = parse_reply(read_all(sock))
            if status == 200:
                break
            time.sleep(0.05)
        assert status == 200
    finally:
        for sock in held:
            sock.close()
        rest.shutdown()
        rest.server_close()


def test_5_out_of_file_descriptors_pauses_the_accept_loop(exported: Path, monkeypatch, caplog) -> None:
    from tfrec_xcat.serving import rest as rest_module

    registry = Registry(exported / "none", poll_seconds=3600)
    server = make_rest_server(registry, "127.0.0.1", 0)
    pauses: list[float] = []
    monkeypatch.setattr(rest_module, "_sleep", pauses.append)

    def no_fds() -> Any:
        raise OSError(errno.EMFILE, "Too many open files")

    server.socket.close()
    server.socket = type("NoFds", (), {"accept": staticmethod(no_fds)})()
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            server._handle_request_noblock()
    assert len(pauses) == 5 and all(p > 0 for p in pauses)  # backs off instead of spinning
    assert sum("file descriptors" in r.getMessage() for r in caplog.records) == 1  # said once


# --------------------------------------------------------------------------------- 6: small things, one line


@pytest.mark.parametrize("k", [0, -3, 2**32 + 5, 2**31, 1001, 5.0, "5", True])
def test_6_bad_k_is_a_400(inproc, k: Any) -> None:
    body = json.dumps({"inputs": {"user_id": ["a"], "history": [["b"]], "k": [k]}}).encode()
    status, reply = rest_post(inproc["rest"], "/v1/models/xcat_retrieval:predict", body)
    assert status in (400, 413) and "'k'" in reply["error"], (k, status, reply)


def test_6_grpc_k_must_be_int32(inproc) -> None:
    import tensorflow as tf

    for value in (np.array(["5"]), np.array([5.0], np.float32), np.array([5], np.int64), np.array([0], np.int32)):
        inputs = good_protos()
        inputs["user_id"] = tf.make_tensor_proto(np.array(["a"]))
        inputs["history"] = tf.make_tensor_proto(np.array([["b"]]))
        inputs["k"] = tf.make_tensor_proto(value)
        code, details = grpc_predict(inproc["grpc"], "xcat_retrieval", inputs)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "'k'" in details, (value, code, details)


def test_6_variant_and_resource_inputs_are_invalid_argument(inproc, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        for dtype in (types_pb2.DT_VARIANT, types_pb2.DT_RESOURCE, types_pb2.DT_INVALID, 999):
            inputs = good_protos()
            inputs["user_id"] = tensor_pb2.TensorProto(dtype=dtype)
            inputs["user_id"].tensor_shape.dim.add(size=1)
            if dtype == types_pb2.DT_VARIANT:
                inputs["user_id"].variant_val.add(type_name="x")
            if dtype == types_pb2.DT_RESOURCE:
                inputs["user_id"].resource_handle_val.add(device="x")
            code, details = grpc_predict(inproc["grpc"], "xcat_retrieval", inputs)
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "dtype" in details, (dtype, code, details)
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_6_client_hang_ups_log_no_traceback(inproc, caplog) -> None:
    host, port = inproc["rest"].split("//")[1].split(":")
    body = json.dumps({"inputs": {**GOOD, "k": [50, 50]}}).encode()
    with caplog.at_level(logging.DEBUG):
        for i in range(20):
            sock = socket.create_connection((host, int(port)), timeout=30)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
            head = f"POST /v1/models/xcat_retrieval:predict HTTP/1.1\r\nContent-Length: {len(body)}\r\n\r\n"
            sock.sendall(head.encode() + (body if i % 2 else body[:10]))
            sock.close()
        RestClient(inproc["rest"]).status("xcat_retrieval")  # the server still answers
        time.sleep(0.5)  # let the handlers of the hung-up connections finish (no assertion on time)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], [
        r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR
    ]


@pytest.mark.parametrize(
    "request_line",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        b"GET\r\n\r\n",
    ],
)
def test_6_garbage_request_lines_get_a_status_line_and_json(inproc, request_line: bytes) -> None:
    host, port = inproc["rest"].split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request_line)
        status, reply = parse_reply(read_all(sock))
    assert (400 <= status < 500 or status == 505) and isinstance(reply, dict) and reply["error"], reply


# ------------------------------------------------------------------------------------------- 7: hot reload


def copy_version(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst)


def test_7_broken_version_is_logged_once_shown_in_status_and_older_one_serves(
    exported: Path, tmp_path: Path, caplog
) -> None:
    models = tmp_path / "models"
    copy_version(exported / "xcat_item_tower" / "1", models / "xcat_item_tower" / "1")
    broken = models / "xcat_item_tower" / "2"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a saved model")
    with caplog.at_level(logging.INFO):
        registry = Registry(models, poll_seconds=3600)
        for _ in range(5):
            registry.refresh()
    assert sum("cannot load" in r.getMessage() for r in caplog.records) == 1
    assert registry.get("xcat_item_tower").version == 1  # the newest *loadable* version serves
    status = {s["version"]: s for s in registry.status("xcat_item_tower")}
    assert status["2"]["state"] == "END" and status["2"]["status"]["error_code"] != "OK"
    assert status["2"]["status"]["error_message"]
    assert status["1"]["state"] == "AVAILABLE"
    # fixing the version (a new saved_model.pb) is noticed
    shutil.rmtree(broken)
    copy_version(exported / "xcat_item_tower" / "1", broken)
    registry.refresh()
    assert registry.get("xcat_item_tower").version == 2


def test_7_models_folder_moved_away_keeps_serving_and_says_so(exported: Path, tmp_path: Path, caplog) -> None:
    models = tmp_path / "models"
    copy_version(exported / "xcat_item_tower" / "1", models / "xcat_item_tower" / "1")
    registry = Registry(models, poll_seconds=3600)
    with caplog.at_level(logging.WARNING):
        models.rename(tmp_path / "away")
        registry.refresh()
        registry.refresh()
        assert registry.get("xcat_item_tower").version == 1
        (tmp_path / "away").rename(models)
        registry.refresh()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "keeping" in warnings[0], warnings
    assert registry.get("xcat_item_tower").version == 1
    # a model folder really removed is unloaded, with a log line
    with caplog.at_level(logging.INFO):
        shutil.rmtree(models / "xcat_item_tower")
        registry.refresh()
    assert registry.names() == []
    assert any("unloaded" in r.getMessage() for r in caplog.records)


def test_7_only_the_newest_versions_stay_loaded(exported: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    for v in (1, 2, 3):
        copy_version(exported / "xcat_item_tower" / "1", models / "xcat_item_tower" / str(v))
    assert Registry(models, poll_seconds=3600).versions("xcat_item_tower") == [3]  # TF Serving's latest policy
    two = Registry(models, poll_seconds=3600, max_versions=2)
    assert two.versions("xcat_item_tower") == [2, 3]
    copy_version(exported / "xcat_item_tower" / "1", models / "xcat_item_tower" / "4")
    two.refresh()
    assert two.versions("xcat_item_tower") == [3, 4]


def test_7_rest_status_shows_failed_versions(exported: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    broken = models / "xcat_item_tower" / "5"
    broken.mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"\x00garbage")
    registry = Registry(models, poll_seconds=3600)
    rest = make_rest_server(registry, "127.0.0.1", 0)
    serve_in_thread(rest)
    try:
        reply = RestClient(f"http://127.0.0.1:{rest.server_address[1]}").status("xcat_item_tower")
        (entry,) = reply["model_version_status"]
        assert entry["version"] == "5" and entry["state"] == "END" and entry["status"]["error_message"]
    finally:
        rest.shutdown()
        rest.server_close()


# ----------------------------------------------------------------------------------------------- 8: export

KILL_SCRIPT = """
import os, signal, sys
import tensorflow as tf
from tfrec_xcat.export import writer
from tfrec_xcat.export.exporter import export
when, real_save, real_rename = sys.argv[3], tf.saved_model.save, os.rename
saves = []
def save(*args, **kwargs):
    saves.append(1)
    if when == "second-save" and len(saves) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(*args, **kwargs)
def rename(src, dst):
    real_rename(src, dst)
    if when == "first-publish" and os.path.basename(str(dst)).isdigit():
        os.kill(os.getpid(), signal.SIGKILL)
tf.saved_model.save = save
writer.os.rename = rename
export(sys.argv[1], sys.argv[2])
"""


@pytest.mark.parametrize("when", ["second-save", "first-publish"])
def test_8_killed_export_never_leaves_a_mixed_set(trained: Path, exported: Path, tmp_path: Path, when: str) -> None:
    from tfrec_xcat.export.writer import recover, versions

    out = tmp_path / "models"
    shutil.copytree(exported, out)
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILL_SCRIPT), str(trained), str(out), when],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    names = ["xcat_retrieval", "xcat_ranking", "xcat_item_tower"]
    if when == "second-save":  # nothing was published
        assert {n: versions(out / n) for n in names} == {n: [1] for n in names}
    recover(out)  # what the next export does first: finish (or drop) a set that was being published
    sets = {n: versions(out / n) for n in names}
    assert len({tuple(v) for v in sets.values()}) == 1, sets
    assert not list(out.glob("*/.*")), list(out.glob("*/.*"))


def test_8_version_folders_are_readable_by_other_users(exported: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    for name in ("xcat_retrieval", "xcat_ranking", "xcat_item_tower"):
        mode = stat.S_IMODE((exported / name / "1").stat().st_mode)
        assert mode == 0o777 & ~umask, oct(mode)


# ------------------------------------------------------------------------------------ fuzz: structure, both


LEAVES = ['"a"', '""', "1", "5", "0", "-1", str(2**32 + 5), str(2**70), "5.0", "1e400", "true", "null", "{}"]
LEAVES += ['{"b64": "YQ=="}', '{"b64": "!!"}', '{"b64": 5}', '"\\u00e9"', '"\\ud800"', "[]", '{"a": [1]}']
DEPTHS = st.one_of(st.integers(0, 5), st.sampled_from([31, 32, 33, 64, 254, 255, 256, 900]))


@st.composite
def json_value(draw: st.DrawFn, dtype: int, rank: int, batch: int, inner: int) -> tuple[str, str]:
    """One input as JSON text: (the column, one row of it). Two in three are well formed; the rest change the
    structure: nesting depth, leaf kind or encoding, raggedness at one level."""
    leaf = "2" if dtype == types_pb2.DT_INT32 else draw(st.sampled_from(['"a"', '"FOO00003"', '{"b64": "YQ=="}']))
    depth, ragged_at = rank, None
    if draw(st.integers(0, 2)) == 0:
        depth, leaf = draw(DEPTHS), draw(st.sampled_from(LEAVES))
        ragged_at = draw(st.one_of(st.none(), st.integers(0, 3)))
    text = leaf
    for level in reversed(range(1, depth)):  # inner levels, innermost first
        items = [text] * (inner if level == 1 else 1 if level > 3 else draw(st.integers(0, 2)))
        if ragged_at == level:
            items.append(draw(st.sampled_from(["[]", leaf, f"[{leaf},{leaf}]"])))
        text = "[" + ",".join(items) + "]"
    row = text if depth else leaf
    items = [row] * batch + ([draw(st.sampled_from(["[]", leaf]))] if ragged_at == 0 else [])
    return ("[" + ",".join(items) + "]" if depth else leaf), row


@st.composite
def rest_request(draw: st.DrawFn) -> tuple[str, bytes]:
    model = "nope" if draw(st.integers(0, 19)) == 0 else draw(st.sampled_from(list(SIGNATURES)))
    signature = SIGNATURES.get(model, {"x": (types_pb2.DT_STRING, 1)})
    batch, inner = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    columns, rows = {}, {}
    for name, (dtype, rank) in signature.items():
        if draw(st.integers(0, 19)):  # sometimes an input is missing
            columns[name], rows[name] = draw(json_value(dtype, rank, batch, inner))
    if draw(st.integers(0, 19)) == 0:
        columns["extra"], rows["extra"] = '["a"]', '"a"'
    if draw(st.booleans()):
        body = predict_body(columns)
    else:  # row format: one object per row
        row = "{" + ", ".join(f'"{k}": {v}' for k, v in rows.items()) + "}"
        body = ('{"instances": [' + ",".join([row] * batch) + "]}").encode()
    return f"/v1/models/{model}:predict", body


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(request=rest_request())
def test_fuzz_rest_structure_never_crashes(subprocess_server: ServerProcess, request: tuple[str, bytes]) -> None:
    assert subprocess_server.alive(), subprocess_server.stderr()
    path, body = request
    status, reply = rest_post(subprocess_server.rest, path, body)
    event(f"HTTP {status}")
    assert status in (200, 400, 404, 413), (status, reply, body[:300])
    assert subprocess_server.alive(), subprocess_server.stderr()


DTYPES = [v for v in types_pb2.DataType.values() if v < 100] + [999]
DIMS = [0, 1, 2, 3, -1, -7, 100_000_000, 2**40, 2**62]
ENCODINGS = ["string_val", "int_val", "int64_val", "float_val", "double_val", "bool_val", "half_val"]
ENCODINGS += ["tensor_content", "variant_val", "resource_handle_val"]
MUTATIONS = ["dtype", "rank", "dims", "unknown_rank", "encoding", "count"]


@st.composite
def tensor_proto(draw: st.DrawFn, dtype: int, rank: int, batch: int, inner: int) -> tensor_pb2.TensorProto:
    """One input tensor. Two in three are well formed; the rest change one to three of: dtype, rank, declared
    dims, unknown_rank, value encoding, number of values."""
    mutations = (
        draw(st.sets(st.sampled_from(MUTATIONS), min_size=1, max_size=3)) if draw(st.integers(0, 2)) == 0 else set()
    )
    proto = tensor_pb2.TensorProto(dtype=draw(st.sampled_from(DTYPES)) if "dtype" in mutations else dtype)
    rank = draw(st.one_of(st.integers(0, 4), st.sampled_from([32, 33, 64, 300]))) if "rank" in mutations else rank
    dims = ([batch, inner] + [1] * rank)[:rank]
    if "dims" in mutations:
        dims = [draw(st.sampled_from(DIMS)) if draw(st.booleans()) else d for d in dims]
    proto.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(unknown_rank="unknown_rank" in mutations))
    for d in dims:
        proto.tensor_shape.dim.add(size=d)
    n = int(np.prod([max(d, 0) for d in dims])) if all(0 <= d <= 10 for d in dims) else 1
    count = draw(st.integers(0, 6)) if "count" in mutations else n
    field = "int_val" if dtype == types_pb2.DT_INT32 else "string_val"
    for encoding in (
        draw(st.lists(st.sampled_from(ENCODINGS), min_size=1, max_size=2)) if "encoding" in mutations else [field]
    ):
        if encoding == "string_val":
            proto.string_val.extend(draw(st.lists(st.binary(max_size=8), min_size=count, max_size=count)))
        elif encoding in ("int_val", "half_val", "bool_val"):
            low, high = (0, 1) if encoding == "bool_val" else (-(2**31), 2**31 - 1)
            if "encoding" not in mutations and "count" not in mutations:
                low, high = 1, 10  # a valid k
            getattr(proto, encoding).extend(draw(st.lists(st.integers(low, high), min_size=count, max_size=count)))
        elif encoding == "int64_val":
            proto.int64_val.extend(draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=count, max_size=count)))
        elif encoding in ("float_val", "double_val"):
            getattr(proto, encoding).extend(draw(st.lists(st.floats(width=32), min_size=count, max_size=count)))
        elif encoding == "tensor_content":
            proto.tensor_content = draw(st.one_of(st.binary(max_size=64), st.just(b"\x02\x00\x00\x00" * count)))
        elif encoding == "variant_val":
            proto.variant_val.add(type_name="x")
        elif encoding == "resource_handle_val":
            proto.resource_handle_val.add(device="x")
    return proto


@st.composite
def grpc_request(draw: st.DrawFn) -> tuple[str, dict[str, tensor_pb2.TensorProto]]:
    model = "nope" if draw(st.integers(0, 19)) == 0 else draw(st.sampled_from(list(SIGNATURES)))
    signature = SIGNATURES.get(model, {"x": (types_pb2.DT_STRING, 1)})
    batch, inner = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    inputs = {}
    for name, (dtype, rank) in signature.items():
        if draw(st.integers(0, 19)):  # sometimes an input is missing
            inputs[name] = draw(tensor_proto(dtype, rank, batch, inner))
    if draw(st.integers(0, 19)) == 0:
        inputs["extra"] = draw(tensor_proto(types_pb2.DT_STRING, 1, batch, inner))
    return model, inputs


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(request=grpc_request())
def test_fuzz_grpc_structure_never_crashes(subprocess_server: ServerProcess, request: tuple[str, dict]) -> None:
    assert subprocess_server.alive(), subprocess_server.stderr()
    model, inputs = request
    code, details = grpc_predict(subprocess_server.grpc, model, inputs)
    event(code.name)
    allowed = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert code in allowed | {grpc.StatusCode.NOT_FOUND}, (code, details, model)
    assert subprocess_server.alive(), subprocess_server.stderr()


def test_after_the_fuzzing_the_server_still_answers(subprocess_server: ServerProcess) -> None:
    subprocess_server.assert_answers()
