"""The exported ``recommend`` signature: retrieve → rank of the shipped ``transfer`` in one graph.

For every final stage (forced with ``[ranker] stages``) the exported top-k equals the in-process
``Transfer.score`` top-k of cold-start users (the ranker stage: an ensemble of two, with the other memorisation
families as features); the TensorFlow candidate features equal ``Signals.lists`` feature by feature; the graph has
stock ops only; ``serve`` answers the signature over REST and gRPC; ``score`` uses it and equals serving;
``reindex`` carries the ranker stage into a new version (unchanged catalogue: the same answers; a new item: empty
memorisation columns; a removed item: never answered). One small transfer is trained per module (its two-tower
once: the later fits restore it).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tests.stock_ops import op_report
from tfrec_xcat import api
from tfrec_xcat.config import load_config
from tfrec_xcat.errors import XcatError
from tfrec_xcat.export import ranking_features
from tfrec_xcat.export.exporter import export
from tfrec_xcat.export.loading import load_saved_model
from tfrec_xcat.export.reindex import catalogue_of, stage_spec_of, warmup_of
from tfrec_xcat.export.servables import CatalogueRetrieval
from tfrec_xcat.export.writer import write_version
from tfrec_xcat.pipeline import PreparedSeed, load_data, prepare_seed
from tfrec_xcat.scoring import batch
from tfrec_xcat.training.hybrid import BASE_FEATURES, Transfer, feature_names
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
            "ranker": {"candidates": [20], "epochs": 3, "fusion_weights": [0.5, 2.0], "ensemble": 2},
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
        assert len(model.deep.model.item_towers) == 2  # the default tower ensemble is what gets exported here
        save_shipped(model, forced, root / stage / "model")
        names = ["xcat_retrieval", "xcat_item_tower"] if stage == "ranker" else ["xcat_retrieval"]  # reindex
        export(root / stage, root / stage / "saved", names=names)
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
        model = shipped.models[stage]  # an ensemble, with the other memorisation families among its features
        assert len(model.rankers[20].members) == 2 and len(model.signals.others) >= 1
    # serving_default is still the two-tower, unchanged
    assert set(loaded.signatures) == {"serving_default", "query", "candidates", "recommend"}


def signal_inputs(signals: Any, rows: np.ndarray) -> dict[str, Any]:
    """``Signals.lists``'s inputs as the exported graph gets them (float64, the owned items at -inf)."""
    deep, wide = signals.scores(rows)
    source = signals.wide.source[rows]
    counts = signals.counts.T.tocsr()  # target column → its source items' counts
    counts.sort_indices()
    hot = tf.constant((source.toarray() > 0).astype(np.float64))
    return {
        "deep": tf.constant(deep),
        "wide": tf.constant(wide),
        "support": tf.constant(np.asarray((source @ signals.support_matrix).todense(), np.float64)),
        "others": {name: tf.constant(signals.memorised(model, rows)) for name, model in signals.others.items()},
        "link": lambda columns: ranking_features.max_link(
            tf.constant(counts.indptr, tf.int64),
            tf.constant(counts.indices, tf.int64),
            tf.constant(counts.data),
            hot,
            columns,
        ),
        "log_popularity": tf.constant(signals.log_pop),
        "source_history": tf.constant(signals.source_history[rows].astype(np.float64)),
    }


def test_features_equal_signals_lists(shipped: Shipped) -> None:
    """The TensorFlow lists and features from the same deep and wide scores as ``Signals.lists``, by name."""
    signals, n = shipped.models["ranker"].signals, 20
    assert len(signals.others) >= 1 and "cooc_max" in signals.features
    rows = cold_start_rows(shipped.prepared)
    lists = signals.lists(rows, n)
    inputs = signal_inputs(signals, rows)
    columns, mask, features = ranking_features.candidate_lists(**inputs, n=n)
    np.testing.assert_array_equal(columns.numpy(), lists.columns)
    np.testing.assert_array_equal(mask.numpy(), lists.mask)
    assert features.shape[-1] == len(signals.features)
    for i, name in enumerate(signals.features):
        np.testing.assert_allclose(features.numpy()[..., i], lists.features[..., i], atol=1e-6, err_msg=name)
    assert lists.features[..., signals.features.index("cooc_max")].max() > 0  # the feature is exercised
    deep, wide = inputs["deep"], inputs["wide"]
    fused = ranking_features.fused(deep, wide, signals.fusion_weight).numpy()
    np.testing.assert_allclose(fused, signals.fused(deep.numpy(), wide.numpy(), signals.fusion_weight), atol=1e-9)


