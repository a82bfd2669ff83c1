"""Export: fresh-process load equals the in-process model, stock ops only, atomic increasing versions."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import SMALL_CONFIG, VECTOR_COLUMN, VECTOR_DIM
from tests.stock_ops import op_report
from tfrec_xcat.export.artifacts import load_trained
from tfrec_xcat.export.exporter import export, warmup_inputs
from tfrec_xcat.export.servables import RetrievalServable
from tfrec_xcat.export.writer import versions

REQUEST = {
    "user_id": ["u0000001", "u0000002", "nobody", "nobody"],
    "history": [["", "", ""], ["FOO00003", "KIT00004", ""], ["FOO00001", "FOO00002", "nope"], ["", "", "nope"]],
    "k": [10, 10, 10, 10],
}


def test_layout_and_configs(exported: Path) -> None:
    for name in ("xcat_retrieval", "xcat_ranking", "xcat_item_tower"):
        version = exported / name / "1"
        assert (version / "saved_model.pb").is_file() and (version / "variables").is_dir()
        assert (version / "assets.extra" / "tf_serving_warmup_requests").stat().st_size > 0
        assert f"name: '{name}'" in (exported / "models.config").read_text()
    assert "max_batch_size" in (exported / "batching_parameters.txt").read_text()


def test_fresh_process_load_matches_in_process(trained: Path, exported: Path, tmp_path: Path) -> None:
    model, space, _ = load_trained(trained)
    servable = RetrievalServable(model, space)
    expected = servable.serve(
        tf.constant(REQUEST["user_id"]), tf.constant(REQUEST["history"]), tf.constant(REQUEST["k"], tf.int32)
    )
    script = textwrap.dedent(f"""
        import json, sys
        import tensorflow as tf
        try:
            import tfrec_xcat
            sys.exit("tfrec_xcat must not be importable here")
        except ImportError:
            pass
        fn = tf.saved_model.load({str(exported / "xcat_retrieval" / "1")!r}).signatures["serving_default"]
        req = json.loads({json.dumps(json.dumps(REQUEST))})
        out = fn(user_id=tf.constant(req["user_id"]), history=tf.constant(req["history"]),
                 k=tf.constant(req["k"], tf.int32))
        print(json.dumps({{"ids": out["item_ids"].numpy().astype(str).tolist(),
                          "scores": out["scores"].numpy().tolist(),
                          "fallback": out["popularity_fallback"].numpy().tolist()}}))
    """)
    # a process that cannot import tfrec_xcat: run from an empty dir with the package hidden
    env = {"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "HOME": str(tmp_path)}
    hide = tmp_path / "sitecustomize.py"
    hide.write_text(
        "import sys\nsys.meta_path.insert(0, type('H', (), {'find_spec': staticmethod("
        "lambda n, *a: (_ for _ in ()).throw(ImportError(n)) if n.split('.')[0] == 'tfrec_xcat' "
        "else None)})())\n"
    )
    env["PYTHONPATH"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["ids"] == expected["item_ids"].numpy().astype(str).tolist()
    np.testing.assert_allclose(got["scores"], expected["scores"].numpy(), rtol=1e-5, atol=1e-6)
    assert got["fallback"] == [False, False, False, True]  # unknown id + only unknown history → popularity
    # never recommends what the request history holds
    assert "KIT00004" not in got["ids"][1]


@pytest.fixture(scope="module")
def trained_with_vectors(vector_shop_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model of the shop whose items have precomputed vectors (and pretrained title tokens)."""
    from tfrec_xcat.config import load_config
    from tfrec_xcat.train import run_training

    config = {name: dict(values) for name, values in SMALL_CONFIG.items()}
    config["data"] = {"path": str(vector_shop_dir), "vector_columns": [VECTOR_COLUMN], "source": "Food"}
    config["data"]["target"] = "Kitchen"
    config["model"]["text_pretraining"] = "ppmi_svd"
    config["model"]["towers"] = 2  # the shipped default: a tower ensemble exports as one two-tower
    run = tmp_path_factory.mktemp("trained-vectors")
    run_training(load_config(None, config), run)
    return run


