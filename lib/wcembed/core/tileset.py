"""Which WorldCover tiles exist: the set the grid is planned over.

Three sources, one function (:func:`load_tiles`):

* the ESA tile index, a FlatGeobuf in the bucket
  (``esa_worldcover_grid_composites.fgb``; also any copy or subset of it, such
  as the original scripts' ``esa_worldcover_grid_usa.fgb``), read from a path or URL;
* offline, a land outline: the 1 km GLOBE land mask shipped in the PyPI package
  ``global-land-mask``, kept where it lies within 0.25 degree of the United States
  outline of Natural Earth (1:110m, shipped in ``pyogrio``'s package data);
* a local folder that mirrors the bucket layout (what is there is what exists).

Every source is filtered to a region (default ``CONUS``). An empty result is
an error (:class:`~wcembed.core.errors.EmptyTileSetError`), never an empty grid.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import numpy as np

from wcembed.core.errors import (
    BadParameterError,
    EmptyTileSetError,
    TileIndexError,
    TileIndexTransientError,
    failure_kind,
)
from wcembed.core.grid import REGIONS, Grid
from wcembed.core.product import TILE_INDEX_FILE, Tile, check_year, gdal_path, parse_tile_filename

log = logging.getLogger(__name__)

LAND = "land"
"""Tile-index value selecting the offline land outline."""
_US_BUFFER_DEG = 0.25
Region = str | tuple[float, float, float, float]


def region_bounds(region: Region) -> tuple[float, float, float, float]:
    """``(west, south, east, north)`` in degrees of a named region, a tuple or ``"w,s,e,n"``."""
    if isinstance(region, str):
        if region.upper() in REGIONS:
            return REGIONS[region.upper()]
        try:
            region = tuple(float(v) for v in region.split(","))
        except ValueError:
            raise BadParameterError(f"unknown region {region!r}: use {sorted(REGIONS)} or 'w,s,e,n'") from None
    if len(region) != 4 or not (region[0] < region[2] and region[1] < region[3]):
        raise BadParameterError(f"region must be (west, south, east, north) with west<east, south<north: {region!r}")
    return tuple(float(v) for v in region)


def _in_region(tiles: list[Tile], region: Region) -> list[str]:
    w, s, e, n = region_bounds(region)
    return sorted(t.name for t in tiles if w <= t.lon < e and s <= t.lat < n)


def tiles_from_folder(root: str | Path, year: int, region: Region = "CONUS") -> list[str]:
    """Tiles present in a local folder that mirrors the bucket layout."""
    year = check_year(year)
    parsed = (parse_tile_filename(p.name) for p in (Path(root) / "rgbnir" / str(year)).glob("*/*.tif"))
    return _in_region([Tile.from_name(p[1]) for p in parsed if p and p[0] == year], region)


def tiles_from_grid_file(path: str, year: int, region: Region = "CONUS") -> list[str]:
    """Tiles listed in an ESA tile-index vector file (FlatGeobuf, GeoPackage, ...).

    The name column is ``tile`` (or ``ll_tile`` as in ESA's map grid). Where a
    per-year flag column ``s2_rgbnir_{year}`` exists, only flagged tiles count.
    ``path`` may be a local path or an http(s)/s3 URL (read through GDAL).
    """
    import pyogrio  # deferred with geopandas

    year = check_year(year)
    try:
        df = pyogrio.read_dataframe(gdal_path(path), bbox=region_bounds(region), read_geometry=False)
    except Exception as exc:  # pyogrio raises DataSourceError and friends
        if failure_kind(exc) == "transient":
            raise TileIndexTransientError(f"network failure reading the tile index {path}: {exc}") from exc
        raise TileIndexError(f"cannot read the tile index {path}: {exc}") from exc
    name_col = next((c for c in ("tile", "ll_tile") if c in df.columns), None)
    if name_col is None:
        raise TileIndexError(f"tile index {path} has no 'tile' column (columns: {list(df.columns)})")
    flag = f"s2_rgbnir_{year}"
    if flag in df.columns:
        df = df[df[flag].astype(bool)]
    return _in_region([Tile.from_name(n) for n in df[name_col]], region)


@lru_cache(maxsize=1)
def _us_outline():
    import geopandas as gpd  # deferred: heavy, and the command line checks first
    import pyogrio  # deferred with geopandas

    shp = Path(pyogrio.__file__).parent / "tests/fixtures/naturalearth_lowres/naturalearth_lowres.shp"
    if not shp.exists():
        raise TileIndexError(f"the Natural Earth outline shipped with pyogrio is missing: {shp}")
    world = gpd.read_file(shp)
    return world.loc[world["iso_a3"] == "USA", "geometry"].union_all().buffer(_US_BUFFER_DEG)


def tiles_from_land_outline(region: Region = "CONUS") -> list[str]:
    """Offline estimate of the tiles over US land within ``region``.

    A tile counts if a 1 km GLOBE land cell falls inside it and the tile is
    within 0.25 degree of the US outline. This slightly over-covers the
    borders (a tile of only Canadian or Mexican land near the border may be
    kept), which costs a few empty chips, never a missed one.
    """
    import shapely  # deferred: only for footprints
    from global_land_mask import globe  # deferred: its 1 km mask loads in a second

    land = ~globe._mask  # (21600, 43200), 1/120 degree cells from lat 90, lon -180
    w, s, e, n = region_bounds(region)
    us = _us_outline()
    tiles = []
    for lat in range(int(np.floor(s)), int(np.ceil(n))):
        i0 = (89 - lat) * 120
        for lon in range(int(np.floor(w)), int(np.ceil(e))):
            j0 = (lon + 180) * 120
            if land[i0 : i0 + 120, j0 : j0 + 120].any() and us.intersects(shapely.box(lon, lat, lon + 1, lat + 1)):
                tiles.append(Tile(lat, lon))
    return _in_region(tiles, region)


def load_tiles(source: str | Path, year: int, region: Region = "CONUS", tile_index: str | None = None) -> list[str]:
    """Names of the tiles that exist for ``year`` in ``region``.

    Parameters
    ----------
    source : str or Path
        The tile source prefix (local folder, http(s) or s3 URL of the bucket).
    year : int
        2020 or 2021.
    region : str or tuple
        ``"CONUS"``, ``(west, south, east, north)`` or ``"w,s,e,n"`` in degrees.
    tile_index : str, optional
        Where the list of tiles comes from: ``"land"`` (offline land outline),
        a path/URL of a tile-index vector file, or a local folder. By default:
        the folder itself for a local source, else ``{source}/esa_worldcover_grid_composites.fgb``.

    Raises
    ------
    EmptyTileSetError
        When the source yields no tile in the region.
    """
    year = check_year(year)
    src = str(source)
    index = tile_index or (src if "://" not in src else f"{src.rstrip('/')}/{TILE_INDEX_FILE}")
    if index == LAND:
        tiles = tiles_from_land_outline(region)
    elif "://" not in index and Path(index).is_dir():
        tiles = tiles_from_folder(index, year, region)
    elif "://" not in index and not Path(index).exists():
        if not tile_index:  # the tile source is a local folder and it is not there
            raise TileIndexError(
                f"the tile source folder {index} does not exist (--tiles: a folder, an https or s3 URL)"
            )
        raise TileIndexError(f"tile index {index} does not exist (a folder, a vector file or 'land')")
    else:
        tiles = tiles_from_grid_file(index, year, region)
    if not tiles:
        raise EmptyTileSetError(f"no tile of {year} in region {region!r} from {index}: refusing an empty grid")
    log.info("%d tiles of %d in %s from %s", len(tiles), year, region, index)
    return tiles


def plan_grid(
    year: int,
    tiles: str | Path,
    *,
    tile_index: str | None = None,
    region: Region = "CONUS",
    chip_size: int = 512,
) -> Grid:
    """The chip grid of ``year`` over the tiles that exist (see :func:`load_tiles`)."""
    return Grid(load_tiles(tiles, year, region, tile_index), chip_size=chip_size)
