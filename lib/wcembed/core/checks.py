"""Checks of the explorer's inputs: a value is returned as the type the code uses, or
:class:`~wcembed.core.errors.BadParameterError` says what is wrong with it."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from wcembed.core.errors import BadParameterError

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


NORM_RANGE = (1e-18, 1e18)
"""Lengths an embedding may have: its square is a normal float32 (LanceDB's cosine distance squares it), so
that it has a direction. An all-zero or a 3e38 vector has none."""


def check_vector(vector, dim: int) -> np.ndarray:
    """``vector`` as a float32 ``(dim,)`` array if it is one query vector of ``dim`` finite numbers with a
    direction (:data:`NORM_RANGE`), else :class:`BadParameterError`."""
    try:
        v = np.asarray(vector, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadParameterError(f"the query vector is not numbers: {type(vector).__name__}") from None
    if v.shape != (dim,):
        raise BadParameterError(f"the query vector has shape {v.shape}; the index holds {dim}-d vectors: give ({dim},)")
    if not np.isfinite(v).all():
        raise BadParameterError("the query vector is not finite (NaN or inf)")
    norm = float(np.linalg.norm(v))
    if not NORM_RANGE[0] < norm < NORM_RANGE[1]:
        raise BadParameterError(f"the query vector has length {norm:.3g}: it has no direction to search along")
    return v.astype(np.float32)


def check_spacing(diverse, when_true: int) -> int:
    """Chips between spread-out results: ``diverse`` as a whole number of at least 0 (True: ``when_true``,
    False: 0), else :class:`BadParameterError`."""
    if isinstance(diverse, bool | np.bool_):
        return when_true if diverse else 0
    if not isinstance(diverse, int | np.integer) or diverse < 0:
        raise BadParameterError(f"diverse must be a whole number of chips (0: off) or True/False, got {diverse!r}")
    return int(diverse)


def check_chip_ids(chip_ids) -> list[str]:
    """``chip_ids`` as a list of strings, else :class:`BadParameterError` (a chip id is ``{year}-{column}-{row}``)."""
    if isinstance(chip_ids, str) or not isinstance(chip_ids, Sequence | np.ndarray):
        raise BadParameterError(f"give a list of chip ids, not {chip_ids!r}")
    bad = [c for c in chip_ids if not isinstance(c, str | np.str_)]
    if bad:
        raise BadParameterError(f"chip ids are strings like 2020-1156-0288, not {bad[0]!r}")
    return [str(c) for c in chip_ids]
