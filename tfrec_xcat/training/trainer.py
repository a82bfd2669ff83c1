"""Training the transfer model: stages, callbacks, checkpoints, early stopping on cold-start validation.

Modes (``TrainSpec.mode``): stage 1 trains on source interactions (the source-trained item tower), then stage 2
adapts to the target with the item tower ``frozen``, ``partial`` (top layers train) or ``full``; ``joint`` trains
both categories together in one stage (per-category query heads); ``target_only`` trains on target data only.
Early stopping watches a validation callable (cold-start VALIDATION NDCG@10, given by the caller) and restores the
best weights. Each stage checkpoints every epoch and resumes after a crash (``BackupAndRestore``); TensorBoard logs
and examples/second go to the work directory.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf
import tf_keras

from tfrec_xcat.errors import XcatError
from tfrec_xcat.features.space import FeatureSpace
from tfrec_xcat.models.spec import ModelSpec
from tfrec_xcat.models.xcat import XcatModel
from tfrec_xcat.training.spec import TrainSpec

log = logging.getLogger(__name__)


class NanGuard(tf_keras.callbacks.TerminateOnNaN):
    """Stops training at the first NaN or infinite loss; :meth:`check` then raises a clear error, so nothing
    trained on it is saved or exported."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch, self.batch, self.loss = 0, -1, 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and self.batch < 0 and not np.isfinite(float(loss)):
            self.batch, self.loss = batch, float(loss)
            self.model.stop_training = True

    def check(self, stage: str) -> None:
        if self.batch >= 0:
            raise XcatError(
                f"training stage {stage}: the loss became {self.loss} at epoch {self.epoch + 1}, batch "
                f"{self.batch + 1}; stopped, nothing saved or exported (lower [training] learning_rate, or check "
                "[model] temperature)"
            )


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def make_optimizer(spec: TrainSpec) -> tf_keras.optimizers.Optimizer:
    if spec.optimizer == "adagrad":
        return tf_keras.optimizers.Adagrad(spec.learning_rate)
    if spec.optimizer == "sgd":
        return tf_keras.optimizers.SGD(spec.learning_rate, momentum=0.9)
    if spec.optimizer == "lazy_adam":
        from tfrec_xcat.training.optimizers import LazyAdam

        # its row-wise update (tf.unique, data-dependent segment sums) is not for XLA, which tf_keras turns on
        # by default when a GPU is present
        return LazyAdam(spec.learning_rate, jit_compile=False)
    return tf_keras.optimizers.Adam(spec.learning_rate)


def examples(space: FeatureSpace, frame: pd.DataFrame, with_ratings: bool) -> dict[str, np.ndarray]:
    """Training examples of ``frame``: model indices, each item's category as the target, log-Q probabilities."""
    items = space.item_index(frame["item_id"].to_numpy())
    counts = np.bincount(items, minlength=space.n_items + 1).astype(np.float64)
    out = {
        "user": space.user_index(frame["user_id"].to_numpy()),
        "item": items,
        "target_category": space.item_category[items],
        "sampling_probability": (counts[items] / max(len(items), 1)).astype(np.float32),
    }
    if with_ratings and "rating" in frame.columns:
        out["rating"] = frame["rating"].to_numpy(dtype=np.float32)
    return out


def dataset(features: dict[str, np.ndarray], batch_size: int, seed: int) -> tf.data.Dataset:
    n = len(features["user"])
    ds = tf.data.Dataset.from_tensor_slices(features)
    ds = ds.shuffle(min(n, 200_000), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size, drop_remainder=n >= 2 * batch_size).prefetch(tf.data.AUTOTUNE)


# ------------------------------------------------------------------------------------------------ callbacks
class Throughput(tf_keras.callbacks.Callback):
    """Logs examples/second per epoch (``examples_per_second`` in the epoch logs)."""

    def __init__(self, n_examples: int) -> None:
        super().__init__()
        self.n, self.start, self.rates = n_examples, 0.0, []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        rate = self.n / max(time.perf_counter() - self.start, 1e-9)
        self.rates.append(rate)
        if logs is not None:
            logs["examples_per_second"] = rate


