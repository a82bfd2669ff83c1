"""``tfrec-xcat reindex`` (issue 14, catalogue refresh): new items in the served catalogue without retraining.

The model here is the small-shop two-tower with content-only item towers (``use_ids = false``; the wide &
deep term stays on): a new item's vector then depends on its category and text alone, exactly as a catalogue
item's does, so "an item with the same text as the one the model ranks first" has the same deep score, and
where it lands is decided by the memorisation term and the prior a new item gets. With id embeddings (and one
training epoch) a text twin differs by the id part, which the tests would have to guess around. The run's final
stage is forced to ``fusion`` (the ``recommend`` signature: deep + memorisation), so a new item, which has no
memorisation, is recommended by its deep score; ``tests/test_recommend.py`` reindexes a ranker stage.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from tests.conftest import SMALL_CONFIG
from tests.servers import launch_server, stop_server
from tests.stock_ops import op_report
from tfrec_xcat import api
from tfrec_xcat.cli import main
from tfrec_xcat.config import load_config
from tfrec_xcat.export.reindex import catalogue_of
from tfrec_xcat.export.writer import versions
from tfrec_xcat.scoring import batch
from tfrec_xcat.scoring.batch import load_retrieval, score_users

NEW = "KITNEW001"
POLL_SECONDS = 0.5  # what tests/servers.py starts the server with
LOAD_MARGIN = 30.0  # loading a version on a busy two-core machine, beyond the polling period


@pytest.fixture(scope="module")
def shop() -> Any:
    return api.load_data(load_config(None, SMALL_CONFIG))


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An export of the small shop's content-only two-tower (version 1 of every servable)."""
    from tfrec_xcat.export.exporter import export
    from tfrec_xcat.train import run_training

    config = {
        **SMALL_CONFIG,
        "model": {**SMALL_CONFIG["model"], "use_ids": False},
        "ranker": {**SMALL_CONFIG["ranker"], "stages": ["fusion"]},
    }
    run = tmp_path_factory.mktemp("reindex-run")
    run_training(load_config(None, config), run)
    out = tmp_path_factory.mktemp("reindex-models")
    export(run, out)
    return out


def fresh(base: Path, tmp_path: Path) -> Path:
    models = tmp_path / "models"
    shutil.copytree(base, models)
    return models


def serve(version_dir: Path) -> Any:
    return tf.saved_model.load(str(version_dir))


def top(
    loaded: Any, user: str, history: list[str], k: int, signature: str = "serving_default"
) -> tuple[list[str], np.ndarray]:
    out = loaded.signatures[signature](
        user_id=tf.constant([user]), history=tf.constant([history or [""]]), k=tf.constant([k])
    )
    return out["item_ids"].numpy()[0].astype(str).tolist(), out["scores"].numpy()[0]


def candidates(loaded: Any) -> dict[str, np.ndarray]:
    out = {k: v.numpy() for k, v in loaded.signatures["candidates"]().items()}
    out["item_ids"] = out["item_ids"].astype(str)
    return out


@pytest.fixture(scope="module")
def request_and_twin(base: Path, shop: Any) -> tuple[list[str], str]:
    """A new shopper's history (one user's Kitchen items) and the item version 1 ranks first for it."""
    inter = shop.interactions.sort_values(["user_id", "position"])
    kitchen = inter[inter.category == "Kitchen"].groupby("user_id")["item_id"].agg(list)
    history = next(items for items in kitchen if len(items) >= 3)
    ids, _ = top(serve(base / "xcat_retrieval" / "1"), "new-shopper", history, 1)
    return history, ids[0]


