"""The models folder as TF Serving sees it: ``<root>/<name>/<version>/saved_model.pb``, polled for new versions.

Only integer-named version folders that hold a ``saved_model.pb`` count (a half-written export is a hidden
``.tmp-*`` or ``.staged-*`` folder and is never looked at). The highest loaded version serves by default. Names
and versions from requests are only ever looked up in this registry, never joined onto file paths.

``<root>/models.config`` (a text ``ModelServerConfig``, as ``tfrec-xcat export`` writes it and TF Serving's
``--model_config_file`` reads it), when present, is read at every poll for each listed model's
``model_version_policy`` (``latest``, ``all``, ``specific``) and ``version_labels`` (e.g. ``stable``, ``canary``);
``base_path`` is not used (the folder is ``<root>/<name>``).
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tensorflow as tf

from tfrec_xcat.export.loading import load_saved_model

log = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


class NotFound(LookupError):
    """Unknown model or version (HTTP 404, gRPC NOT_FOUND)."""


class BadRequest(ValueError):
    """A request the model cannot take (HTTP 400, gRPC INVALID_ARGUMENT)."""


DEFAULT_SIGNATURE = "serving_default"


@dataclass
class Servable:
    name: str
    version: int
    signature: Any  # the loaded ConcreteFunction of ``signature_name``
    inputs: dict[str, tf.TensorSpec]
    outputs: dict[str, tf.TensorSpec]
    loaded: Any  # keeps the SavedModel's resources alive
    signature_name: str = DEFAULT_SIGNATURE
    signature_defs: Any = None  # the SavedModel's ``signature_def`` map (protos), as TF Serving's metadata shows it
    views: dict[str, Servable] = field(default_factory=dict, repr=False)  # the other signatures, same model

    def for_signature(self, signature_name: str) -> Servable:
        """The same version seen through another signature (``""`` is ``serving_default``, as in TF Serving)."""
        name = signature_name or DEFAULT_SIGNATURE
        if name == self.signature_name:
            return self
        if name not in self.views:
            raise BadRequest(f'Serving signature name: "{name[:100]}" not found in signature def')
        return self.views[name]


def _signature_view(name: str, version: int, loaded: Any, key: str, defs: Any) -> Servable:
    fn = loaded.signatures[key]
    inputs = dict(fn.structured_input_signature[1])
    outputs = dict(fn.structured_outputs)
    return Servable(name, version, fn, inputs, outputs, loaded, key, defs)


def load_servable(name: str, version: int, path: Path) -> Servable:
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    defs = proto.meta_graphs[0].signature_def if proto.meta_graphs else {}
    loaded = load_saved_model(str(path))
    if DEFAULT_SIGNATURE not in loaded.signatures:
        raise ValueError(f"{path} has no {DEFAULT_SIGNATURE!r} signature")
    servable = _signature_view(name, version, loaded, DEFAULT_SIGNATURE, defs)
    for key in loaded.signatures:
        if key != DEFAULT_SIGNATURE:
            servable.views[key] = _signature_view(name, version, loaded, key, defs)
    return servable


@dataclass
class ModelPolicy:
    """One model's entry in ``models.config``: which versions to keep loaded, and its version labels."""

    kind: str = ""  # "" (the server's default), "latest", "all" or "specific"
    num_versions: int = 1
    versions: frozenset[int] = frozenset()
    labels: dict[str, int] = field(default_factory=dict)

    def pick(self, available: list[int], default_max: int) -> tuple[list[int], int | None]:
        """(versions to try, newest first; how many of them to load at most, None for all)."""
        newest_first = sorted(available, reverse=True)
        if self.kind == "all":
            return newest_first, None
        if self.kind == "specific":
            return [v for v in newest_first if v in self.versions], None
        if self.kind == "latest":
            return newest_first, max(1, self.num_versions)
        return newest_first, default_max