class EpochTensorBoard(tf_keras.callbacks.TensorBoard):
    """TensorBoard's per-epoch logs without its per-batch work. Once any callback has a batch hook (:class:`NanGuard`
    does), tf-keras calls every callback's, and TensorBoard's ``on_train_batch_end`` then runs a summary op per log
    entry each batch even with ``update_freq="epoch"``, where no writer is set to record them: milliseconds a batch
    for nothing, and Keras warned "Callback method `on_train_batch_end` is slow compared to the batch time"."""

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        super().on_train_batch_end(batch, None if self.update_freq == "epoch" else logs)


class ValidationStopping(tf_keras.callbacks.Callback):
    """Early stopping on a validation callable (higher is better); restores the best weights at the end."""

    def __init__(self, validate: Callable[[XcatModel], float], patience: int, name: str = "val_cold_ndcg@10") -> None:
        super().__init__()
        self.validate, self.patience, self.name = validate, patience, name
        self.best, self.best_weights, self.wait, self.values = -np.inf, None, 0, []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = float(self.validate(self.model))
        self.values.append(value)
        if logs is not None:
            logs[self.name] = value
            logs["domain_accuracy"] = float(self.model.domain_accuracy.result())
        self.model.domain_accuracy.reset_state()
        log.info("epoch %d: %s %.4f", epoch + 1, self.name, value)
        if value > self.best:
            self.best, self.best_weights, self.wait = value, self.model.get_weights(), 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


# --------------------------------------------------------------------------------------------------- trainer
@dataclass
class TrainResult:
    model: XcatModel
    history: list[float]  # validation value per target-stage epoch
    examples_per_second: float
    train_seconds: float
    stages: dict[str, Any]
    space: FeatureSpace  # what the model was trained on (saved beside its weights for export)


def set_trainable(model: XcatModel, mode: str) -> None:
    """Freeze what the transfer mode keeps fixed in stage 2 (in every item tower of a tower ensemble)."""
    model.item_tower.trainable = mode != "frozen"
    for tower in model.item_towers:
        tower.trainable = mode != "frozen"
        if mode == "partial":
            top = {id(layer) for layer in tower.top_layers()}
            inputs = [tower.id_embedding, tower.category_embedding, tower.token_embedding, tower.vector_projection]
            for layer in [*(x for x in inputs if x is not None), *tower.hidden.layers]:
                layer.trainable = id(layer) in top
            tower.project.trainable = True


