"""The chip grid: 512 x 512 px chips over WorldCover tiles, cut into columns.

All geometry is integer arithmetic in the *global pixel space* of the
WorldCover S2 RGBNIR composites: EPSG:4326, pixel size exactly 1/12000 degree,
pixel ``(0, 0)`` at the north-west corner of the world (lon -180, lat 90), x
growing east and y growing south. Degrees appear only at the edge (footprints,
centres), so no chip edge is ever off by a rounding error.

Tiles are 1 x 1 degree (12000 x 12000 px) named after their south-west corner
(``N49W125`` covers lat 49..50, lon -125..-124). Chips start at the grid origin
(by default lon -125, lat 50, the north-west corner of the contiguous US):
column ``c`` covers lon ``[-125 + c*512/12000, -125 + (c+1)*512/12000]`` and row
``r`` counts chips southward from lat 50. 12000 is not a multiple of 512, so a
chip touches 1, 2 or 4 tiles.

The extent of the grid is never a constant: it is derived from a set of
existing tiles. A column is a column only if one of its chips touches an
existing tile, and the chips of a column are the chips that do.

Examples
--------
>>> g = Grid(["N44W067", "N24W082"])
>>> c, r = g.chip_at(-66.95, 44.82)
>>> (c, r) in g
True
>>> [p.tile for p in g.chip_pieces(c, r)]
['N44W067']
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from wcembed.core.errors import BadColumnError, BadInputError, BadParameterError, EmptyTileSetError
from wcembed.core.product import CRS, PX_PER_DEGREE, TILE_PX, Tile, as_tile, check_year

if TYPE_CHECKING:
    from rasterio.windows import Window

CHIP_PX = 512
"""Default chip size in pixels."""
CONUS_ORIGIN = (-125, 50)
"""North-west corner (lon, lat) of the default grid, in degrees."""
REGIONS: dict[str, tuple[float, float, float, float]] = {
    # west, south, east, north in degrees (EPSG:4326); tiles whose south-west
    # corner lies inside [west, east) x [south, north) belong to the region.
    "CONUS": (-125.0, 24.0, -66.0, 50.0),
}


def chip_id(year: int, column: int, row: int) -> str:
    """Stable identifier of a chip of a year: ``{year}-{column:04d}-{row:04d}``.

    >>> chip_id(2020, 12, 345)
    '2020-0012-0345'
    """
    return f"{year}-{column:04d}-{row:04d}"


def chip_ids(year: int, columns: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """:func:`chip_id` of many chips of a year at once (numpy's string functions: no Python loop).

    >>> chip_ids(2020, np.array([12, 1383]), np.array([345, 7]))
    array(['2020-0012-0345', '2020-1383-0007'], dtype='<U14')
    """
    column, row = (np.strings.zfill(np.asarray(v).astype(str), 4) for v in (columns, rows))
    return np.strings.add(np.strings.add(np.strings.add(f"{year}-", column), "-"), row)


_CHIP_ID = re.compile(r"(?P<year>[0-9]{1,9})-(?P<column>[0-9]{1,9})-(?P<row>[0-9]{1,9})")
"""A chip id: year, column and row, decimal digits (at most 9 each) joined by hyphens."""


def parse_chip_id(chip: str) -> tuple[int, int, int]:
    """``(year, column, row)`` of a chip id.

    >>> parse_chip_id("2020-0012-0345")
    (2020, 12, 345)
    """
    match = _CHIP_ID.fullmatch(chip) if isinstance(chip, str) else None
    if match is None:
        raise BadParameterError(f"not a chip id: {chip!r} (expected e.g. 2020-0012-0345)")
    year, column, row = (int(p) for p in match.groups())
    return year, column, row


def parse_chip_ids(chips) -> np.ndarray:
    """``(N, 3)`` int64 years, columns and rows of many chip ids at once (:func:`parse_chip_id` without a
    Python loop); :class:`BadParameterError` naming the first that is not a chip id.

    >>> parse_chip_ids(["2020-0012-0345", "2021-1383-0007"]).tolist()
    [[2020, 12, 345], [2021, 1383, 7]]
    """
    import pyarrow as pa  # deferred: the grid's arithmetic needs no Arrow
    import pyarrow.compute as pc

    chips = chips if isinstance(chips, pa.Array) else list(chips)
    try:
        text = pa.array(chips, pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # not all strings: name the first that is not a chip id
        for chip in chips:
            parse_chip_id(chip)
        raise
    parts = pc.extract_regex(text, f"^{_CHIP_ID.pattern}$")
    if parts.null_count:
        bad = text[int(np.argmax(parts.is_null().to_numpy(zero_copy_only=False)))].as_py()
        raise BadParameterError(f"not a chip id: {bad!r} (expected e.g. 2020-0012-0345)")
    if not len(text):
        return np.zeros((0, 3), np.int64)
    return np.column_stack([pc.cast(parts.field(k), pa.int64()).to_numpy() for k in ("year", "column", "row")])


# --------------------------------------------------------------------------- chips


@dataclass(frozen=True)
class TilePiece:
    """The part of a chip that lies on one tile.

    Attributes
    ----------
    tile : str
        Tile name.
    window : rasterio.windows.Window
        Pixel window inside the tile (integer offsets, tile pixel space).
    chip_window : rasterio.windows.Window
        Where that block lands inside the chip (integer offsets).
    exists : bool
        Whether the tile is in the grid's tile set; pieces on missing tiles are nodata.
    """

    tile: str
    window: Window
    chip_window: Window
    exists: bool


def check_band_width(width: int) -> int:
    """``width`` if it is a band width (an integer of at least 1), else :class:`BadParameterError`."""
    if isinstance(width, bool) or not isinstance(width, int | np.integer) or width < 1:
        raise BadParameterError(f"band width must be an integer of at least 1, got {width!r}")
    return int(width)


def bands_holding(columns, width: int = 1) -> np.ndarray:
    """The first columns of the bands of ``width`` adjacent columns that hold ``columns`` (each once, west to
    east), aligned on multiples of ``width`` as :meth:`Grid.band_starts` aligns them.

    >>> bands_holding([1353, 1359, 1360], 8).tolist()
    [1352, 1360]
    """
    width = check_band_width(width)
    return np.unique(np.asarray(columns, np.int64) // width * width)


def chip_at(
    lon: float, lat: float, chip_size: int = CHIP_PX, origin: tuple[float, float] = CONUS_ORIGIN
) -> tuple[int, int]:
    """``(column, row)`` of the chip of a grid (``chip_size`` px from ``origin``) that holds a point
    (degrees), by arithmetic alone: a chip holds its west and north edges.

    >>> chip_at(-124.99, 49.99)
    (0, 0)
    """
    ox, oy = _origin_px(origin)
    gx = math.floor((lon + 180) * PX_PER_DEGREE) - ox
    gy = math.floor((90 - lat) * PX_PER_DEGREE) - oy
    return gx // chip_size, gy // chip_size


def chip_bounds(
    column: int, row: int, chip_size: int = CHIP_PX, origin: tuple[float, float] = CONUS_ORIGIN
) -> tuple[float, float, float, float]:
    """``(west, south, east, north)`` in degrees of chip ``(column, row)`` of a grid, by arithmetic alone."""
    ox, oy = _origin_px(origin)
    gx, gy = ox + column * chip_size, oy + row * chip_size
    return (
        gx / PX_PER_DEGREE - 180,
        90 - (gy + chip_size) / PX_PER_DEGREE,
        (gx + chip_size) / PX_PER_DEGREE - 180,
        90 - gy / PX_PER_DEGREE,
    )


def _origin_px(origin: tuple[float, float]) -> tuple[int, int]:
    lon, lat = (Fraction(str(v)) for v in origin)
    gx, gy = (lon + 180) * PX_PER_DEGREE, (90 - lat) * PX_PER_DEGREE
    if gx.denominator != 1 or gy.denominator != 1:
        raise BadParameterError(f"grid origin {origin} is not on the 1/12000 degree pixel lattice")
    return int(gx), int(gy)


class Grid:
    """Chips of ``chip_size`` px laid from ``origin`` over a set of existing tiles.

    Parameters
    ----------
    tiles : iterable of str or Tile
        The tiles that exist (see :mod:`wcembed.core.tileset` for where this comes
        from). Must not be empty, and every tile must lie east and south of
        ``origin``.
    chip_size : int
        Chip width and height in pixels (default 512).
    origin : (lon, lat)
        North-west corner of chip (0, 0) in degrees, on the pixel lattice.

    Notes
    -----
    ``columns`` are grid column numbers, counted from the origin: column 12 is
    the same strip of the Earth for every tile set and year. The AWS Batch
    array index is the *position* in ``columns``.
    """

    def __init__(
        self,
        tiles: Iterable[Tile | str],
        chip_size: int = CHIP_PX,
        origin: tuple[float, float] = CONUS_ORIGIN,
    ) -> None:
        self.tiles: frozenset[Tile] = frozenset(as_tile(t) for t in tiles)
        if not self.tiles:
            raise EmptyTileSetError("the tile set is empty: no tile to plan chips over")
        if int(chip_size) != chip_size or chip_size <= 0:
            raise BadParameterError(f"chip size must be a positive integer, got {chip_size!r}")
        self.chip_size = int(chip_size)
        self.origin = origin
        self.ox, self.oy = _origin_px(origin)
        self._tile_index = {t.index for t in self.tiles}

        cs = self.chip_size
        spans = []
        for t in sorted(self.tiles):
            tx, ty = t.index
            x0, y0 = tx * TILE_PX - self.ox, ty * TILE_PX - self.oy
            if x0 < 0 or y0 < 0:
                raise BadInputError(f"tile {t.name} lies west or north of the grid origin {origin}")
            spans.append((x0 // cs, (x0 + TILE_PX - 1) // cs, y0 // cs, (y0 + TILE_PX - 1) // cs))
        spans_a = np.array(spans, dtype=np.int64)
        occupied = np.zeros((spans_a[:, 1].max() + 1, spans_a[:, 3].max() + 1), dtype=bool)
        for c0, c1, r0, r1 in spans:
            occupied[c0 : c1 + 1, r0 : r1 + 1] = True
        self._occupied = occupied
        self.columns: np.ndarray = np.flatnonzero(occupied.any(axis=1))
        """Sorted grid column numbers that hold at least one chip."""

    # ------------------------------------------------------------------ queries
    def __repr__(self) -> str:
        return (
            f"Grid({len(self.tiles)} tiles, {len(self.columns)} columns, {self.n_chips} chips, "
            f"chip_size={self.chip_size}, origin={self.origin})"
        )

    def __contains__(self, chip: tuple[int, int]) -> bool:
        c, r = chip
        occ = self._occupied
        return 0 <= c < occ.shape[0] and 0 <= r < occ.shape[1] and bool(occ[c, r])

    @property
    def n_chips(self) -> int:
        """Number of chips in the grid."""
        return int(self._occupied.sum())

    def check_column(self, column: int) -> int:
        """Return ``column`` if it is a column of the grid, else raise :class:`BadColumnError`."""
        if isinstance(column, bool) or int(column) != column:
            raise BadColumnError(f"column must be an integer, got {column!r}")
        column = int(column)
        if not (0 <= column < self._occupied.shape[0]) or not self._occupied[column].any():
            raise BadColumnError(
                f"column {column} is not a column of this grid "
                f"({len(self.columns)} columns from {self.columns[0]} to {self.columns[-1]})"
            )
        return column

    def band_starts(self, width: int = 1) -> np.ndarray:
        """First column numbers of the grid's bands of ``width`` adjacent columns.

        Bands are aligned on multiples of ``width`` (band ``b`` holds columns
        ``b*width .. b*width + width - 1``), so a band is the same strip of the Earth
        for every tile set; only bands that hold a column of this grid are listed.
        The AWS Batch array index of a band job is the position in this list; with
        ``width`` 1 the bands are the columns.

        >>> Grid(["N44W067"]).band_starts(8)[:2].tolist()
        [1352, 1360]
        """
        return bands_holding(self.columns, width)

    def band(self, column: int, width: int = 1) -> list[int]:
        """The grid's columns among ``column .. column + width - 1`` (west to east).

        Raises :class:`BadColumnError` if none is a column of the grid.
        """
        width = check_band_width(width)
        if width == 1:
            return [self.check_column(column)]
        if isinstance(column, bool) or int(column) != column:
            raise BadColumnError(f"column must be an integer, got {column!r}")
        picked = [int(c) for c in self.columns if column <= c < column + width]
        if not picked:
            raise BadColumnError(
                f"columns {column}..{column + width - 1} hold no column of this grid "
                f"({len(self.columns)} columns from {self.columns[0]} to {self.columns[-1]})"
            )
        return picked

    def band_at_index(self, index: int, width: int = 1) -> int:
        """First column of the band of array index ``index`` (its position in :meth:`band_starts`)."""
        starts = self.band_starts(width)
        if isinstance(index, bool) or int(index) != index or not 0 <= int(index) < len(starts):
            raise BadColumnError(f"array index {index!r} is outside 0..{len(starts) - 1}")
        return int(starts[int(index)])

    def rows(self, column: int) -> np.ndarray:
        """Sorted row numbers of the chips of ``column``."""
        return np.flatnonzero(self._occupied[self.check_column(column)])

    def chips(self, column: int | None = None) -> Iterator[tuple[int, int]]:
        """``(column, row)`` of every chip, column by column, rows north to south."""
        for c in self.columns if column is None else [column]:
            for r in self.rows(int(c)):
                yield int(c), int(r)

    def chip_at(self, lon: float, lat: float) -> tuple[int, int]:
        """``(column, row)`` of the chip holding the point (degrees, EPSG:4326).

        The chip may or may not be in the grid; test with ``in``.
        """
        return chip_at(lon, lat, self.chip_size, self.origin)

    # ------------------------------------------------------------------ geometry
    def chip_offsets(self, column: int, row: int) -> tuple[int, int]:
        """Global pixel offsets ``(x, y)`` of the chip's north-west corner."""
        return self.ox + column * self.chip_size, self.oy + row * self.chip_size

    def chip_bounds(self, column: int, row: int) -> tuple[float, float, float, float]:
        """``(west, south, east, north)`` of the chip in degrees (EPSG:4326)."""
        return chip_bounds(column, row, self.chip_size, self.origin)

    def chip_center(self, column: int, row: int) -> tuple[float, float]:
        """``(lon, lat)`` of the chip centre in degrees (EPSG:4326)."""
        gx, gy = self.chip_offsets(column, row)
        half = self.chip_size / 2
        return (gx + half) / PX_PER_DEGREE - 180, 90 - (gy + half) / PX_PER_DEGREE

    def chip_polygon(self, column: int, row: int):
        """Footprint of the chip as a shapely Polygon (counter-clockwise, EPSG:4326)."""
        import shapely  # deferred: only for footprints

        return shapely.box(*self.chip_bounds(column, row))

    def chip_pieces(self, column: int, row: int) -> list[TilePiece]:
        """The tiles a chip touches, with the pixel window inside each.

        Returns 1, 2 or 4 pieces, north-west first, row-major; together their
        ``chip_window``s tile the chip exactly. Pieces on tiles outside the
        tile set have ``exists=False`` (read them as nodata).
        """
        from rasterio.windows import Window  # here: the command line answers bad arguments without rasterio

        gx, gy = self.chip_offsets(column, row)
        cs = self.chip_size
        pieces = []
        for ty in range(gy // TILE_PX, (gy + cs - 1) // TILE_PX + 1):
            y0, y1 = max(gy, ty * TILE_PX), min(gy + cs, (ty + 1) * TILE_PX)
            for tx in range(gx // TILE_PX, (gx + cs - 1) // TILE_PX + 1):
                x0, x1 = max(gx, tx * TILE_PX), min(gx + cs, (tx + 1) * TILE_PX)
                pieces.append(
                    TilePiece(
                        tile=Tile.from_index(tx, ty).name,
                        window=Window(x0 - tx * TILE_PX, y0 - ty * TILE_PX, x1 - x0, y1 - y0),
                        chip_window=Window(x0 - gx, y0 - gy, x1 - x0, y1 - y0),
                        exists=(tx, ty) in self._tile_index,
                    )
                )
        return pieces

    def tiles_geodataframe(self):
        """The tile set as a GeoDataFrame (``tile``, ``geometry``) in EPSG:4326."""
        import geopandas as gpd  # deferred: heavy, and the command line checks first
        import shapely

        tiles = sorted(self.tiles)
        b = np.array([t.bounds for t in tiles], dtype=float).reshape(-1, 4)
        return gpd.GeoDataFrame({"tile": [t.name for t in tiles]}, geometry=shapely.box(*b.T), crs=CRS)

    def columns_geodataframe(self):
        """One strip per column (``column``, ``index`` in the array, ``chips``, ``geometry``), EPSG:4326."""
        import geopandas as gpd  # deferred: heavy, and the command line checks first
        import shapely

        occ = self._occupied[self.columns]
        first = occ.argmax(axis=1)
        last = occ.shape[1] - 1 - occ[:, ::-1].argmax(axis=1)
        west = [self.chip_bounds(int(c), 0)[0] for c in self.columns]
        east = [self.chip_bounds(int(c), 0)[2] for c in self.columns]
        north = [self.chip_bounds(0, int(r))[3] for r in first]
        south = [self.chip_bounds(0, int(r))[1] for r in last]
        return gpd.GeoDataFrame(
            {"column": self.columns, "index": np.arange(len(self.columns)), "chips": occ.sum(axis=1)},
            geometry=shapely.box(west, south, east, north),
            crs=CRS,
        )

    def to_geodataframe(self, year: int, column: int | None = None):
        """Chips (of one column, or all) as a GeoDataFrame in EPSG:4326.

        Columns: ``chip_id``, ``year``, ``column``, ``row``, ``lon``, ``lat``
        (centre, degrees), ``n_tiles`` (tiles touched that exist), ``geometry``.
        """
        import geopandas as gpd  # deferred: heavy, and the command line checks first
        import shapely

        cols = self.columns if column is None else np.array([self.check_column(column)])
        occ = self._occupied[cols]
        ci, ri = np.nonzero(occ)
        c = cols[ci].astype(np.int64)
        r = ri.astype(np.int64)
        cs = self.chip_size
        gx = self.ox + c * cs
        gy = self.oy + r * cs
        west, east = gx / PX_PER_DEGREE - 180, (gx + cs) / PX_PER_DEGREE - 180
        north, south = 90 - gy / PX_PER_DEGREE, 90 - (gy + cs) / PX_PER_DEGREE
        tile_keys = np.array([tx * 1000 + ty for tx, ty in self._tile_index])
        tx0, tx1 = gx // TILE_PX, (gx + cs - 1) // TILE_PX
        ty0, ty1 = gy // TILE_PX, (gy + cs - 1) // TILE_PX
        n_tiles = np.zeros(len(c), dtype=np.int8)
        for tx, x_new in ((tx0, True), (tx1, tx1 != tx0)):
            for ty, y_new in ((ty0, True), (ty1, ty1 != ty0)):
                n_tiles += x_new & y_new & np.isin(tx * 1000 + ty, tile_keys)
        year = check_year(year)
        return gpd.GeoDataFrame(
            {
                "chip_id": [chip_id(year, a, b) for a, b in zip(c.tolist(), r.tolist(), strict=True)],
                "year": np.full(len(c), year, dtype=np.int16),
                "column": c.astype(np.int32),
                "row": r.astype(np.int32),
                "lon": (west + east) / 2,
                "lat": (north + south) / 2,
                "n_tiles": n_tiles,
            },
            geometry=shapely.box(west, south, east, north),
            crs=CRS,
        )
