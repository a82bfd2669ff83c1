"""The endpoint: TF Serving's REST and gRPC API over exported models; version pick-up; malformed requests."""

from __future__ import annotations

import json
import shutil
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfrec_xcat.export.artifacts import load_trained
from tfrec_xcat.export.servables import RetrievalServable
from tfrec_xcat.serving.client import GrpcClient, RestClient, ServingError
from tfrec_xcat.serving.grpc_server import make_grpc_server
from tfrec_xcat.serving.registry import Registry
from tfrec_xcat.serving.rest import make_rest_server, serve_in_thread

USERS = ["u0000001", "nobody"]
HISTORY = [["FOO00003", "KIT00004"], ["FOO00001", ""]]


@pytest.fixture(scope="module")
def server(exported: Path, tmp_path_factory: pytest.TempPathFactory):
    models = tmp_path_factory.mktemp("served")
    shutil.copytree(exported, models, dirs_exist_ok=True)
    registry = Registry(models, poll_seconds=0.2)
    registry.start()
    rest = make_rest_server(registry, "127.0.0.1", 0, max_body=64 * 1024)
    grpc_server = make_grpc_server(registry, "127.0.0.1", 0)
    grpc_server.start()
    serve_in_thread(rest)
    yield {
        "models": models,
        "rest": f"http://127.0.0.1:{rest.server_address[1]}",
        "grpc": f"127.0.0.1:{grpc_server.bound_port}",
        "registry": registry,
    }
    rest.shutdown()
    grpc_server.stop(grace=0)
    registry.stop()


def expected_ids(trained: Path) -> list[list[str]]:
    model, space, _ = load_trained(trained)
    servable = RetrievalServable(model, space)  # keep a reference: tf.function holds self weakly
    out = servable.serve(tf.constant(USERS), tf.constant(HISTORY), tf.constant([5, 5]))
    return out["item_ids"].numpy().astype(str).tolist()


def test_rest_and_grpc_match_in_process(server, trained: Path) -> None:
    expected = expected_ids(trained)
    rest = RestClient(server["rest"])
    rows = rest.predict(
        "xcat_retrieval", [{"user_id": u, "history": h, "k": 5} for u, h in zip(USERS, HISTORY, strict=True)]
    )
    assert [r["item_ids"] for r in rows["predictions"]] == expected
    columnar = rest.predict("xcat_retrieval", inputs={"user_id": USERS, "history": HISTORY, "k": [5, 5]})
    assert columnar["outputs"]["item_ids"] == expected
    grpc_client = GrpcClient(server["grpc"])
    got = grpc_client.predict(
        "xcat_retrieval",
        {
            "user_id": np.array(USERS, dtype=object),
            "history": np.array(HISTORY, dtype=object),
            "k": np.array([5, 5], np.int32),
        },
    )
    assert got["item_ids"].astype(str).tolist() == expected
    meta = grpc_client.metadata("xcat_retrieval")
    assert meta.model_spec.name == "xcat_retrieval"
    grpc_client.close()


