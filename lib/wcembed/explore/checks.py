"""Checks of the explorer's inputs: a value is returned as the type the code uses, or
:class:`~wcembed.errors.BadParameterError` says what is wrong with it."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from wcembed.errors import BadParameterError

MAX_K = 10_000
"""The most results one search may ask for."""


def check_k(k: int) -> int:
    """``k`` if it is a number of results (an integer within 1..:data:`MAX_K`), else :class:`BadParameterError`."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= MAX_K:
        raise BadParameterError(f"k must be an integer within 1..{MAX_K}, got {k!r}")
    return int(k)


def check_point(lon: float, lat: float) -> tuple[float, float]:
    """``(lon, lat)`` as floats if they are a point in degrees (finite, within ±180 and ±90), else
    :class:`BadParameterError`."""
    try:
        x, y = float(lon), float(lat)
    except (TypeError, ValueError):
        raise BadParameterError(f"not a point in degrees: lon {lon!r}, lat {lat!r}") from None
    if not (math.isfinite(x) and math.isfinite(y) and -180 <= x <= 180 and -90 <= y <= 90):
        raise BadParameterError(f"not a point in degrees: lon {lon!r}, lat {lat!r} (lon within ±180, lat ±90)")
    return x, y


def check_bbox(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    """``(west, south, east, north)`` as floats if they are a box in degrees, else :class:`BadParameterError`
    (the values go into a SQL filter: only numbers pass)."""
    try:
        w, s, e, n = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise BadParameterError(f"not a bbox (west, south, east, north) in degrees: {bbox!r}") from None
    check_point(w, s)
    check_point(e, n)
    if w > e or s > n:
        raise BadParameterError(f"bbox {bbox!r}: west must not exceed east, nor south north")
    return w, s, e, n