def test_a_feature_without_a_graph_twin_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    others = ["itemknn", "rp3beta"]
    names = list(feature_names(others))
    monkeypatch.setattr(ranking_features, "BASE_FEATURES", (*BASE_FEATURES, "brand_new"))
    with pytest.raises(XcatError, match="brand_new .*FEATURE_GRAPH"):
        ranking_features.check_features(names, others, len(names))
    monkeypatch.setattr(ranking_features, "OTHER_FEATURES", ("rel", "rank", "gap"))
    monkeypatch.setattr(ranking_features, "BASE_FEATURES", BASE_FEATURES)
    with pytest.raises(XcatError, match="<family>_gap .*OTHER_GRAPH"):
        ranking_features.check_features(names, others, len(names))
    monkeypatch.undo()
    with pytest.raises(XcatError, match="trained on the features"):  # an old run, or renamed features
        ranking_features.check_features(names[:-1], others, len(names) - 1)
    renamed = [name.replace("cooc_max", "cooc_top") for name in names]
    with pytest.raises(XcatError, match="trained on the features .*cooc_top.*train the run again"):
        ranking_features.check_features(renamed, others, len(names))
    with pytest.raises(XcatError, match="trained on the features"):  # other families than the run's
        ranking_features.check_features(names, ["cooccurrence", "rp3beta"], len(names))
    with pytest.raises(XcatError, match="takes 3 features"):
        ranking_features.check_features(names, others, 3)
    ranking_features.check_features(names, others, len(names))


def test_recommend_graph_has_stock_ops_only(shipped: Shipped) -> None:
    """The ranker stage's graph (which holds every stage's ops) against the stock op registry, in a process
    that never imported tfrec_xcat."""
    report = op_report([shipped.saved["ranker"] / "xcat_retrieval" / "1"])
    assert report["unknown"] == [], report["unknown"]
    want = {"SparseTensorDenseMatMul", "TopKV2", "TensorScatterUpdate", "LookupTableFindV2", "UnsortedSegmentMax"}
    assert want <= set(report["ops"])


def test_a_run_without_the_stage_exports_and_scores_as_before(shipped: Shipped, tmp_path: Path) -> None:
    """A run trained before the retrieve → rank stage was saved: no ``recommend``, ``score`` takes the two-tower."""
    run = tmp_path / "old-run"
    shutil.copytree(shipped.saved["deep"].parent / "model", run / "model")
    for name in ("transfer.json", "wide.npz", "counts.npz", "transfer.npz", *(run / "model").glob("wide_*.npz")):
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


