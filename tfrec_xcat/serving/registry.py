"""The models folder as TF Serving sees it: ``<root>/<name>/<version>/saved_model.pb``, polled for new versions.

Only integer-named version folders that hold a ``saved_model.pb`` count (a half-written export is a hidden
``.tmp-*`` or ``.staged-*`` folder and is never looked at). The highest loaded version serves by default. Names
and versions from requests are only ever looked up in this registry, never joined onto file paths.
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
    """Loaded servables by name and version; ``refresh`` follows the folder.

    - Only the newest ``max_versions`` loadable versions of each model stay loaded (default 1: TF Serving's
      latest-version policy); older ones are unloaded, with a log line.
    - A version that fails to load is logged once and shown by :meth:`status` (state ``END`` with the error);
      it is tried again only when its ``saved_model.pb`` changes. The newest version that loads serves.
    - If the models folder itself is missing or cannot be read (moved away, a network file system away), what
      is loaded keeps serving and one warning says so; a model folder removed from a readable root is unloaded,
      with a log line.
    """

    def __init__(self, root: str | Path, poll_seconds: float = 2.0, max_versions: int = 1) -> None:
        if max_versions < 1:
            raise ValueError(f"max_versions must be at least 1, got {max_versions}")
        self.root = Path(root)
        self.poll_seconds = poll_seconds
        self.max_versions = max_versions
        self._models: dict[str, dict[int, Servable]] = {}
        self._failed: dict[tuple[str, int], tuple[Any, str]] = {}  # (name, version) → (file stamp, error)
        self._root_missing = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refresh()

    def _scan(self) -> dict[str, dict[int, Path]] | None:
        """``{name: {version: path}}`` on disk, or None when the root cannot be read."""
        found: dict[str, dict[int, Path]] = {}
        try:
            if not self.root.is_dir():
                return None
            for model_dir in self.root.iterdir():
                if not model_dir.is_dir() or not NAME.match(model_dir.name):
                    continue
                found[model_dir.name] = {}
                for v in model_dir.iterdir():
                    if v.is_dir() and re.fullmatch(r"\d{1,18}", v.name) and (v / "saved_model.pb").is_file():
                        found[model_dir.name][int(v.name)] = v
        except OSError as exc:
            log.debug("cannot read %s: %s", self.root, exc)
            return None
        return found

    @staticmethod
    def _stamp(path: Path) -> Any:
        try:
            info = (path / "saved_model.pb").stat()
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size, info.st_ino)

    def refresh(self) -> None:
        found = self._scan()
        if found is None:
            if not self._root_missing:
                with self._lock:
                    n = sum(len(v) for v in self._models.values())
                log.warning("models folder %s is missing or unreadable; keeping the %d loaded versions", self.root, n)
                self._root_missing = True
            return
        if self._root_missing:
            log.info("models folder %s is back", self.root)
            self._root_missing = False
        for name, paths in found.items():
            wanted: list[int] = []
            for version in sorted(paths, reverse=True):  # newest first, until max_versions load
                if len(wanted) == self.max_versions:
                    break
                if version in self._models.get(name, {}):
                    wanted.append(version)
                    continue
                if self._load(name, version, paths[version]):
                    wanted.append(version)
            with self._lock:
                for version in [v for v in self._models.get(name, {}) if v not in wanted]:
                    del self._models[name][version]
                    log.info("unloaded %s version %s (%s)", name, version, "older" if version in paths else "removed")
        with self._lock:
            for name in list(self._models):
                if name not in found:
                    log.warning("unloaded %s: its folder was removed", name)
                    del self._models[name]
                elif not self._models[name]:
                    del self._models[name]
            for key in [k for k in self._failed if k[1] not in found.get(k[0], {})]:
                del self._failed[key]

    def _load(self, name: str, version: int, path: Path) -> bool:
        stamp = self._stamp(path)
        failed = self._failed.get((name, version))
        if failed is not None and failed[0] == stamp:
            return False  # failed before, unchanged since: not retried (nor logged) every poll
        try:
            servable = load_servable(name, version, path)
        except Exception as exc:  # a broken model must not take the server down
            message = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            log.error("cannot load %s version %s from %s: %s", name, version, path, message)
            with self._lock:
                self._failed[(name, version)] = (stamp, message)
            return False
        with self._lock:
            self._failed.pop((name, version), None)
            self._models.setdefault(name, {})[version] = servable
        log.info("serving %s version %s", name, version)
        return True

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

    def status(self, name: str, version: int | None = None) -> list[dict[str, Any]]:
        """TF Serving's ``model_version_status``: loaded versions AVAILABLE, versions that failed to load END."""
        ok = {"error_code": "OK", "error_message": ""}
        with self._lock:
            rows = {v: ("AVAILABLE", ok) for v in self._models.get(name, {})}
            for (n, v), (_, message) in self._failed.items():
                if n == name and v not in rows:
                    rows[v] = ("END", {"error_code": "UNKNOWN", "error_message": message})
        if version is not None:
            rows = {v: r for v, r in rows.items() if v == version}
        if not rows:
            what = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            raise NotFound(f"Servable not found for request: {what}")
        return [{"version": str(v), "state": s, "status": e} for v, (s, e) in sorted(rows.items(), reverse=True)]

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
