"""Writing servables in TF Serving's layout: ``<out>/<model>/<version>/`` appearing only when complete.

Each version is written into a hidden temporary folder beside it and renamed into place (atomic on one file
system), so a TF Serving watching ``<out>`` never sees half a model. An export of several servables stages every
one of them first (``.tmp-*`` while being written, ``.staged-<version>`` once complete) and publishes the set at
the end with one rename each; if it is killed during those renames, :func:`recover` (run by the next export)
finishes publishing the staged set, and if it is killed before, :func:`recover` drops what was staged. Version
folders are created with the process umask (readable by a serving user other than the exporter, unlike
``mkdtemp``'s 0700). Next to the models: ``models.config``
(a ``model_config_list`` for all servables) and ``batching_parameters.txt``; inside each version,
``assets.extra/tf_serving_warmup_requests`` (a TFRecord of ``PredictionLog``s) warms the model up on load.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
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


def warmup_records(name: str, inputs: dict[str, np.ndarray], signature: str = "serving_default") -> bytes:
    """One serialized ``PredictionLog`` asking ``name``'s ``signature`` to predict ``inputs``."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=name, signature_name=signature))
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
    return log.SerializeToString()


def _new_tmp(model_dir: Path, version: int) -> Path:
    """A fresh hidden folder; ``mkdir`` applies the umask (``mkdtemp`` would make it 0700)."""
    while True:
        tmp = model_dir / f".tmp-{version}-{secrets.token_hex(4)}"
        try:
            tmp.mkdir(mode=0o777)
            return tmp
        except FileExistsError:
            continue


def staged_path(out: Path, name: str, version: int) -> Path:
    return out / name / f".staged-{version}"


def write_version(
    module: tf.Module,
    out: Path,
    name: str,
    version: int,
    warmup: dict[str, np.ndarray],
    before_rename: Callable[[Path], Any] | None = None,
    publish: bool = True,
) -> Path:
    """Save ``module`` as ``out/name/version`` atomically; returns the final path. With ``publish=False`` the
    complete version is left as ``out/name/.staged-<version>`` (returned) for :func:`publish_set`."""
    model_dir = out / name
    model_dir.mkdir(parents=True, exist_ok=True)
    final = model_dir / str(version)
    if final.exists():
        raise FileExistsError(f"{final} exists already; versions are never overwritten")
    tmp = _new_tmp(model_dir, version)
    target = final if publish else staged_path(out, name, version)
    try:
        signatures = module.signatures() if hasattr(module, "signatures") else {"serving_default": module.serve}
        tf.saved_model.save(module, str(tmp), signatures=signatures)
        extra = tmp / "assets.extra"
        extra.mkdir(exist_ok=True)
        with tf.io.TFRecordWriter(str(extra / "tf_serving_warmup_requests")) as writer:
            for signature in getattr(module, "warmup_signatures", ("serving_default",)):
                writer.write(warmup_records(name, warmup, signature))
        if before_rename is not None:
            before_rename(tmp)
        if not publish and target.exists():
            shutil.rmtree(target)
        os.rename(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def publish_set(out: Path, names: list[str], version: int) -> dict[str, Path]:
    """Rename every staged ``.staged-<version>`` of ``names`` into place (one rename each, nothing else)."""
    written = {}
    for name in names:
        final = out / name / str(version)
        os.rename(staged_path(out, name, version), final)
        written[name] = final
    return written


def recover(out: Path) -> list[str]:
    """Repair what an interrupted export left; returns one line per action.

    Half-written ``.tmp-*`` folders are removed. A staged set whose version is already published for some
    servable was interrupted while publishing: the rest of it is published (rolled forward). A staged set
    with nothing published was interrupted before publishing: it is removed (rolled back).
    """
    done = []
    for tmp in sorted(out.glob("*/.tmp-*")):
        shutil.rmtree(tmp, ignore_errors=True)
        done.append(f"removed an interrupted export's leftovers: {tmp}")
    staged: dict[int, list[Path]] = {}
    for path in sorted(out.glob("*/.staged-*")):
        match = re.fullmatch(r"\.staged-(\d+)", path.name)
        if match:
            staged.setdefault(int(match.group(1)), []).append(path)
    for version, paths in staged.items():
        published = any((model_dir / str(version)).is_dir() for model_dir in out.iterdir() if model_dir.is_dir())
        for path in paths:
            final = path.parent / str(version)
            if published and not final.exists():
                os.rename(path, final)
                done.append(f"published {final}, staged by an export interrupted while publishing its set")
            else:
                shutil.rmtree(path, ignore_errors=True)
                done.append(f"removed {path}, staged by an export interrupted before publishing")
    return done


def write_server_configs(out: Path, names: list[str], base: str = "/models") -> None:
    """``models.config`` (paths as TF Serving sees them under ``base``) and ``batching_parameters.txt``."""
    entries = "".join(
        f"  config {{\n    name: '{n}'\n    base_path: '{base}/{n}'\n    model_platform: 'tensorflow'\n  }}\n"
        for n in names
    )
    (out / "models.config").write_text(f"model_config_list {{\n{entries}}}\n")
    (out / "batching_parameters.txt").write_text(BATCHING)
