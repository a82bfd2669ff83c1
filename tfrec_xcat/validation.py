"""Range checks for config values, each naming its key (``temperature must be > 0, got nan``).

The spec dataclasses call these in ``__post_init__``; :func:`tfrec_xcat.config.load_config` turns the
``ValueError`` into a :class:`~tfrec_xcat.errors.ConfigError` that also names the file and section. NaN and
infinity fail every check (``nan > 0`` is false), so they never reach training.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np

#: Upper bounds that keep a value within what one machine can allocate (values above them abort TensorFlow
#: or exhaust memory rather than fail cleanly).
MAX_WIDTH = 8192  # embedding, text and tower widths
MAX_BATCH = 16384
MAX_VOCAB = 10_000_000
MAX_SEQUENCE = 1000  # tokens per text, history items per category


def check_number(
    name: str,
    value: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    integer: bool = False,
) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a finite number (an int if ``integer``) within
    the given bounds."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool | np.bool_) or not isinstance(value, kind):
        raise ValueError(f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    bounds = [(ge, ">=", value >= (ge or 0)), (gt, ">", value > (gt or 0))]
    bounds += [(le, "<=", value <= (le or 0)), (lt, "<", value < (lt or 0))]
    wanted = [f"{op} {limit:g}" for limit, op, _ in bounds if limit is not None]
    if any(limit is not None and not ok for limit, _, ok in bounds):
        raise ValueError(f"{name} must be {' and '.join(wanted)}, got {value!r}")


def check_each(name: str, values: Iterable[Any], **bounds: Any) -> None:
    """:func:`check_number` on every element, named ``name[i]``."""
    for i, value in enumerate(values):
        check_number(f"{name}[{i}]", value, **bounds)


def check_choice(name: str, value: Any, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
