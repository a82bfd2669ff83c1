"""What ``tfrec-xcat train`` shows while it trains: one line per epoch of each stage, and a bar within the epoch.

``StageProgress`` is a Keras callback the trainer appends LAST to a stage's callbacks, so the epoch logs it reads
already hold ``examples_per_second`` (``Throughput``) and the validation metric (``ValidationStopping``). Each
epoch ends with a line such as::

    [target] epoch 3/12: loss 4.1021, 18,450 examples/s, val_cold_ndcg@10 0.0912 (best 0.0930), 6.1 s

written to stderr (stdout keeps the command's result). The per-batch bar shows only on a terminal (tqdm hides
itself otherwise), so logs and CI get the epoch lines alone.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

import tf_keras
from tqdm.auto import tqdm

VALIDATION_KEY = "val_cold_ndcg@10"


def say(text: str, stream: IO[str] | None = None) -> None:
    """One progress line (through tqdm, so an open bar is not torn)."""
    tqdm.write(text, file=stream or sys.stderr)


class StageProgress(tf_keras.callbacks.Callback):
    """Per-epoch lines (loss, examples/s, validation metric and its best so far) and a per-batch bar."""

    def __init__(self, stage: str, epochs: int, stream: IO[str] | None = None) -> None:
        super().__init__()
        self._supports_tf_logs = True  # the bar needs no batch logs: Keras skips converting them each batch
        self.stage, self.epochs, self.stream = stage, epochs, stream
        self.best: float | None = None
        self.lines: list[str] = []
        self._bar: Any = None
        self._start = 0.0

    def on_train_begin(self, logs: dict | None = None) -> None:
        steps = (getattr(self, "params", None) or {}).get("steps")
        say(f"[{self.stage}] up to {self.epochs} epoch(s) of {steps or '?'} batches", self.stream)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()
        steps = (getattr(self, "params", None) or {}).get("steps")
        self._bar = tqdm(
            total=steps,
            desc=f"[{self.stage}] epoch {epoch + 1}/{self.epochs}",
            unit="batch",
            leave=False,
            disable=None,  # only on a terminal
            file=self.stream or sys.stderr,
        )

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        logs = logs or {}
        parts = [f"[{self.stage}] epoch {epoch + 1}/{self.epochs}:"]
        if "loss" in logs:
            parts.append(f"loss {float(logs['loss']):.4f},")
        if "examples_per_second" in logs:
            parts.append(f"{float(logs['examples_per_second']):,.0f} examples/s,")
        if VALIDATION_KEY in logs:
            value = float(logs[VALIDATION_KEY])
            self.best = value if self.best is None else max(self.best, value)
            parts.append(f"{VALIDATION_KEY} {value:.4f} (best {self.best:.4f}),")
        parts.append(f"{time.perf_counter() - self._start:.1f} s")
        line = " ".join(parts)
        self.lines.append(line)
        say(line, self.stream)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
