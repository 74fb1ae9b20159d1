"""The original 2024 run's files written as its code wrote them, and chips embedded as it embedded them.

For tests and the demo: :func:`write_original` runs the original writer statement verbatim,
:func:`embed_like_original` repeats the original scripts' inputs and model (their defects included,
:data:`wcembed.core.original.DEFECTS`). What the files are and how they are read: :mod:`wcembed.core.original`.
"""

from __future__ import annotations

import copy
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyarrow as pa
import shapely
import torch

from wcembed.core.grid import CHIP_PX
from wcembed.core.original import PXSIZE, XORIGIN, YORIGIN, original_name
from wcembed.core.tileset import plan_grid
from wcembed.pipeline.bands import read_chips
from wcembed.pipeline.inference import encode_latlon, encode_time
from wcembed.pipeline.model import ClayEncoder


def write_original(folder: str | Path, year: int, column: int, rows, embeddings: np.ndarray) -> Path:
    """Write a column as the original scripts wrote it: ``{folder}/{year}/worldcover_embeddings_{year}_{column}
    _v002.gpq`` with the float-``PXSIZE`` boxes of ``rows`` (north to south, EPSG:4326).

    The writer statement is the original's, verbatim: a ``pa.FixedShapeTensorArray`` handed to a GeoDataFrame
    (pandas keeps it as an object column of arrays), then ``to_parquet(compression="ZSTD",
    schema_version="1.0.0")``; the file holds ``embeddings`` as ``list<element: float>``."""
    x = np.ascontiguousarray(embeddings, np.float32)
    xoff = column * CHIP_PX
    boxes = [
        shapely.box(
            XORIGIN + PXSIZE * xoff,
            YORIGIN - PXSIZE * (yoff + CHIP_PX),
            XORIGIN + PXSIZE * (xoff + CHIP_PX),
            YORIGIN - PXSIZE * yoff,
        )
        for yoff in (int(r) * CHIP_PX for r in rows)
    ]
    path = Path(folder) / str(year) / original_name(year, column)
    path.parent.mkdir(parents=True, exist_ok=True)
    gdf = gpd.GeoDataFrame(
        data={"embeddings": pa.FixedShapeTensorArray.from_numpy_ndarray(x)},
        geometry=boxes,
        crs="EPSG:4326",
    )
    gdf.to_parquet(path=path, compression="ZSTD", schema_version="1.0.0")
    return path


def original_inputs(pixels: np.ndarray, year: int):
    """The encoder's inputs for chips ``(B, 4, H, W)`` (B04, B03, B02, B08 digital numbers) as the original
    scripts made them (``scripts/worldcover/run.py`` of the 2024 Clay repository):

    * the raw digital numbers as float32, not normalised: ``tfm = v2.Compose([v2.Normalize(mean=MEAN,
      std=STD)])`` is handed to a ``ClayDataset`` whose ``__getitem__`` is never called (and its ``MEAN`` /
      ``STD``, commented red, green, blue, have red's and blue's statistics swapped: never applied);
    * ``"latlon": ds.normalize_latlon(transform[0], transform[3])``: the pixel size and the window's row term
      of its affine transform, in the function's (lon, lat) order: the same ``[~pi/2, ~1.5e-6]`` for every chip;
    * ``"timestep": ds.normalize_timestamp(f"{YEAR}-06-01")``: June 1, as ours.

    Returns ``(pixels, latlon, time)`` tensors."""
    n = len(pixels)
    x = torch.as_tensor(np.asarray(pixels, np.float32))
    latlon = encode_latlon(PXSIZE, 0.0).flip(-1).repeat(n, 1)  # [sin(a), atan2(cos d, sin d)] swapped
    return x, latlon, encode_time([year] * n)


def original_encoder(model):
    """The encoder as the original scripts rebuilt it: ``CLAYModule.load_from_checkpoint(..., band_groups=
    {"rgb": ..., "nir": (3,)}, strict=False)`` made a model of two band groups, so the nir group's tokens got
    the band code of the second row of Clay's table, rededge's, instead of nir's (the third). The weights are
    ``model``'s own (shared, not copied)."""
    encoder = copy.copy(model.encoder)  # a shallow copy: the same parameters, other band-code rows
    encoder.input_rows = [0, 1]
    return encoder


def embed_like_original(year: int, column: int, tiles: str, model, *, grid=None, batch: int = 8):
    """Embed a column's chips the way the original scripts did (:func:`original_inputs`,
    :func:`original_encoder`, and ``if NODATA in data: return``: a chip with a single 0 pixel in any band is
    dropped). Chips are read with the pipeline's reader (the original's reads differed only in speed);
    ``grid``: the year's grid of ``tiles`` when it is at hand (else it is planned).
    Returns the rows kept (north to south) and their embeddings ``(N, D)``; with untrained weights this
    shows the mechanism only."""
    grid = grid or plan_grid(year, tiles)
    encoder = original_encoder(model).eval()
    column_rows = [int(r) for r in grid.rows(grid.check_column(column))]
    read = read_chips(grid, year, tiles, [(column, r) for r in column_rows]).pixels
    keep = [i for i, pixels in enumerate(read) if not (pixels == 0).any()]  # the original's 0-pixel rule
    rows, chips, vectors = [column_rows[i] for i in keep], read[keep], []
    with torch.inference_mode():
        for i in range(0, len(chips), batch):
            x, latlon, time = original_inputs(chips[i : i + batch], year)
            vectors.append(ClayEncoder.embedding(encoder(x, latlon, time)).float().numpy())
    dim = model.encoder.config.dim
    return rows, (np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32))


def write_original_column(folder: str | Path, year: int, column: int, tiles: str, model, *, grid=None) -> Path | None:
    """Embed a column as the original scripts did (:func:`embed_like_original`) and write it as they wrote
    it (:func:`write_original`): a file of the original run's layout, e.g. for the demo's ``original-2024``
    set of the sample. A column without a chip kept writes nothing (None)."""
    rows, embeddings = embed_like_original(year, column, tiles, model, grid=grid)
    return write_original(folder, year, column, rows, embeddings) if rows else None