def read_models_config(path: Path) -> dict[str, ModelPolicy]:
    """``{model name: policy}`` from a text ``ModelServerConfig``; raises ValueError with one line if unreadable."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(path.read_text(), config)
    except (text_format.ParseError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a text ModelServerConfig: {str(exc).splitlines()[0][:200]}") from None
    policies: dict[str, ModelPolicy] = {}
    for model in config.model_config_list.config:
        policy = ModelPolicy(labels=dict(model.version_labels))
        which = model.model_version_policy.WhichOneof("policy_choice")
        if which == "latest":
            policy.kind, policy.num_versions = "latest", model.model_version_policy.latest.num_versions
        elif which == "all":
            policy.kind = "all"
        elif which == "specific":
            policy.kind, policy.versions = "specific", frozenset(model.model_version_policy.specific.versions)
        policies[model.name] = policy
    return policies


class Registry:
    """Loaded servables by name and version; ``refresh`` follows the folder.

    - Only the newest ``max_versions`` loadable versions of each model stay loaded (default 1: TF Serving's
      latest-version policy); older ones are unloaded, with a log line. A ``model_version_policy`` for the model
      in ``models.config`` takes precedence (``latest { num_versions }``, ``all``, ``specific { versions }``).
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
        self._policies: dict[str, ModelPolicy] = {}
        self._config_stamp: Any = None
        self._config_error = ""
        self._label_warnings: set[tuple[str, str, int]] = set()
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
        self._read_config()
        for name, paths in found.items():
            wanted: list[int] = []
            candidates, limit = self._policies.get(name, ModelPolicy()).pick(list(paths), self.max_versions)
            for version in candidates:  # newest first, until the policy's number load
                if limit is not None and len(wanted) == limit:
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
            loaded = {n: set(v) for n, v in self._models.items()}
        for name, policy in self._policies.items():  # TF Serving refuses a label on a version it has not loaded
            for label, version in policy.labels.items():
                key = (name, label, version)
                if version not in loaded.get(name, set()) and key not in self._label_warnings:
                    self._label_warnings.add(key)
                    log.warning(
                        "models.config: label %r of %s points at version %s, which is not loaded", label, name, version
                    )

    def _read_config(self) -> None:
        """Re-read ``models.config`` when it changed; a broken one is logged once and the last good one kept."""
        path = self.root / "models.config"
        try:
            info = path.stat()
            stamp: Any = (info.st_mtime_ns, info.st_size, info.st_ino)
        except OSError:
            stamp = None
        if stamp == self._config_stamp:
            return
        self._config_stamp = stamp
        if stamp is None:
            policies: dict[str, ModelPolicy] = {}
        else:
            try:
                policies = read_models_config(path)
            except (OSError, ValueError) as exc:
                if str(exc) != self._config_error:
                    log.error("%s; keeping the previous one", exc)
                    self._config_error = str(exc)
                return
        self._config_error = ""
        self._label_warnings.clear()
        with self._lock:
            self._policies = policies

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

    def status(self, name: str, version: int | None = None, label: str | None = None) -> list[dict[str, Any]]:
        """TF Serving's ``model_version_status``: loaded versions AVAILABLE, versions that failed to load END."""
        if label is not None:
            version = self.resolve_label(name, label)
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

    def labels(self, name: str) -> dict[str, int]:
        with self._lock:
            policy = self._policies.get(name)
            return dict(policy.labels) if policy else {}

    def resolve_label(self, name: str, label: str) -> int:
        """The version a label names (TF Serving: INVALID_ARGUMENT for a label it does not know)."""
        with self._lock:
            if name not in self._models:
                raise NotFound(f"Servable not found for request: Latest({name})")
            policy = self._policies.get(name)
            if policy is None or label not in policy.labels:
                raise BadRequest(f"Unrecognized servable version label: {label[:100]}")
            return policy.labels[label]

    def get(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        if label is not None:
            version = self.resolve_label(name, label)
        with self._lock:
            versions = self._models.get(name)
            if not versions:
                raise NotFound(f"Servable not found for request: Latest({name})")
            if version is None:
                return versions[max(versions)]
            if version not in versions:
                raise NotFound(f"Servable not found for request: Specific({name}, {version})")
            return versions[version]
