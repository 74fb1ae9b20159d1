"""Checked traits: a setting's every new value is checked, and a bad one refused with
:class:`~wcembed.core.errors.BadParameterError`, leaving the value as it was."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from traitlets import TraitType

from wcembed.core.errors import BadParameterError


def one_of(value, options: Sequence[str], what: str) -> str:
    """``value`` if it is one of ``options``, else :class:`BadParameterError` naming them."""
    if not isinstance(value, str) or value not in options:
        raise BadParameterError(f"unknown {what} {value!r}: one of {list(options)}")
    return value


def number(value, what: str) -> float:
    """``value`` as a finite float, else :class:`BadParameterError`."""
    if isinstance(value, bool):
        raise BadParameterError(f"{what} must be a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise BadParameterError(f"{what} must be a number, got {value!r}") from None
    if not np.isfinite(x):
        raise BadParameterError(f"{what} must be finite, got {value!r}")
    return x


def fraction(value, what: str) -> float:
    """``value`` as a float within 0..1, else :class:`BadParameterError`."""
    x = number(value, what)
    if not 0 <= x <= 1:
        raise BadParameterError(f"{what} must be within 0..1, got {value!r}")
    return x


def flag(value, what: str) -> bool:
    """``value`` if it is True or False, else :class:`BadParameterError`."""
    if not isinstance(value, bool | np.bool_):
        raise BadParameterError(f"{what} must be True or False, got {value!r}")
    return bool(value)


class Checked(TraitType):
    """A trait whose every new value passes ``check(value)``, which returns it (normalised) or raises
    :class:`~wcembed.core.errors.BadParameterError`; the value is left as it was."""

    def __init__(self, check: Callable[[Any], Any], default: Any, **kwargs) -> None:
        self.check = check
        super().__init__(default_value=default, **kwargs)

    def validate(self, obj, value):
        return self.check(value)