def test_status_and_metadata(server) -> None:
    rest = RestClient(server["rest"])
    assert rest.status("xcat_ranking")["model_version_status"][0]["state"] == "AVAILABLE"
    sig = rest.metadata("xcat_retrieval")["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert set(sig["inputs"]) == {"user_id", "history", "k"}
    assert sig["inputs"]["k"]["dtype"] == "DT_INT32"


def test_errors_are_4xx_like_tf_serving(server) -> None:
    rest = RestClient(server["rest"])
    with pytest.raises(ServingError) as info:
        rest.predict("nope", inputs={"x": [1]})
    assert info.value.status == 404
    with pytest.raises(ServingError) as info:
        rest.predict("xcat_retrieval", version=99, inputs={"user_id": ["a"], "history": [["b"]], "k": [1]})
    assert info.value.status == 404
    for bad in (
        {"user_id": ["a"], "history": ["b"], "k": [1]},  # wrong rank
        {"user_id": ["a"], "history": [["b"]], "k": ["ten"]},  # wrong dtype
        {"user_id": ["a"], "history": [["b"], ["c", "d"]], "k": [1]},  # ragged
        {"user_id": ["a"], "k": [1]},
    ):  # missing input
        with pytest.raises(ServingError) as info:
            rest.predict("xcat_retrieval", inputs=bad)
        assert info.value.status == 400
    with pytest.raises(ServingError) as info:
        GrpcClient(server["grpc"]).predict("xcat_retrieval", {"user_id": np.array([1.5])})
    assert "INVALID_ARGUMENT" in str(info.value.status)


def test_binds_loopback_and_limits_body(server) -> None:
    host = server["rest"].split("//")[1].split(":")[0]
    assert host == "127.0.0.1"
    big = json.dumps({"inputs": {"user_id": ["x" * 100_000]}}).encode()
    request = urllib.request.Request(server["rest"] + "/v1/models/xcat_retrieval:predict", data=big, method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 413


def test_new_version_is_picked_up(server) -> None:
    models: Path = server["models"]
    src = models / "xcat_item_tower" / "1"
    tmp = models / "xcat_item_tower" / ".tmp-7"
    shutil.copytree(src, tmp)
    tmp.rename(models / "xcat_item_tower" / "7")
    rest = RestClient(server["rest"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        versions = [v["version"] for v in rest.status("xcat_item_tower")["model_version_status"]]
        if "7" in versions:
            break
        time.sleep(0.2)
    assert "7" in versions
    assert rest.metadata("xcat_item_tower")["model_spec"]["version"] == "7"  # highest serves by default


def raw_request(base: str, method: str, path: str, body: bytes) -> int:
    host, port = base.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        sock.sendall(head + body)
        reply = sock.recv(65536).decode("latin-1")
    return int(reply.split(" ", 2)[1])


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda c: (
        st.lists(c, max_size=4)
        | st.dictionaries(
            st.sampled_from(["user_id", "history", "k", "x", "instances", "inputs", "signature_name"]), c, max_size=4
        )
    ),
    max_leaves=12,
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    path=st.sampled_from(
        [
            "/v1/models/xcat_retrieval:predict",
            "/v1/models/xcat_ranking:predict",
            "/v1/models/xcat_retrieval/versions/1:predict",
            "/v1/models/../x:predict",
            "/v1/models/xcat_retrieval/metadata",
            "/v1/models/%2e%2e/etc",
            "/",
            "/v1/models/",
        ]
    ),
    body=st.one_of(JSONISH.map(lambda v: json.dumps(v).encode()), st.binary(max_size=200)),
    method=st.sampled_from(["POST", "GET", "PUT"]),
)
def test_fuzzed_requests_get_4xx_and_server_survives(server, path: str, body: bytes, method: str) -> None:
    status = raw_request(server["rest"], method, path, body)
    assert status < 500, (method, path, body[:100])
    assert raw_request(server["rest"], "GET", "/v1/models/xcat_retrieval", b"") == 200


def hostile_requests(n: int, seed: int = 0) -> list[tuple[str, str, bytes]]:
    """``n`` generated malformed or hostile requests (method, path, body), none of them valid."""
    rng = np.random.default_rng(seed)
    good_path = "/v1/models/xcat_retrieval:predict"
    paths = [
        "/v1/models/../../etc/passwd:predict",
        "/v1/models/%2e%2e%2f%2e%2e/x:predict",
        "/v1/models/xcat_retrieval/versions/-1:predict",
        "/v1/models/xcat_retrieval/versions/99999999999999999999:predict",
        "/v1/models/xcat_retrieval:explode",
        "/v1/models/" + "a" * 5000,
        "/v1/models/xcat_retrieval%00:predict",
        "//v1//models//",
        "/v1/models/xcat_retrieval/versions/1/../../../x:predict",
    ]
    bodies = [
        b"",
        b"{",
        b"null",
        b"[]",
        b'{"inputs": 5}',
        b'{"instances": "x"}',
        b'{"inputs": {"user_id": [1, 2], "history": [["a"], ["b"]], "k": [1, 1]}}',
        b'{"inputs": {"user_id": ["a"], "history": "b", "k": [1]}}',
        b'{"inputs": {"user_id": ["a"], "history": [["b"]], "k": [1e400]}}',
        b'{"inputs": {"user_id": ["a"], "history": [[["b"]]], "k": [1]}}',
        b'{"inputs": {"user_id": ["a"], "history": [["b"]], "k": [1]}, "signature_name": "nope"}',
        b'{"instances": [{"user_id": "a"}, {"k": 3}]}',
        b"\xff\xfe\x00garbage",
        b'{"inputs": {"user_id": ["a"], "history": [["b"]], "k": [true]}}',
        b"[" * 5000 + b"]" * 5000,
        b'{"inputs": {"user_id": ["' + b"x" * 70_000 + b'"]}}',  # beyond the test server's 64 KiB limit
    ]
    out = []
    for i in range(n):
        kind = i % 4
        if kind == 0:  # bad path, any body
            out.append(("POST", paths[rng.integers(len(paths))], bodies[rng.integers(len(bodies))]))
        elif kind == 1:  # good path, bad body
            out.append(("POST", good_path, bodies[rng.integers(1, len(bodies))]))
        elif kind == 2:  # random bytes
            out.append(("POST", good_path, rng.integers(0, 256, rng.integers(1, 300)).astype(np.uint8).tobytes()))
        else:  # wrong method or unknown model
            out.append(("DELETE", good_path, b"{}") if i % 8 == 3 else ("POST", f"/v1/models/m{i}:predict", b"{}"))
    return out


def test_ten_thousand_hostile_requests_all_get_4xx(server, trained: Path) -> None:
    requests = hostile_requests(10_000)
    statuses = [raw_request(server["rest"], m, p, b) for m, p, b in requests]
    wrong = [(s, m, p, b[:80]) for s, (m, p, b) in zip(statuses, requests, strict=True) if not 400 <= s < 500]
    assert not wrong, wrong[:5]
    got = RestClient(server["rest"]).predict(
        "xcat_retrieval", inputs={"user_id": USERS, "history": HISTORY, "k": [5, 5]}
    )
    assert got["outputs"]["item_ids"] == expected_ids(trained)


def test_bounded_load_has_no_server_errors(server) -> None:
    """Eight client threads on each protocol for two seconds (loopback; stops by itself): no 5xx, no failure."""
    import threading

    failures: list[str] = []
    done = [0]
    stop = time.monotonic() + 2.0
    body = {"user_id": USERS, "history": HISTORY, "k": [5, 5]}

    def worker(protocol: str) -> None:
        client = RestClient(server["rest"]) if protocol == "rest" else GrpcClient(server["grpc"])
        while time.monotonic() < stop:
            try:
                client.predict("xcat_retrieval", inputs=body)
                done[0] += 1
            except Exception as exc:  # any failure under load is a bug
                failures.append(f"{protocol}: {exc!r}")
        if protocol == "grpc":
            client.close()

    threads = [threading.Thread(target=worker, args=(p,)) for p in ("rest", "grpc") for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:5]
    assert done[0] > 16
