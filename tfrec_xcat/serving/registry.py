"""The models folder as TF Serving sees it: ``<root>/<name>/<version>/saved_model.pb``, polled for new versions.

Only integer-named version folders that hold a ``saved_model.pb`` count (a half-written export is a hidden
``.tmp-*`` folder and is never looked at). The highest version serves by default. Names and versions from
requests are only ever looked up in this registry, never joined onto file paths.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tensorflow as tf

log = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


class NotFound(LookupError):
    """Unknown model or version (HTTP 404, gRPC NOT_FOUND)."""


class BadRequest(ValueError):
    """A request the model cannot take (HTTP 400, gRPC INVALID_ARGUMENT)."""


@dataclass
class Servable:
    name: str
    version: int
    signature: Any  # the loaded ``serving_default`` ConcreteFunction
    inputs: dict[str, tf.TensorSpec]
    outputs: dict[str, tf.TensorSpec]
    loaded: Any  # keeps the SavedModel's resources alive


def load_servable(name: str, version: int, path: Path) -> Servable:
    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures["serving_default"]  # the API serves serving_default only
    inputs = dict(signature.structured_input_signature[1])
    outputs = dict(signature.structured_outputs)
    return Servable(name, version, signature, inputs, outputs, loaded)


class Registry:
    """Loaded servables by name and version; ``refresh`` picks up versions that appeared or vanished."""

    def __init__(self, root: str | Path, poll_seconds: float = 2.0) -> None:
        self.root = Path(root)
        self.poll_seconds = poll_seconds
        self._models: dict[str, dict[int, Servable]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refresh()

    def refresh(self) -> None:
        found: dict[str, dict[int, Path]] = {}
        if self.root.is_dir():
            for model_dir in self.root.iterdir():
                if not model_dir.is_dir() or not NAME.match(model_dir.name):
                    continue
                for v in model_dir.iterdir():
                    if v.is_dir() and re.fullmatch(r"\d{1,18}", v.name) and (v / "saved_model.pb").is_file():
                        found.setdefault(model_dir.name, {})[int(v.name)] = v
        for name, paths in found.items():
            for version, path in paths.items():
                if version not in self._models.get(name, {}):
                    try:
                        servable = load_servable(name, version, path)
                    except Exception as exc:  # a broken model must not take the server down
                        log.error("cannot load %s version %s from %s: %s", name, version, path, exc)
                        continue
                    with self._lock:
                        self._models.setdefault(name, {})[version] = servable
                    log.info("serving %s version %s", name, version)
        with self._lock:
            for name in list(self._models):
                for version in list(self._models[name]):
                    if version not in found.get(name, {}):
                        del self._models[name][version]
                if not self._models[name]:
                    del self._models[name]

    def start(self) -> None:
        """Poll the folder in a background thread until :meth:`stop`."""

        def loop() -> None:
            while not self._stop.wait(self.poll_seconds):
                try:
                    self.refresh()
                except Exception as exc:
                    log.error("refresh failed: %s", exc)

        self._thread = threading.Thread(target=loop, name="model-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._models)

    def versions(self, name: str) -> list[int]:
        with self._lock:
            if name not in self._models:
                raise NotFound(f"Servable not found for request: Latest({name})")
            return sorted(self._models[name])

    def get(self, name: str, version: int | None = None) -> Servable:
        with self._lock:
            versions = self._models.get(name)
            if not versions:
                raise NotFound(f"Servable not found for request: Latest({name})")
            if version is None:
                return versions[max(versions)]
            if version not in versions:
                raise NotFound(f"Servable not found for request: Specific({name}, {version})")
            return versions[version]
