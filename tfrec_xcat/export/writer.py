"""Writing servables in TF Serving's layout: ``<out>/<model>/<version>/`` appearing only when complete.

Each version is written into a hidden temporary folder beside it and renamed into place (atomic on one file
system), so a TF Serving watching ``<out>`` never sees half a model. Next to the models: ``models.config``
(a ``model_config_list`` for all servables) and ``batching_parameters.txt``; inside each version,
``assets.extra/tf_serving_warmup_requests`` (a TFRecord of ``PredictionLog``s) warms the model up on load.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

BATCHING = """max_batch_size { value: 256 }
batch_timeout_micros { value: 1000 }
max_enqueued_batches { value: 1000 }
num_batch_threads { value: 4 }
pad_variable_length_inputs: true
"""


def versions(model_dir: Path) -> list[int]:
    """Complete versions in ``model_dir`` (integer-named folders), sorted."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and re.fullmatch(r"\d+", p.name))


def next_version(out: Path, names: list[str]) -> int:
    return 1 + max([0, *(v for n in names for v in versions(out / n))])


def warmup_records(name: str, inputs: dict[str, np.ndarray]) -> bytes:
    """One serialized ``PredictionLog`` asking ``name`` to predict ``inputs``."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=name, signature_name="serving_default"))
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
    return log.SerializeToString()


def write_version(
    module: tf.Module,
    out: Path,
    name: str,
    version: int,
    warmup: dict[str, np.ndarray],
    before_rename: Callable[[Path], Any] | None = None,
) -> Path:
    """Save ``module`` as ``out/name/version`` atomically; returns the final path."""
    model_dir = out / name
    model_dir.mkdir(parents=True, exist_ok=True)
    final = model_dir / str(version)
    if final.exists():
        raise FileExistsError(f"{final} exists already; versions are never overwritten")
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=model_dir))
    try:
        signatures = module.signatures() if hasattr(module, "signatures") else {"serving_default": module.serve}
        tf.saved_model.save(module, str(tmp), signatures=signatures)
        extra = tmp / "assets.extra"
        extra.mkdir(exist_ok=True)
        with tf.io.TFRecordWriter(str(extra / "tf_serving_warmup_requests")) as writer:
            writer.write(warmup_records(name, warmup))
        if before_rename is not None:
            before_rename(tmp)
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def write_server_configs(out: Path, names: list[str], base: str = "/models") -> None:
    """``models.config`` (paths as TF Serving sees them under ``base``) and ``batching_parameters.txt``."""
    entries = "".join(
        f"  config {{\n    name: '{n}'\n    base_path: '{base}/{n}'\n    model_platform: 'tensorflow'\n  }}\n"
        for n in names
    )
    (out / "models.config").write_text(f"model_config_list {{\n{entries}}}\n")
    (out / "batching_parameters.txt").write_text(BATCHING)


def clean_partial(out: Path) -> list[Path]:
    """Remove temporary folders an interrupted export left behind; returns what was removed."""
    removed = []
    for tmp in out.glob("*/.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
        removed.append(tmp)
    return removed