def train(
    space: FeatureSpace,
    train_frame: pd.DataFrame,
    model_spec: ModelSpec,
    spec: TrainSpec,
    *,
    validate: Callable[[XcatModel], float],
    workdir: str | Path,
    seed: int = 0,
    with_ratings: bool = False,
    callbacks: list[tf_keras.callbacks.Callback] | None = None,
    strategy: tf.distribute.Strategy | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train an :class:`XcatModel` on ``train_frame`` (training interactions) as ``spec.mode`` says
    (``progress``: a line per epoch on stderr, see :mod:`tfrec_xcat.training.progress`)."""
    from tfrec_xcat.training.progress import StageProgress, say

    workdir = Path(workdir)
    signature = json.dumps(
        {
            "model": dataclasses.asdict(model_spec),
            "training": dataclasses.asdict(spec),
            "seed": seed,
            "examples": len(train_frame),
            "users": space.n_users,
            "items": space.n_items,
            "vector_columns": space.vector_columns,
        },
        sort_keys=True,
    )
    marker = workdir / "signature.json"
    if marker.is_file() and marker.read_text() != signature:
        log.warning("%s holds a run of other settings or data: starting afresh", workdir)
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    marker.write_text(signature)
    tf_keras.utils.set_random_seed(seed)
    if spec.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = strategy or make_strategy(spec.strategy)
    with strategy.scope():
        model = XcatModel(space, model_spec, with_ratings=with_ratings)
    in_source = train_frame["category"] == space.source
    in_target = train_frame["category"] == space.target
    stages: list[tuple[str, pd.DataFrame, int, bool]] = []
    if spec.mode in ("frozen", "partial", "full"):
        if spec.source_epochs > 0:
            stages.append(("source", train_frame[in_source], spec.source_epochs, False))
        stages.append(("target", train_frame[in_target], spec.epochs, True))
    elif spec.mode == "joint":
        stages.append(("joint", train_frame[in_source | in_target], spec.epochs, True))
    else:
        stages.append(("target", train_frame[in_target], spec.epochs, True))

    # training interactions per model item: once trained, the items with none get the weights a new item gets
    # (XcatModel.settle_unseen_items). Not during training: changing those weights every epoch or stage perturbs
    # the whole run (the domain discriminator sees their vectors), while the validation NDCG is the same either way
    counts = np.bincount(space.item_index(train_frame["item_id"]), minlength=space.n_items + 1)
    started = time.perf_counter()
    history: list[float] = []
    rates: list[float] = []
    info: dict[str, Any] = {}
    for name, frame, epochs, watch in stages:
        if name == "target" and spec.mode in ("frozen", "partial"):
            set_trainable(model, spec.mode)
        done = workdir / "stages" / name
        if (done / "done.json").is_file():  # finished before a crash: reuse it, don't train it again
            if not model.built:
                with strategy.scope():
                    model.build_variables()
            model.load_weights(str(done / "weights")).expect_partial()  # weights only: no optimizer-state warnings
            info[name] = {**json.loads((done / "done.json").read_text()), "epochs_run": 0, "resumed": True}
            history = info[name].get("history", [])
            if info[name].get("examples_per_second"):
                rates.append(float(info[name]["examples_per_second"]))
            log.info("stage %s: already finished, weights restored from %s", name, done)
            if progress:
                say(f"[{name}] finished before: weights restored from {done}")
            continue
        with strategy.scope():
            model.compile(optimizer=make_optimizer(spec))
        feats = examples(space, frame, with_ratings)
        n = len(feats["user"])
        if not model.built:  # BackupAndRestore restores weights and optimizer state only into a built model
            with strategy.scope():
                model.build_variables()
        steps = max(n // spec.batch_size, 1)
        model.stage_steps.assign(float(max(epochs * steps, 1)))
        throughput = Throughput(n)
        stage_callbacks: list[tf_keras.callbacks.Callback] = [
            *(callbacks or []),
            throughput,
            tf_keras.callbacks.BackupAndRestore(str(workdir / "backup" / name)),
            tf_keras.callbacks.ModelCheckpoint(
                str(workdir / "checkpoints" / name / "epoch-{epoch:03d}"), save_weights_only=True
            ),
        ]
        stopper = ValidationStopping(validate, spec.patience) if watch else None
        if stopper is not None:
            stage_callbacks.append(stopper)
        stage_callbacks.append(EpochTensorBoard(str(workdir / "tensorboard" / name), write_graph=False))
        if progress:  # last: reads what Throughput and ValidationStopping put into the epoch logs
            stage_callbacks.append(StageProgress(name, epochs))
        nan_guard = NanGuard()  # first, so no later callback (checkpoint, early stopping) sees the NaN epoch
        stage_callbacks.insert(0, nan_guard)
        t0 = time.perf_counter()
        fitted = model.fit(
            dataset(feats, spec.batch_size, seed), epochs=epochs, callbacks=stage_callbacks, verbose=spec.verbose
        )
        nan_guard.check(name)
        info[name] = {
            "examples": n,
            "epochs_run": len(throughput.rates),
            "seconds": time.perf_counter() - t0,
            "examples_per_second": float(np.median(throughput.rates)) if throughput.rates else 0.0,
            "loss": [float(v) for v in fitted.history.get("loss", [])],  # per epoch, for the report's curves
        }
        rates.extend(throughput.rates)
        if stopper is not None:
            history = stopper.values
            info[name]["best_validation"] = stopper.best
            info[name]["history"] = history
        model.save_weights(str(done / "weights"))
        (done / "done.json").write_text(json.dumps(info[name]))
        log.info("stage %s: %s", name, info[name])
    model.settle_unseen_items(counts)
    return TrainResult(
        model=model,
        history=history,
        examples_per_second=float(np.median(rates)) if rates else 0.0,
        train_seconds=time.perf_counter() - started,
        stages=info,
        space=space,
    )
