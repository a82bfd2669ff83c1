"""The one configuration object that drives the CLI and the Python API alike, loaded from TOML and validated.

A config file has one table per section (``[data]``, ``[synthetic]``, ``[split]``, ``[run]``, ``[model]``,
``[training]``, ``[ranker]``, ``[tune]``); every key is
optional and defaults to the field default below. Unknown sections or keys, wrong types and out-of-range values
are :class:`~tfrec_xcat.errors.ConfigError` naming the file, section and key.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfrec_xcat.data.load import FORMATS
from tfrec_xcat.data.split import SplitSpec
from tfrec_xcat.data.synthetic import SyntheticSpec
from tfrec_xcat.errors import ConfigError
from tfrec_xcat.models.ranking_spec import RankerSpec
from tfrec_xcat.models.spec import ModelSpec
from tfrec_xcat.training.spec import TrainSpec
from tfrec_xcat.tuning.spec import TuneSpec
from tfrec_xcat.validation import check_choice, check_each, check_number


@dataclass
class DataConfig:
    """Where the data is and how to read it. ``path`` unset means the synthetic embedded default."""

    path: str | None = None
    format: str = "auto"
    source: str | None = None
    target: str | None = None
    text_columns: list[str] | None = None
    vector_columns: list[str] = field(default_factory=list)  # list-of-float columns of items.parquet
    max_bad_fraction: float = 0.001

    def __post_init__(self) -> None:
        check_choice("format", self.format, FORMATS)
        if len(set(self.vector_columns)) != len(self.vector_columns):
            raise ValueError(f"vector_columns must be distinct, got {self.vector_columns}")
        for name in self.vector_columns:
            if not name.strip() or name in ("item_id", "category"):
                raise ValueError(f"vector_columns: {name!r} cannot be a vector column")
            if name in (self.text_columns or []):
                raise ValueError(f"vector_columns: {name!r} is also in text_columns")
        check_number("max_bad_fraction", self.max_bad_fraction, ge=0, le=1)
        if self.source is not None and self.source == self.target:
            raise ValueError(f"source and target must be different categories, got {self.source!r} for both")


@dataclass
class RunConfig:
    """What an end-to-end run does: which seeds (one split each)."""

    seeds: list[int] = field(default_factory=lambda: [0])

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("seeds must list at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")
        check_each("seeds", self.seeds, ge=0, lt=2**32, integer=True)


@dataclass
class Config:
    """All settings of tfrec-xcat."""

    data: DataConfig = field(default_factory=DataConfig)
    synthetic: SyntheticSpec = field(default_factory=SyntheticSpec)
    split: SplitSpec = field(default_factory=SplitSpec)
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelSpec = field(default_factory=ModelSpec)
    training: TrainSpec = field(default_factory=TrainSpec)
    ranker: RankerSpec = field(default_factory=RankerSpec)
    tune: TuneSpec = field(default_factory=TuneSpec)

    @property
    def source(self) -> str:
        """The source category: the configured one, or the synthetic shop's first category."""
        if self.data.source:
            return self.data.source
        if self.data.path is None:
            return self.synthetic.categories[0]
        raise ConfigError("no source category: pass --source or set [data] source")

    @property
    def target(self) -> str:
        """The target category: the configured one, or the synthetic shop's second category."""
        if self.data.target:
            return self.data.target
        if self.data.path is None:
            return self.synthetic.categories[1]
        raise ConfigError("no target category: pass --target or set [data] target")

    def __post_init__(self) -> None:
        defaults = tuple(self.synthetic.categories[:2]) if self.data.path is None else (None, None)
        source, target = self.data.source or defaults[0], self.data.target or defaults[1]
        if source is not None and source == target:
            raise ValueError(f"data: source and target must be different categories, got {source!r} for both")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        """The config as TOML that :func:`load_config` reads back to an equal config."""
        return dump_toml(self.to_dict())


# ------------------------------------------------------------------------------------------ conversion
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (converting lists to tuples, ints to floats)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: unexpected value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return _build(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        items = [_convert(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return {str(k): _convert(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, tp):
        return value
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(names)})")
    kwargs = {k: _convert(v, hints[k], f"{where}.{k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def config_from_dict(values: dict[str, Any], origin: str = "config") -> Config:
    """Build and validate a :class:`Config` from nested dicts (sections → keys)."""
    return _build(Config, values, origin)


def load_config(path: str | Path | None = None, overrides: dict[str, dict[str, Any]] | None = None) -> Config:
    """Load ``path`` (TOML; None = all defaults) and apply ``overrides`` (section → key → value, None skipped)."""
    values: dict[str, Any] = {}
    origin = "config"
    if path is not None:
        path = Path(path)
        origin = str(path)
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read: {exc}") from None
    for section, keys in (overrides or {}).items():
        for key, value in keys.items():
            if value is not None:
                values.setdefault(section, {})[key] = value
    return config_from_dict(values, origin)


# ----------------------------------------------------------------------------------------------- TOML out
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def dump_toml(sections: dict[str, dict[str, Any]]) -> str:
    """Write a two-level dict as TOML tables; None values are left out (TOML has no null)."""
    out = []
    for section, keys in sections.items():
        out.append(f"[{section}]")
        out.extend(f"{k} = {_toml_value(v)}" for k, v in keys.items() if v is not None)
        out.append("")
    return "\n".join(out)