def test_reindex_carries_the_ranker_stage(shipped: Shipped, tmp_path: Path) -> None:
    """``reindex`` republishes ``recommend``: read back and written again unchanged it answers the same; a new
    item gets empty columns in every memorisation family and the counts (popularity 0); a removed item's columns
    go and no answer has it."""
    prepared = shipped.prepared
    models = tmp_path / "models"
    shutil.copytree(shipped.saved["ranker"], models)
    version1 = models / "xcat_retrieval" / "1"
    users, hist = requests(prepared, cold_start_rows(prepared))
    v1 = load_saved_model(str(version1))
    before = call(v1.signatures["recommend"], users, hist, K)

    catalogue, spec = catalogue_of(v1, version1), stage_spec_of(v1)
    assert spec is not None and catalogue.rank is not None
    assert spec.stage == "ranker" and len(spec.members) == 2 and len(spec.families) >= 2
    again = write_version(
        CatalogueRetrieval(v1.encoder, catalogue, spec), tmp_path / "again", "xcat_retrieval", 1, warmup_of(version1)
    )
    same = call(load_saved_model(str(again)).signatures["recommend"], users, hist, K)
    assert same["item_ids"].tolist() == before["item_ids"].tolist()
    np.testing.assert_array_equal(same["scores"], before["scores"])

    # a new item: the text of the first answer of the first user
    twin = before["item_ids"][0][0].decode()
    items = load_data(prepared.config).items.set_index("item_id")
    new = pd.DataFrame([{"item_id": "KITNEW001", "category": "Kitchen", "title": items.loc[twin, "title"]}])
    new.to_csv(tmp_path / "new.csv", index=False)
    added = api.reindex(models, tmp_path / "new.csv")
    v2 = load_saved_model(str(added.path))
    assert "recommend" in v2.signatures
    n = len(catalogue.item_ids)
    everything = call(v2.signatures["recommend"], users[:1], hist[:1], n + 1)
    ids = everything["item_ids"][0].astype(str).tolist()
    assert "KITNEW001" in ids and np.isfinite(everything["scores"][0][ids.index("KITNEW001")])
    columns = catalogue_of(v2, added.path).rank
    assert columns is not None
    row = list(catalogue_of(v2, added.path).item_ids).index("KITNEW001")
    assert row == n and all(w[row].nnz == 0 for w in columns.memorisation) and columns.counts[row].nnz == 0
    assert columns.log_popularity[row] == 0.0 and columns.tiebreak[row] == 0.0
    for old, edited in zip(catalogue.rank.memorisation, columns.memorisation, strict=True):  # the rest unchanged
        assert (old != edited[:n]).nnz == 0
    assert (catalogue.rank.counts != columns.counts[:n]).nnz == 0

    # removed: the first answer of the first user is in no answer of the next version
    gone = tmp_path / "gone.csv"
    pd.DataFrame({"item_id": [twin]}).to_csv(gone, index=False)
    removed = api.reindex(models, remove=gone)
    v3 = load_saved_model(str(removed.path))
    after = call(v3.signatures["recommend"], users, hist, K)
    assert twin.encode() not in set(after["item_ids"].ravel()) and not after["popularity_fallback"].any()
    columns = catalogue_of(v3, removed.path).rank
    assert columns is not None and all(w.shape[0] == n for w in columns.memorisation)
    assert op_report([removed.path])["unknown"] == []


def test_new_arrival_slots_by_text_profile_equal_in_process(shipped: Shipped, tmp_path: Path) -> None:
    """The slots' new items ordered by the text profile (``new_item_order`` "mix", the default, and "content"):
    with the 40 least popular items made new (popularity 0), the exported ``recommend`` equals the in-process
    ``Transfer.score`` for cold-start and warm users, and the text profile changes which new items take the slots
    of warm users (mix orders a cold-start user's by the two-tower alone)."""
    prepared, model = shipped.prepared, shipped.models["deep"]
    assert model.content is not None and model.new_item_order == "mix"
    cold = cold_start_rows(prepared)
    rows = np.concatenate([cold, prepared.m.segment_users["warm_test"][:30]])
    users, hist = requests(prepared, rows)
    popularity = model.signals.popularity
    new = np.zeros(len(popularity), bool)
    new[np.argsort(popularity, kind="stable")[:40]] = True
    model.signals.popularity, model.new_item_slots = np.where(new, 0.0, popularity), 3
    slots = {}
    try:
        for order in ("mix", "content", "deep"):
            model.new_item_order = order
            want_ids, want_scores = in_process_top_k(model, prepared, rows, 10)
            slots[order] = want_ids[:, 7:]
            assert np.isin(want_ids[:, 7:], np.asarray(prepared.m.target_items)[new]).all()
            if order == "deep":
                continue
            save_shipped(model, prepared, tmp_path / order / "model")
            export(tmp_path / order, tmp_path / order / "saved", names=["xcat_retrieval"])
            loaded = load_saved_model(str(tmp_path / order / "saved" / "xcat_retrieval" / "1"))
            got = call(loaded.signatures["recommend"], users, hist, 10)
            assert got["item_ids"].astype(str).tolist() == want_ids.tolist()
            np.testing.assert_allclose(got["scores"], want_scores, rtol=1e-6, atol=1e-4)
    finally:
        model.signals.popularity, model.new_item_slots, model.new_item_order = popularity, 0, "mix"
    assert (slots["mix"] != slots["deep"]).any() and (slots["content"] != slots["deep"]).any()
    assert (slots["mix"][: len(cold)] == slots["deep"][: len(cold)]).all()


