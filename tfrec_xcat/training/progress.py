"""What ``tfrec-xcat train`` shows while it trains: a line when a stage starts and one per epoch.

``StageProgress`` is a Keras callback the trainer appends LAST to a stage's callbacks, so the epoch logs it reads
already hold ``examples_per_second`` (``Throughput``) and the validation metric (``ValidationStopping``). Each
epoch ends with a line such as::

    [target] epoch 3/12: loss 4.1021, 18,450 examples/s, cold-start val NDCG@10 0.0912 (best 0.0930), 6.1 s

written to stderr (stdout keeps the command's result). No per-batch bar on purpose: a batch hook makes Keras
turn every batch's logs into numbers (a sync per step) and warn that the callback is slow.
"""

from __future__ import annotations

import sys
import time
from typing import IO

import tf_keras
from tqdm.auto import tqdm

VALIDATION_KEY = "val_cold_ndcg@10"  # what ValidationStopping logs (and TensorBoard shows)
VALIDATION_LABEL = "cold-start val NDCG@10"


def say(text: str, stream: IO[str] | None = None) -> None:
    """One progress line (through tqdm, so a bar that is open, such as ``run``'s, is not torn)."""
    tqdm.write(text, file=stream or sys.stderr)


class StageProgress(tf_keras.callbacks.Callback):
    """Per-epoch lines: loss, examples/s, the validation metric and its best so far, seconds."""

    def __init__(self, stage: str, epochs: int, stream: IO[str] | None = None) -> None:
        super().__init__()
        self.stage, self.epochs, self.stream = stage, epochs, stream
        self.best: float | None = None
        self.lines: list[str] = []
        self._start = 0.0

    def on_train_begin(self, logs: dict | None = None) -> None:
        steps = (getattr(self, "params", None) or {}).get("steps")
        say(f"[{self.stage}] up to {self.epochs} epoch(s) of {steps or '?'} batches", self.stream)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        parts = [f"[{self.stage}] epoch {epoch + 1}/{self.epochs}:"]
        if "loss" in logs:
            parts.append(f"loss {float(logs['loss']):.4f},")
        if "examples_per_second" in logs:
            parts.append(f"{float(logs['examples_per_second']):,.0f} examples/s,")
        if VALIDATION_KEY in logs:
            value = float(logs[VALIDATION_KEY])
            self.best = value if self.best is None else max(self.best, value)
            parts.append(f"{VALIDATION_LABEL} {value:.4f} (best {self.best:.4f}),")
        parts.append(f"{time.perf_counter() - self._start:.1f} s")
        line = " ".join(parts)
        self.lines.append(line)
        say(line, self.stream)