@pytest.fixture(scope="module")
def exported_with_vectors(trained_with_vectors: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("saved_models_vectors")
    export(trained_with_vectors, out)
    return out


def test_item_tower_with_vectors(trained_with_vectors: Path, exported_with_vectors: Path, exported: Path) -> None:
    """The item tower takes the vectors (NaN: none) only when the model has them; retrieval's catalogue vectors
    include them."""
    model, space, _ = load_trained(trained_with_vectors)
    loaded = tf.saved_model.load(str(exported_with_vectors / "xcat_item_tower" / "1"))
    serve = loaded.signatures["serving_default"]
    inputs = serve.structured_input_signature[1]
    assert set(inputs) == {"item_id", "category", "text", "vectors"}
    assert inputs["vectors"].shape.as_list() == [None, VECTOR_DIM]
    items = space.items_of(space.target)[:3]
    ids = np.asarray(space.items)[items - 1].astype(str)
    text = ["", "", ""]
    stored = space.item_vectors[items]
    request = stored.copy()
    request[2] = np.nan  # the third item sent without its vector
    got = serve(
        item_id=tf.constant(ids),
        category=tf.constant([space.target] * 3),
        text=tf.constant(text),
        vectors=tf.constant(request),
    )["embedding"].numpy()
    features = model.item_features(tf.constant(items))
    features["tokens"] = tf.zeros_like(features["tokens"])  # the request has no text
    features["vectors"] = tf.constant(np.where(np.isnan(request), 0.0, request).astype(np.float32))
    features["vector_mask"] = tf.constant([[1.0], [1.0], [0.0]])
    np.testing.assert_allclose(got, model.item_tower(features).numpy(), rtol=1e-5, atol=1e-6)
    assert space.item_vector_mask[items[:2], 0].tolist() == [1.0, 1.0]
    # retrieval's catalogue vectors come from the item tower, stored vectors included
    retrieval = tf.saved_model.load(str(exported_with_vectors / "xcat_retrieval" / "1"))
    vectors = retrieval.signatures["candidates"]()["vectors"].numpy()
    np.testing.assert_allclose(vectors, model.target_item_vectors(), rtol=1e-5, atol=1e-6)
    # without vectors the item tower's signature is unchanged
    plain = tf.saved_model.load(str(exported / "xcat_item_tower" / "1")).signatures["serving_default"]
    assert set(plain.structured_input_signature[1]) == {"item_id", "category", "text"}
    assert "vectors" not in warmup_inputs(space)["xcat_item_tower"]
    assert warmup_inputs(space, with_vectors=True)["xcat_item_tower"]["vectors"].shape == (2, VECTOR_DIM)


@pytest.mark.parametrize("which", ["exported", "exported_with_vectors"])
def test_only_stock_ops(which: str, request: pytest.FixtureRequest) -> None:
    """Every op in every exported graph (functions included) is one the stock TensorFlow registry knows."""
    exported: Path = request.getfixturevalue(which)
    report = op_report([exported / name / "1" for name in ("xcat_retrieval", "xcat_ranking", "xcat_item_tower")])
    assert report["unknown"] == [], report["unknown"]
    assert "TopKV2" in report["ops"] and "LookupTableFindV2" in report["ops"]
    assert not any("scann" in op.lower() for op in report["ops"])


def test_versions_increase_and_interrupted_export_leaves_nothing(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "models"
    export(trained, out, names=["xcat_item_tower"])
    assert versions(out / "xcat_item_tower") == [1]

    from tfrec_xcat.export import writer

    original = writer.write_version

    def dying(*args, **kwargs):
        def crash(tmp: Path) -> None:
            raise KeyboardInterrupt("killed mid-export")

        return original(*args, **kwargs, before_rename=crash)

    writer_module = sys.modules["tfrec_xcat.export.exporter"]
    writer_module.write_version = dying
    try:
        with pytest.raises(KeyboardInterrupt):
            export(trained, out, names=["xcat_item_tower"])
    finally:
        writer_module.write_version = original
    assert versions(out / "xcat_item_tower") == [1]  # no partial version is visible
    assert not list((out / "xcat_item_tower").glob(".tmp-*"))
    export(trained, out, names=["xcat_item_tower"])
    assert versions(out / "xcat_item_tower") == [1, 2]


def test_warmup_requests_parse(exported: Path, trained: Path) -> None:
    from tensorflow_serving.apis import prediction_log_pb2

    path = exported / "xcat_retrieval" / "1" / "assets.extra" / "tf_serving_warmup_requests"
    records = list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())
    log = prediction_log_pb2.PredictionLog.FromString(records[0])
    assert log.predict_log.request.model_spec.name == "xcat_retrieval"
    assert set(log.predict_log.request.inputs) == {"user_id", "history", "k"}
    _, space, _ = load_trained(trained)
    assert set(warmup_inputs(space)) == {"xcat_retrieval", "xcat_ranking", "xcat_item_tower"}


def test_a_model_saved_before_tower_ensembles_loads_as_one_pair(trained: Path, tmp_path: Path) -> None:
    """spec.json without ``towers`` (written before the key existed) is one pair of towers, not today's default."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(trained / "model", old / "model")
    spec = json.loads((old / "model" / "spec.json").read_text())
    assert spec.pop("towers") == 1
    (old / "model" / "spec.json").write_text(json.dumps(spec))
    model, _, loaded_spec = load_trained(old)
    assert loaded_spec.towers == 1 and len(model.item_towers) == 1
    np.testing.assert_allclose(model.target_item_vectors(), load_trained(trained)[0].target_item_vectors())