def test_new_arrival_slots_are_exported_and_reach_reindexed_items(shipped: Shipped, tmp_path: Path) -> None:
    """``[ranker] new_item_slots = 2``: the exported ``recommend`` equals the in-process ranking, ``reindex``
    carries the policy, and items it adds (popularity 0: new) take positions 9-10 of every answer, the item
    named like the head of user 0's answer among them. (The rule itself, and
    its graph twin against it, are tested in tests/test_new_arrivals.py.)"""
    prepared, model = shipped.prepared, shipped.models["ranker"]
    rows = cold_start_rows(prepared)
    model.new_item_slots = 2  # the policy only orders the fitted stage's scores: no retraining
    try:
        save_shipped(model, prepared, tmp_path / "run" / "model")
        want_ids, want_scores = in_process_top_k(model, prepared, rows, K)
    finally:
        model.new_item_slots = 0
    export(tmp_path / "run", tmp_path / "saved", names=["xcat_retrieval", "xcat_item_tower"])
    models = tmp_path / "saved"
    users, hist = requests(prepared, rows)
    v1 = load_saved_model(str(models / "xcat_retrieval" / "1"))
    spec = stage_spec_of(v1)
    assert spec is not None and (spec.new_item_slots, spec.new_item_window) == (2, 10)
    got = call(v1.signatures["recommend"], users, hist, K)
    assert got["item_ids"].astype(str).tolist() == want_ids.tolist()
    np.testing.assert_allclose(got["scores"], want_scores, rtol=1e-6, atol=1e-4)
    assert (model.signals.popularity > 0).all()  # the small shop has no new item yet: the slots change nothing
    assert want_ids.tolist() == in_process_top_k(model, prepared, rows, K)[0].tolist()

    items = load_data(prepared.config).items.set_index("item_id")
    titles = [items.loc[want_ids[0][0], "title"], "steel whisk set", "bamboo cutting board"]
    added_ids = ["KITNEW002", "KITNEW003", "KITNEW004"]
    pd.DataFrame({"item_id": added_ids, "category": "Kitchen", "title": titles}).to_csv(
        tmp_path / "new.csv", index=False
    )
    added = api.reindex(models, tmp_path / "new.csv")
    v2 = load_saved_model(str(added.path))
    spec = stage_spec_of(v2)
    assert spec is not None and spec.new_item_slots == 2 and spec.content is not None
    # the added titles are vectorised with the run's vocabulary, as the catalogue's were
    terms = catalogue_of(v2, added.path).rank.content_terms
    np.testing.assert_allclose(terms[-3:].toarray(), spec.content.vectorize(titles).toarray(), rtol=1e-12)
    assert terms[-3].nnz > 0
    answer = call(v2.signatures["recommend"], users, hist, 10)["item_ids"].astype(str)
    for after in answer:  # the slots hold added items (one may also rank in the head on its own merits)
        assert set(after[8:10]) <= set(added_ids) or set(after[:8]) & set(added_ids)
        assert len(set(after) & set(added_ids)) >= 2
    assert "KITNEW002" in set(answer[0])
    assert op_report([added.path])["unknown"] == []

    # the policy changes without retraining: reindex --new-item-slots 0 turns it off, 10 is refused
    off = api.reindex(models, new_item_slots=0)
    assert off.new_item_slots == 0 and (off.added, off.removed) == (0, 0)
    plain = call(load_saved_model(str(off.path)).signatures["recommend"], users, hist, 10)["item_ids"].astype(str)
    assert (plain != answer).any() and not {"KITNEW003", "KITNEW004"} <= set(plain[0])
    with pytest.raises(XcatError, match=r"--new-item-slots: new_item_slots must be in \[0, new_item_window = 10\)"):
        api.reindex(models, new_item_slots=10)
