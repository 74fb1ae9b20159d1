"""Chips as places on a set's grid (:class:`GridPlaces`): the chip under a point, the chips under a drawn area,
and a chip's footprint, by grid arithmetic alone (no lookup), as the column files compute them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from wcembed.core.checks import check_bbox
from wcembed.core.errors import BadParameterError
from wcembed.core.grid import CHIP_PX, CONUS_ORIGIN, chip_at, chip_bounds, parse_chip_id
from wcembed.explore.data.table import RESULT_COLUMNS

MAX_AREA_CHIPS = 20_000
"""The most chips an area query may cover (about 170 x 170 km of 512 px chips)."""


@dataclass(frozen=True)
class GridPlaces:
    """The grid of chips of ``chip_size`` px from ``origin`` (the grid's north-west corner, degrees).

    Examples
    --------
    >>> GridPlaces().cell_at(-75.62, 37.675)
    (1157, 288)
    """

    chip_size: int = CHIP_PX
    origin: tuple[float, float] = CONUS_ORIGIN

    def cell_at(self, lon: float, lat: float) -> tuple[int, int]:
        """The (column, row) of the chip holding a point (degrees); negative outside the grid."""
        return chip_at(lon, lat, self.chip_size, self.origin)

    def footprint(self, chip: str):
        """The footprint polygon of a chip id (degrees, lon/lat)."""
        _, column, row = parse_chip_id(chip)
        return shapely.box(*chip_bounds(column, row, self.chip_size, self.origin))

    def cells_under(self, geometry) -> tuple[np.ndarray, np.ndarray]:
        """The (columns, rows) of the chips whose footprint overlaps ``geometry`` (a shapely polygon in degrees,
        OGC:CRS84) with a positive area; :class:`BadParameterError` for an empty area or one of more than
        :data:`MAX_AREA_CHIPS` chips (counted before any array is made)."""
        if not isinstance(geometry, shapely.Geometry) or geometry.is_empty:
            raise BadParameterError(f"the area is empty or not a geometry: {geometry!r}")
        check_bbox(geometry.bounds)
        if not geometry.is_valid:  # e.g. a self-intersecting drawing: what it encloses
            geometry = shapely.make_valid(geometry)
        w, s, e, n = geometry.bounds
        (c0, r0), (c1, r1) = self.cell_at(w, n), self.cell_at(e, s)
        count = max(0, c1 - max(c0, 0) + 1) * max(0, r1 - max(r0, 0) + 1)
        if count > MAX_AREA_CHIPS:
            raise BadParameterError(f"the area covers {count} chips, more than {MAX_AREA_CHIPS}: draw a smaller one")
        cols, rows = np.meshgrid(np.arange(max(c0, 0), c1 + 1), np.arange(max(r0, 0), r1 + 1))
        cols, rows = cols.ravel(), rows.ravel()
        bounds = [chip_bounds(c, r, self.chip_size, self.origin) for c, r in zip(cols, rows, strict=True)]
        boxes = shapely.box(*np.array(bounds).reshape(-1, 4).T)
        overlap = shapely.area(shapely.intersection(boxes, geometry)) > 0
        return cols[overlap], rows[overlap]

    def with_footprints(self, df):
        """``df`` (the scalar columns of search results and ``distance``) with the columns of
        :data:`~wcembed.explore.data.table.RESULT_COLUMNS` that follow from a chip's place (centre, bbox, WKB
        footprint)."""
        places = zip(df["column"], df["row"], strict=True)
        b = np.array([chip_bounds(int(c), int(r), self.chip_size, self.origin) for c, r in places]).reshape(-1, 4)
        out = df.assign(
            lon=(b[:, 0] + b[:, 2]) / 2,
            lat=(b[:, 1] + b[:, 3]) / 2,
            geometry=shapely.to_wkb(shapely.box(b[:, 0], b[:, 1], b[:, 2], b[:, 3])),
            xmin=b[:, 0],
            ymin=b[:, 1],
            xmax=b[:, 2],
            ymax=b[:, 3],
        )
        return out[[*RESULT_COLUMNS, "distance"]]
