"""What a user sees while training: per-epoch progress lines, and TensorFlow's known-harmless logs kept quiet."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tf_keras

from tfrec_xcat.training.progress import StageProgress
from tfrec_xcat.training.trainer import Throughput


class _Validation(tf_keras.callbacks.Callback):
    """Stands in for ValidationStopping: puts a validation value into the epoch logs."""

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.values = values

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["val_cold_ndcg@10"] = self.values[epoch]


def test_stage_progress_prints_a_line_per_epoch_in_a_real_fit() -> None:
    model = tf_keras.Sequential([tf_keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    stream = io.StringIO()
    progress = StageProgress("target", 3, stream=stream)
    model.fit(
        x,
        x[:, :1],
        batch_size=16,
        epochs=3,
        verbose=0,
        callbacks=[Throughput(64), _Validation([0.1, 0.3, 0.2]), progress],
    )
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[target] up to 3 epoch(s) of 4 batches"
    assert len(progress.lines) == 3 and progress.lines == lines[1:]
    for i, line in enumerate(progress.lines, 1):
        assert line.startswith(f"[target] epoch {i}/3: loss ") and " examples/s, " in line
    assert "cold-start val NDCG@10 0.3000 (best 0.3000)" in progress.lines[1]
    assert "cold-start val NDCG@10 0.2000 (best 0.3000)" in progress.lines[2]


def test_tensorboard_has_no_per_batch_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NanGuard's batch hook made tf-keras call TensorBoard's on_train_batch_end too, which ran a summary op per log
    entry each batch (recorded nowhere with update_freq="epoch") and Keras warned the hook was slow compared to the
    batch time. EpochTensorBoard hands it no logs; the per-epoch summaries are still written."""
    import tensorflow as tf

    from tfrec_xcat.training.trainer import EpochTensorBoard, NanGuard

    handed: list[dict | None] = []
    real = tf_keras.callbacks.TensorBoard.on_train_batch_end

    def spy(self: tf_keras.callbacks.TensorBoard, batch: int, logs: dict | None = None) -> None:
        handed.append(logs)
        real(self, batch, logs)

    monkeypatch.setattr(tf_keras.callbacks.TensorBoard, "on_train_batch_end", spy)
    model = tf_keras.Sequential([tf_keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    board = EpochTensorBoard(str(tmp_path), write_graph=False)
    model.fit(x, x[:, :1], batch_size=16, epochs=2, verbose=0, callbacks=[NanGuard(), board])
    assert len(handed) == 8 and all(logs is None for logs in handed)
    tags = {
        value.tag
        for path in (tmp_path / "train").glob("events.out.tfevents.*")
        for event in tf.compat.v1.train.summary_iterator(str(path))
        for value in event.summary.value
    }
    assert "epoch_loss" in tags and not any(tag.startswith("batch_") for tag in tags)


def test_stage_progress_without_validation_or_throughput() -> None:
    stream = io.StringIO()
    progress = StageProgress("source", 1, stream=stream)
    progress.on_epoch_begin(0)
    progress.on_epoch_end(0, {"loss": 2.5})
    (line,) = progress.lines
    assert line.startswith("[source] epoch 1/1: loss 2.5000, ") and "val" not in line and "examples/s" not in line


def _python(code: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter importing this checkout, without the caller's TF log settings."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TFREC_XCAT_TF_LOGS")}
    root = str(Path(__file__).resolve().parents[1])
    env |= {"PYTHONPATH": os.pathsep.join(filter(None, [root, env.get("PYTHONPATH", "")])), **env_vars}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def test_tensorflow_c_logs_are_quiet_by_default_and_can_be_turned_back_on() -> None:
    # the CPU-only machine's cuInit (303) and oneDNN lines came from the first op: nothing may reach stderr
    done = _python("import tfrec_xcat, tensorflow as tf; print(int(tf.reduce_sum(tf.constant([1, 2]))))")
    assert done.stdout.strip() == "3" and done.stderr.strip() == ""
    level = "import os, tfrec_xcat; print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))"
    assert _python(level).stdout.strip() == "3"
    assert _python(level, TFREC_XCAT_TF_LOGS="1").stdout.strip() == "None"  # TensorFlow's own default
    assert _python(level, TF_CPP_MIN_LOG_LEVEL="1").stdout.strip() == "1"  # a user's own setting wins


def test_item_texts_are_tokenised_once_per_run() -> None:
    """Every model of a run tokenised the same item texts with a fresh TextVectorization: TensorFlow warned of
    tf.function retracing (adapt_step) from the fifth. Now the second call is served from the first."""
    from tfrec_xcat.features.space import _tokenize, tokenize

    texts = ["red kettle", "blue kettle steel", "oat flakes"]
    first, vocab = tokenize(texts, 4, 50)
    hits = _tokenize.cache_info().hits
    first[:] = -1  # a caller changing its copy must not change what the next caller gets
    again, vocab_again = tokenize(list(texts), 4, 50)
    assert _tokenize.cache_info().hits == hits + 1
    assert vocab_again == vocab and "kettle" in vocab and again.min() >= 0 and again.shape == (3, 4)
