"""The exported ``recommend`` signature: retrieve → rank of the shipped ``transfer`` in one graph.

For every final stage (forced with ``[ranker] stages``) the exported top-k equals the in-process
``Transfer.score`` top-k of cold-start users; the TensorFlow candidate features equal ``Signals.lists`` feature by
feature; the graph has stock ops only; ``serve`` answers the signature over REST and gRPC; ``score`` uses it and
equals serving. One small transfer is trained per module (its two-tower once: the later fits restore it).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfrec_xcat.config import load_config
from tfrec_xcat.errors import XcatError
from tfrec_xcat.export import ranking_features
from tfrec_xcat.export.exporter import export
from tfrec_xcat.export.loading import load_saved_model
from tfrec_xcat.pipeline import PreparedSeed, load_data, prepare_seed
from tfrec_xcat.scoring import batch
from tfrec_xcat.training.hybrid import FEATURES, Transfer
from tfrec_xcat.training.shipped import save_shipped

STAGES = ("deep", "wide", "fusion", "ranker")
K = 25  # more than the ranker's N = 20 per list: the ranker stage's answer reaches past the candidates
SMALL_MODEL = {"embedding_dim": 16, "tower_layers": [32], "text_dim": 16, "history_per_category": 8, "max_tokens": 8}


@dataclasses.dataclass
class Shipped:
    prepared: PreparedSeed
    models: dict[str, Transfer]  # stage → the fitted transfer
    saved: dict[str, Path]  # stage → its models folder (xcat_retrieval only)


@pytest.fixture(scope="module")
def shipped(small_shop_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Shipped:
    config = load_config(
        None,
        {
            "data": {"path": str(small_shop_dir), "source": "Food", "target": "Kitchen"},
            "model": SMALL_MODEL,
            "training": {"batch_size": 128, "epochs": 2, "source_epochs": 1, "patience": 1},
            "ranker": {"candidates": [20], "epochs": 3, "fusion_weights": [0.5, 2.0]},
        },
    )
    root = tmp_path_factory.mktemp("recommend")
    prepared = prepare_seed(config, 0, workdir=root / "work")
    models, saved = {}, {}
    for stage in STAGES:
        ranker = dataclasses.replace(config.ranker, stages=[stage])
        forced = dataclasses.replace(prepared, config=dataclasses.replace(config, ranker=ranker))
        model = Transfer()
        model.deep_workdir = root / "work" / "deep"  # the first fit trains the two-tower, the others restore it
        model.fit(forced)
        assert model.stage == stage
        save_shipped(model, forced, root / stage / "model")
        export(root / stage, root / stage / "saved", names=["xcat_retrieval"])
        models[stage], saved[stage] = model, root / stage / "saved"
    return Shipped(prepared, models, saved)


def cold_start_rows(prepared: PreparedSeed, n: int = 40) -> np.ndarray:
    m = prepared.m
    return np.concatenate([m.segment_users["cold_start_test"][:n], m.segment_users["cold_start_val"][: n // 2]])


def requests(prepared: PreparedSeed, rows: np.ndarray) -> tuple[list[str], list[list[str]]]:
    """The users of ``rows`` with their whole training history (oldest first, "" padded)."""
    train = prepared.split.train.sort_values(["user_id", "position"], kind="stable")
    lists = train.groupby("user_id")["item_id"].agg(list)
    users = [str(u) for u in prepared.m.users[rows]]
    hist = [list(lists.get(u, [])) for u in users]
    width = max(len(h) for h in hist)
    return users, [h + [""] * (width - len(h)) for h in hist]


def call(signature: Any, users: list[str], hist: list[list[str]], k: int) -> dict[str, np.ndarray]:
    out = signature(user_id=tf.constant(users), history=tf.constant(hist), k=tf.constant([k] * len(users), tf.int32))
    return {name: value.numpy() for name, value in out.items()}


def in_process_top_k(model: Transfer, prepared: PreparedSeed, rows: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    scores = np.asarray(model.score(rows), np.float64)
    scores[prepared.m.target[rows].toarray() > 0] = -np.inf  # never the user's own items
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.asarray(prepared.m.target_items)[order], np.take_along_axis(scores, order, 1)


@pytest.mark.parametrize("stage", STAGES)
def test_recommend_equals_in_process_transfer(shipped: Shipped, stage: str) -> None:
    prepared = shipped.prepared
    rows = cold_start_rows(prepared)
    users, hist = requests(prepared, rows)
    loaded = load_saved_model(str(shipped.saved[stage] / "xcat_retrieval" / "1"))
    got = call(loaded.signatures["recommend"], users, hist, K)
    want_ids, want_scores = in_process_top_k(shipped.models[stage], prepared, rows, K)
    assert not got["popularity_fallback"].any()
    assert got["item_ids"].astype(str).tolist() == want_ids.tolist()
    np.testing.assert_allclose(got["scores"], want_scores, rtol=1e-6, atol=1e-4)
    if stage == "ranker":  # the candidates are ranked by the ranker's logits, the rest far below
        assert (want_scores[:, 0] > -1e3).all() and (want_scores[:, -1] < -1e3).any()
    # serving_default is still the two-tower, unchanged
    assert set(loaded.signatures) == {"serving_default", "query", "candidates", "recommend"}


def test_features_equal_signals_lists(shipped: Shipped) -> None:
    """The TensorFlow lists and features from the same deep and wide scores as ``Signals.lists``, by name."""
    signals, n = shipped.models["ranker"].signals, 20
    rows = cold_start_rows(shipped.prepared)
    lists = signals.lists(rows, n)
    deep, wide = signals.scores(rows)
    support = np.asarray((signals.wide.source[rows] @ signals.support_matrix).todense(), np.float64)
    columns, mask, features = ranking_features.candidate_lists(
        tf.constant(deep),
        tf.constant(wide),
        tf.constant(support),
        tf.constant(signals.log_pop),
        tf.constant(signals.source_history[rows].astype(np.float64)),
        n,
    )
    np.testing.assert_array_equal(columns.numpy(), lists.columns)
    np.testing.assert_array_equal(mask.numpy(), lists.mask)
    for i, name in enumerate(FEATURES):
        np.testing.assert_allclose(features.numpy()[..., i], lists.features[..., i], atol=1e-6, err_msg=name)
    fused = ranking_features.fused(tf.constant(deep), tf.constant(wide), signals.fusion_weight).numpy()
    np.testing.assert_allclose(fused, signals.fused(deep, wide, signals.fusion_weight), atol=1e-9)


def test_a_feature_without_a_graph_twin_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ranking_features, "FEATURES", (*FEATURES, "brand_new"))
    with pytest.raises(XcatError, match="brand_new .*FEATURE_GRAPH"):
        ranking_features.check_features([*FEATURES, "brand_new"], len(FEATURES) + 1)
    monkeypatch.undo()
    with pytest.raises(XcatError, match="trained on the features"):
        ranking_features.check_features(list(FEATURES[:-1]), len(FEATURES) - 1)
    ranking_features.check_features(list(FEATURES), len(FEATURES))


def test_recommend_graph_has_stock_ops_only(shipped: Shipped) -> None:
    """The ranker stage's graph (which holds every stage's ops) against the stock op registry, in a process
    that never imported tfrec_xcat."""
    path = shipped.saved["ranker"] / "xcat_retrieval" / "1" / "saved_model.pb"
    script = textwrap.dedent(f"""
        import json
        from tensorflow.core.protobuf import saved_model_pb2
        from tensorflow.python.framework import op_def_registry
        proto = saved_model_pb2.SavedModel()
        proto.ParseFromString(open({str(path)!r}, "rb").read())
        ops = set()
        for graph in proto.meta_graphs:
            ops |= {{n.op for n in graph.graph_def.node}}
            for fn in graph.graph_def.library.function:
                ops |= {{n.op for n in fn.node_def}}
        print(json.dumps({{"ops": sorted(ops), "unknown": sorted(o for o in ops if op_def_registry.get(o) is None)}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["unknown"] == [], report["unknown"]
    assert {"SparseTensorDenseMatMul", "TopKV2", "TensorScatterUpdate", "LookupTableFindV2"} <= set(report["ops"])


def test_a_run_without_the_stage_exports_and_scores_as_before(shipped: Shipped, tmp_path: Path) -> None:
    """A run trained before the retrieve → rank stage was saved: no ``recommend``, ``score`` takes the two-tower."""
    run = tmp_path / "old-run"
    shutil.copytree(shipped.saved["deep"].parent / "model", run / "model")
    for name in ("transfer.json", "wide.npz", "transfer.npz"):
        (run / "model" / name).unlink()
    export(run, tmp_path / "saved", names=["xcat_retrieval"])
    loaded = load_saved_model(str(tmp_path / "saved" / "xcat_retrieval" / "1"))
    assert set(loaded.signatures) == {"serving_default", "query", "candidates"}
    assert batch.load_retrieval(tmp_path / "saved" / "xcat_retrieval").signature == "query+candidates"


@pytest.fixture(scope="module")
def server(shipped: Shipped, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    from tfrec_xcat.serving.grpc_server import make_grpc_server
    from tfrec_xcat.serving.registry import Registry
    from tfrec_xcat.serving.rest import make_rest_server, serve_in_thread

    models = tmp_path_factory.mktemp("served")
    shutil.copytree(shipped.saved["ranker"], models, dirs_exist_ok=True)
    registry = Registry(models, poll_seconds=0.2)
    registry.start()
    rest = make_rest_server(registry, "127.0.0.1", 0, max_body=1 << 20)
    grpc_server = make_grpc_server(registry, "127.0.0.1", 0)
    grpc_server.start()
    serve_in_thread(rest)
    yield {"rest": f"http://127.0.0.1:{rest.server_address[1]}", "grpc": f"127.0.0.1:{grpc_server.bound_port}"}
    rest.shutdown()
    grpc_server.stop(grace=0)
    registry.stop()


def test_serve_answers_recommend_over_rest_and_grpc(shipped: Shipped, server: dict[str, str]) -> None:
    from tfrec_xcat.serving.client import GrpcClient, RestClient

    rows = cold_start_rows(shipped.prepared, 6)
    users, hist = requests(shipped.prepared, rows)
    want, _ = in_process_top_k(shipped.models["ranker"], shipped.prepared, rows, 10)
    rest = RestClient(server["rest"])
    reply = rest.predict(
        "xcat_retrieval", inputs={"user_id": users, "history": hist, "k": [10] * len(users)}, signature="recommend"
    )
    assert reply["outputs"]["item_ids"] == want.tolist()
    rows_reply = rest.predict(
        "xcat_retrieval",
        [{"user_id": u, "history": h, "k": 10} for u, h in zip(users, hist, strict=True)],
        signature="recommend",
    )
    assert [r["item_ids"] for r in rows_reply["predictions"]] == want.tolist()
    default = rest.predict("xcat_retrieval", inputs={"user_id": users, "history": hist, "k": [10] * len(users)})
    assert default["outputs"]["item_ids"] != want.tolist()  # serving_default is the two-tower alone
    grpc_client = GrpcClient(server["grpc"])
    got = grpc_client.predict(
        "xcat_retrieval",
        {
            "user_id": np.array(users, dtype=object),
            "history": np.array(hist, dtype=object),
            "k": np.full(len(users), 10, np.int32),
        },
        signature="recommend",
    )
    grpc_client.close()
    assert got["item_ids"].astype(str).tolist() == want.tolist()


def test_score_uses_recommend_and_equals_serving(shipped: Shipped, server: dict[str, str], tmp_path: Path) -> None:
    from tfrec_xcat.serving.client import RestClient

    data = load_data(shipped.prepared.config)
    retrieval = batch.load_retrieval(shipped.saved["ranker"] / "xcat_retrieval")
    assert retrieval.signature == "recommend"
    users = np.sort(data.interactions.user_id.unique())[:60]
    users = np.concatenate([users, np.array(["nobody"], dtype=object)])
    manifest = batch.score_users(retrieval, data, users, tmp_path, k=10, block=32, progress=False)
    assert manifest["signature"] == "recommend" and manifest["popularity_fallback_users_this_run"] == 1
    offline = pd.read_parquet(tmp_path).sort_values(["user_id", "rank"])
    hist, _ = batch.histories(batch.item_lists(data), users)
    width = max(len(h) for h in hist)
    reply = RestClient(server["rest"]).predict(
        "xcat_retrieval",
        inputs={"user_id": list(users), "history": [h + [""] * (width - len(h)) for h in hist], "k": [10] * len(users)},
        signature="recommend",
    )["outputs"]
    for i, user in enumerate(users):
        mine = offline[offline.user_id == user]
        assert mine.item_id.tolist() == reply["item_ids"][i], user
        np.testing.assert_allclose(
            mine.score.to_numpy(), reply["scores"][i], rtol=1e-5, atol=1e-6
        )  # batch sizes differ