def write_items(path: Path, shop: Any, rows: list[tuple[str, str]]) -> Path:
    """An items file: (new id, id of the catalogue item whose title and brand it copies) per row."""
    meta = shop.items.set_index("item_id")
    frame = pd.DataFrame(
        [
            {"item_id": new, "category": "Kitchen", "title": meta.loc[src, "title"], "brand": meta.loc[src, "brand"]}
            for new, src in rows
        ]
    )
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def published(base: Path, shop: Any, request_and_twin, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The export, reindexed once with NEW: a copy of the text of the item version 1 ranks first."""
    _, twin = request_and_twin
    models = tmp_path_factory.mktemp("reindexed") / "models"
    shutil.copytree(base, models)
    items = write_items(models.parent / "new.csv", shop, [(NEW, twin)])
    return {"models": models, "result": api.reindex(models, items)}


def test_new_item_is_recommended_for_a_history_its_text_matches(published, request_and_twin, base: Path) -> None:
    """NEW copies the text of the catalogue item nearest to a new shopper's Kitchen history (version 1's first
    answer): version 2 ranks it next to that twin, its score differing only by the priors."""
    history, twin = request_and_twin
    result = published["result"]
    assert (result.version, result.previous, result.added, result.replaced, result.removed) == (2, 1, 1, 0, 0)
    assert result.items == 121 and result.item_tower_version == 1
    assert result.path == published["models"] / "xcat_retrieval" / "2"

    old, new = serve(base / "xcat_retrieval" / "1"), serve(result.path)
    before, after = candidates(old), candidates(new)
    row, twin_row = list(after["item_ids"]).index(NEW), list(after["item_ids"]).index(twin)
    # embedded by the item tower from its text alone: the same vector as its text twin
    np.testing.assert_allclose(after["vectors"][row], after["vectors"][twin_row], atol=1e-6)
    # no interactions: popularity 0, and the mean prior of the least popular catalogue items
    least = before["popularity"] == before["popularity"].min()
    assert after["popularity"][row] == 0.0
    assert after["prior"][row] == pytest.approx(float(before["prior"][least].mean()), abs=1e-6)
    assert result.new_item_prior == pytest.approx(float(before["prior"][least].mean()), abs=1e-6)
    wide = new.signatures["query"](user_id=tf.constant(["new-shopper"]), history=tf.constant([history]))["wide"]
    assert wide.numpy()[0, row] == 0.0  # an empty memorisation column
    for key in ("vectors", "popularity", "prior"):  # the rest of the catalogue is unchanged
        np.testing.assert_array_equal(np.delete(after[key], row, axis=0), before[key])

    ids, scores = top(new, "new-shopper", history, 10)
    assert NEW in ids[:3], ids
    assert twin in ids[:3], ids
    # same deep score as the twin: the scores differ by the priors (and the twin's memorisation term, 0 here)
    gap = scores[ids.index(twin)] - scores[ids.index(NEW)]
    assert gap == pytest.approx(float(after["prior"][twin_row] - after["prior"][row]), abs=1e-4)
    assert NEW not in top(old, "new-shopper", history, 120)[0]  # version 1 is untouched
    ids, scores = top(new, "new-shopper", [*history, NEW], 121)  # never recommends what the request has
    assert scores[ids.index(NEW)] == -np.inf

    # recommend (the fusion stage) was republished, NEW with empty memorisation columns: its deep score puts it
    # next to its twin
    assert "recommend" in new.signatures
    ids, scores = top(new, "new-shopper", history, 10, "recommend")
    assert NEW in ids[:3] and twin in ids[:3], ids
    assert NEW not in top(old, "new-shopper", history, 120, "recommend")[0]
    ids, scores = top(new, "new-shopper", [*history, NEW], 121, "recommend")
    assert scores[ids.index(NEW)] == -np.inf
    columns = catalogue_of(new, result.path).rank
    assert columns is not None and columns.memorisation and all(w[row].nnz == 0 for w in columns.memorisation)
    assert columns.log_popularity[row] == 0.0 and columns.tiebreak[row] == 0.0


@pytest.mark.parametrize("signature", ["recommend", "serving_default"])
def test_score_uses_the_new_version_and_equals_serving(published, shop: Any, tmp_path: Path, signature: str) -> None:
    retrieval = load_retrieval(published["models"] / "xcat_retrieval", recommend=signature == "recommend")
    assert retrieval.version == 2 and NEW in set(retrieval.item_ids) and retrieval.wide
    assert retrieval.signature == ("recommend" if signature == "recommend" else "query+candidates")
    users = np.sort(shop.interactions.user_id.unique())[:60]
    score_users(retrieval, shop, users, tmp_path, k=10, progress=False)
    offline = pd.read_parquet(tmp_path)
    hist, _ = batch.histories(batch.item_lists(shop), users)
    width = max(len(h) for h in hist)
    padded = np.array([h + [""] * (width - len(h)) for h in hist], dtype=object).astype(bytes)
    online = retrieval.loaded.signatures[signature](
        user_id=tf.constant(users.astype(bytes)), history=tf.constant(padded), k=tf.constant([10] * len(users))
    )
    ids = online["item_ids"].numpy().astype(str)
    scores = online["scores"].numpy()
    for i, user in enumerate(users):
        mine = offline[offline.user_id == user].sort_values("rank")
        assert mine.item_id.tolist() == ids[i].tolist(), user
        np.testing.assert_allclose(mine.score.to_numpy(), scores[i], rtol=1e-4, atol=1e-4)


def test_reindexed_version_uses_only_stock_ops(published) -> None:
    report = op_report([published["result"].path])
    assert report["unknown"] == [], report["unknown"]
    assert "TopKV2" in report["ops"] and "LookupTableFindV2" in report["ops"]


def functions(version_dir: Path) -> int:
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((version_dir / "saved_model.pb").read_bytes())
    return len(proto.meta_graphs[0].graph_def.library.function)


def owned_item(loaded: Any, users: list[str]) -> tuple[str, str]:
    """A known user and a catalogue item of their stored training history (excluded when they send none)."""
    for user in users:
        ids, scores = top(loaded, user, [], 120)
        if np.isneginf(scores).any():
            return user, ids[int(np.flatnonzero(np.isneginf(scores))[0])]
    raise AssertionError("no user with a stored Kitchen history")


def test_remove_readd_and_replace(base: Path, shop: Any, tmp_path: Path) -> None:
    models = fresh(base, tmp_path)
    version1 = serve(models / "xcat_retrieval" / "1")
    first = candidates(version1)
    user, gone = owned_item(version1, sorted(shop.interactions[shop.interactions.category == "Kitchen"].user_id))
    kept = next(i for i, p in zip(first["item_ids"], first["popularity"], strict=True) if p > 0 and i != gone)

    shopper = sorted(set(first["item_ids"]) - {gone})[:3]  # a new shopper's Kitchen history
    answer, _ = top(version1, "new-shopper", shopper, 117, "recommend")
    assert gone in answer

    removal = tmp_path / "discontinued.csv"
    pd.DataFrame({"item_id": [gone]}).to_csv(removal, index=False)
    result = api.reindex(models, remove=removal)
    assert (result.version, result.removed, result.items) == (2, 1, 119)
    version2 = serve(result.path)
    assert gone not in set(candidates(version2)["item_ids"])
    # recommend: the same answer without it (no source history: the fusion is the deep order), its columns gone
    ids, _ = top(version2, "new-shopper", shopper, 116, "recommend")
    assert ids == [i for i in answer if i != gone]
    columns = catalogue_of(version2, result.path).rank
    assert columns is not None and all(w.shape[0] == 119 for w in columns.memorisation)

    back = write_items(tmp_path / "back.csv", shop, [(gone, gone)])
    result = api.reindex(models, back)  # back in the catalogue, as a new item: its interactions were dropped
    again = serve(result.path)
    after = candidates(again)
    row = list(after["item_ids"]).index(gone)
    np.testing.assert_allclose(after["vectors"][row], first["vectors"][list(first["item_ids"]).index(gone)], atol=1e-6)
    assert after["popularity"][row] == 0.0
    # the model knows the item: a user who has it (stored history, no request history) is still not offered it
    ids, scores = top(again, user, [], 120)
    assert scores[ids.index(gone)] == -np.inf

    changed = tmp_path / "changed.csv"
    pd.DataFrame(
        [{"item_id": kept, "category": "Kitchen", "title": "Completely different words", "brand": "X"}]
    ).to_csv(changed, index=False)
    result = api.reindex(models, changed, replace=True)
    assert (result.version, result.added, result.replaced, result.items) == (4, 0, 1, 120)
    last = candidates(serve(result.path))
    i, j = list(after["item_ids"]).index(kept), list(last["item_ids"]).index(kept)
    assert not np.allclose(last["vectors"][j], after["vectors"][i])  # re-embedded from its new text
    assert (last["popularity"][j], last["prior"][j]) == (after["popularity"][i], after["prior"][i])  # kept
    # each version is built around the same encoder: the graph does not grow from one reindex to the next
    assert functions(models / "xcat_retrieval" / "2") == functions(models / "xcat_retrieval" / "4")
    assert versions(models / "xcat_item_tower") == [1] and versions(models / "xcat_ranking") == [1]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["reindex", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_errors_are_one_line_and_publish_nothing(base: Path, shop: Any, tmp_path: Path, capsys) -> None:
    models = fresh(base, tmp_path)
    flags = ["--models", str(models)]

    duplicate = write_items(tmp_path / "dup.csv", shop, [("KITNEW9", "KIT00001"), ("KIT00002", "KIT00002")])
    code, _, err = run_cli(capsys, *flags, "--items", str(duplicate))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{duplicate}:3: item KIT00002 is already in the catalogue" in err and "--replace" in err

    bad = tmp_path / "bad.csv"
    bad.write_text(
        "item_id,category,title,brand\nKITNEW1,Kitchen,Steel pan,Acme\n,Kitchen,No id,Acme\n"
        'KITNEW2,Kitchen,"broken,Acme\nKITNEW3,Kitchen,Fine pot,Acme\nKITNEW1,Kitchen,Again,Acme\n'
    )
    code, _, err = run_cli(capsys, *flags, "--items", str(bad))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    for where in (f"{bad}:3: missing_field", f"{bad}:4: malformed_line", f"{bad}:6: duplicate_item"):
        assert where in err, err
    assert "3 bad row(s)" in err

    other = tmp_path / "food.csv"
    other.write_text("item_id,category,title\nKITNEW1,Kitchen,Steel pan\nFOONEW1,Food,Green tea\n")
    code, _, err = run_cli(capsys, *flags, "--items", str(other))
    assert code == 2 and f"{other}:3: item FOONEW1 is in category 'Food', not the catalogue's 'Kitchen'" in err

    unknown = tmp_path / "remove.csv"
    unknown.write_text("item_id\nKIT00003\nNOSUCH1\n")
    code, _, err = run_cli(capsys, *flags, "--remove", str(unknown))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{unknown}:3: item NOSUCH1 is not in the catalogue" in err and "1 unknown id(s)" in err

    code, _, err = run_cli(capsys, *flags)
    assert code == 2 and "nothing to do" in err
    code, _, err = run_cli(capsys, "--models", str(tmp_path / "nowhere"), "--items", str(duplicate))
    assert code == 2 and "no exported versions" in err

    assert versions(models / "xcat_retrieval") == [1]  # nothing was published
    assert not list((models / "xcat_retrieval").glob(".tmp-*"))


@pytest.mark.slow
def test_live_server_switches_to_the_reindexed_version(
    base: Path, shop: Any, request_and_twin, tmp_path: Path, capsys
) -> None:
    """A running ``serve`` answers from version 1 until version 2 is loaded, then with the new item, within a
    polling period (plus the time to load it)."""
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    history, twin = request_and_twin
    models = fresh(base, tmp_path)
    old_ids, _ = top(serve(models / "xcat_retrieval" / "1"), "new-shopper", history, 10)
    proc, line = launch_server(models, tmp_path / "serve-stderr.txt")
    answers: list[tuple[float, int, list[str]]] = []
    failures: list[str] = []
    stop = threading.Event()
    try:
        match = re.search(r"gRPC (127\.0\.0\.1:\d+)", line)
        assert match, f"the server did not start: {line!r}\n{(tmp_path / 'serve-stderr.txt').read_text()[-3000:]}"
        channel = grpc.insecure_channel(match.group(1))
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "xcat_retrieval"
        request.inputs["user_id"].CopyFrom(tf.make_tensor_proto(["new-shopper"]))
        request.inputs["history"].CopyFrom(tf.make_tensor_proto([history]))
        request.inputs["k"].CopyFrom(tf.make_tensor_proto([10], dtype=tf.int32))

        def ask() -> None:
            while not stop.is_set():
                try:
                    reply = stub.Predict(request, timeout=30)
                    ids = tf.make_ndarray(reply.outputs["item_ids"])[0].astype(str).tolist()
                    answers.append((time.monotonic(), reply.model_spec.version.value, ids))
                except grpc.RpcError as exc:
                    failures.append(f"{exc.code()}: {exc.details()}")
                stop.wait(0.05)

        asker = threading.Thread(target=ask, daemon=True)
        asker.start()
        deadline = time.monotonic() + 60
        while not answers and not failures and time.monotonic() < deadline:
            time.sleep(0.05)
        assert answers, failures[:3]

        items = write_items(tmp_path / "new.csv", shop, [(NEW, twin)])
        started = time.monotonic()
        code, out, err = run_cli(capsys, "--models", str(models), "--items", str(items))
        published = time.monotonic()
        assert code == 0, err
        assert "published version 2 (from version 1): 1 added" in out
        deadline = published + POLL_SECONDS + LOAD_MARGIN
        while not any(version == 2 for _, version, _ in answers) and time.monotonic() < deadline:
            time.sleep(0.05)
        switched = next((at for at, version, _ in answers if version == 2), None)
        stop.set()
        asker.join(timeout=60)
        channel.close()
    finally:
        stop.set()
        stop_server(proc)
    assert not failures, failures[:3]
    assert switched is not None, f"version 2 not served within {POLL_SECONDS + LOAD_MARGIN:g} s of publishing"
    new_ids, _ = top(serve(models / "xcat_retrieval" / "2"), "new-shopper", history, 10)
    assert NEW in new_ids[:3]
    seen = [version for _, version, _ in answers]
    assert seen == sorted(seen) and set(seen) == {1, 2}  # one switch, never back
    # requests during the reindex and the load were answered, by the old version
    assert any(version == 1 and at >= started for at, version, _ in answers)
    for _, version, ids in answers:
        assert ids == (old_ids if version == 1 else new_ids)
    print(f"version 2 served {switched - published:.2f} s after it was published")
