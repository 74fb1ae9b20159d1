"""The original 2024 run's files: what they are, how they are read as an embedding set, how they were written.

The original Clay WorldCover scripts (2024) embedded both years over CONUS and published one
GeoParquet file per (year, column), ``worldcover_embeddings_{year}_{index}_v002.gpq`` under
``v002/{year}/`` of their bucket: ``index`` is the array index, the grid column counted from
lon -125 in 512 px steps, not zero-padded. A file holds two columns:

* ``embeddings``: ``pa.FixedShapeTensorArray.from_numpy_ndarray`` of ``(N, 768)`` float32 (the
  Arrow ``fixed_shape_tensor`` extension type), the mean of the encoder's patch tokens;
* ``geometry``: each chip's box, ``XORIGIN + PXSIZE * xoff`` etc. with the float
  ``PXSIZE = 8.333333333333333e-05`` (corners off the exact 1/12000 grid by float error), rows north
  to south, EPSG:4326, written by GeoPandas ``to_parquet(compression="ZSTD", schema_version="1.0.0")``.

There is no chip id, no year or column column, no record of the weights. :func:`read_as_ours`
recognises such a file by its name *and* its schema, puts each row on our grid (the chip whose
box its footprint is, within :data:`TOLERANCE`), checks that the name's year and column agree with
the footprints, and gives the rows in our layout with a record that says what they are
(:data:`WEIGHTS`, :data:`DEFECTS`). Ingest keeps them as their own embedding set (:data:`SET`).
:func:`write_original` writes the layout the same way, for tests and the demo.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from wcembed.contract import FileMetadata, embeddings_table
from wcembed.errors import OutputError
from wcembed.grid import CHIP_PX, CONUS_ORIGIN, chip_bounds, chip_id
from wcembed.product import PX_PER_DEGREE, check_year

NAME_RE = re.compile(r"worldcover_embeddings_(\d{4})_(\d+)_v002\.gpq$")
"""The original run's file names (``index`` not zero-padded)."""
PXSIZE = 8.333333333333333e-05
"""The original scripts' pixel size: 1/12000 degree as a float."""
XORIGIN, YORIGIN = CONUS_ORIGIN
SET = "original-2024"
"""The embedding set the original run's files go to, unless ingest is told another."""
WEIGHTS = "clay-v0.1 (original 2024 run)"
DEFECTS = (
    "pixels not normalised (the normalisation was built but never applied)",
    "red and blue statistics swapped in its constants",
    "nir given the rededge band-group code (the model rebuilt with two groups)",
    "lat/lon input was the pixel size and an offset, not the chip's centre",
    "every chip with a single 0 pixel dropped (coasts and borders missing)",
)
"""What the original scripts did differently from the model's training, recorded with each file."""
TOLERANCE = 1e-6
"""How far (in chips) a footprint's corner may be from the grid's: float error of the original boxes is ~1e-12."""
CHIP_DEG = CHIP_PX / PX_PER_DEGREE


def parse_name(path: str) -> tuple[int, int] | None:
    """``(year, column)`` of an original run's file name, or None for any other name."""
    m = NAME_RE.search(str(path))
    return (int(m[1]), int(m[2])) if m else None


def is_original(path: str, schema: pa.Schema) -> bool:
    """Whether a file is one of the original run's: its name, and a schema of ``embeddings`` and ``geometry``
    without our columns (a file is never taken for one by its name alone)."""
    names = set(schema.names)
    return parse_name(path) is not None and {"embeddings", "geometry"} <= names and "chip_id" not in names


def record(year: int, column: int, dim: int, weights: str = WEIGHTS) -> FileMetadata:
    """The record an original run's file is ingested with: its weights (the published run's, unless the files
    were made here with others, e.g. ``untrained``) and its known defects."""
    embedding = {
        "dimension": dim,
        "weights": weights,
        "model": "Clay v0.1, as the original 2024 scripts ran it",
        "defects": list(DEFECTS),
        "pooling": "mean of patch tokens (the last two tokens dropped)",
    }
    prov = {"year": year, "column": column, "format": "v002 (original 2024 run)", "chip_size_px": CHIP_PX,
            "complete": True, "kind": SET}  # fmt: skip
    return FileMetadata(embedding, prov)


def read_as_ours(path: str, data: bytes, weights: str = WEIGHTS) -> tuple[pa.Table, FileMetadata]:
    """An original run's file as a table of our file layout (:func:`wcembed.contract.embeddings_table`) and its
    record. Each row's chip comes from its footprint: :class:`OutputError` naming the file's row for a
    footprint that is not a chip of the grid, for a name whose year or column the footprints contradict,
    or for embeddings that are not ``(N, D)`` float32."""
    import shapely

    year, column = parse_name(path) or (None, None)
    if year is None:
        raise OutputError(f"{path} is not named as the original run's files (worldcover_embeddings_YEAR_N_v002.gpq)")
    check_year(year)
    table = pq.read_table(io.BytesIO(data))
    if not is_original(path, table.schema):
        raise OutputError(f"{path} is named as the original run's files but its columns are {table.schema.names}")
    emb_type = table.schema.field("embeddings").type
    storage = emb_type.storage_type if isinstance(emb_type, pa.BaseExtensionType) else emb_type
    if not pa.types.is_fixed_size_list(storage) or storage.value_type != pa.float32():
        raise OutputError(f"{path}: embeddings are {emb_type}, not a fixed-shape tensor of float32 vectors")
    chunks = [c.storage if isinstance(c, pa.ExtensionArray) else c for c in table["embeddings"].chunks]
    flat = pa.chunked_array(chunks, type=storage).combine_chunks() if chunks else pa.array([], storage)
    x = flat.flatten().to_numpy(zero_copy_only=False).reshape(len(flat), storage.list_size)
    bounds = shapely.bounds(shapely.from_wkb(table["geometry"].to_numpy(zero_copy_only=False))).reshape(-1, 4)
    columns = (bounds[:, 0] - XORIGIN) / CHIP_DEG
    rows = (YORIGIN - bounds[:, 3]) / CHIP_DEG
    cols_i, rows_i = np.rint(columns).astype(np.int64), np.rint(rows).astype(np.int64)
    off = np.maximum.reduce(
        [
            np.abs(columns - cols_i),
            np.abs(rows - rows_i),
            np.abs((bounds[:, 2] - XORIGIN) / CHIP_DEG - cols_i - 1),
            np.abs((YORIGIN - bounds[:, 1]) / CHIP_DEG - rows_i - 1),
        ]
    ) if len(bounds) else np.zeros(0)  # fmt: skip
    if (off > TOLERANCE).any():
        i = int(np.argmax(off > TOLERANCE))
        raise OutputError(
            f"{path}: row {i}'s footprint {tuple(round(float(v), 9) for v in bounds[i])} is not a chip of the "
            f"grid (off by {off[i]:.2g} chips)"
        )
    if len(cols_i) and (cols_i != column).any():
        i = int(np.argmax(cols_i != column))
        raise OutputError(f"{path}: its name says column {column}, row {i}'s footprint is in column {cols_i[i]}")
    if len(set(rows_i.tolist())) != len(rows_i):
        raise OutputError(f"{path}: a chip is in the file twice")
    exact = np.array([chip_bounds(column, int(r)) for r in rows_i]).reshape(-1, 4)
    meta = record(year, column, storage.list_size, weights)
    ours = embeddings_table(
        chip_ids=[chip_id(year, column, int(r)) for r in rows_i],
        year=year,
        columns=cols_i.astype(np.int32),
        rows=rows_i.astype(np.int32),
        bounds=exact,
        valid_fraction=np.ones(len(rows_i), np.float32),  # the original dropped any chip with a 0 pixel
        embeddings=x,
        metadata=meta,
    )
    return ours, meta


def original_name(year: int, column: int) -> str:
    """The original run's file name of a (year, column)."""
    return f"worldcover_embeddings_{year}_{column}_v002.gpq"


def write_original(folder: str | Path, year: int, column: int, rows, embeddings: np.ndarray) -> Path:
    """Write a column as the original scripts wrote it: ``{folder}/{year}/worldcover_embeddings_{year}_{column}
    _v002.gpq``, a GeoDataFrame of ``embeddings`` (``FixedShapeTensorArray``) and the float-``PXSIZE`` boxes of
    ``rows`` (north to south), ``to_parquet(compression="ZSTD", schema_version="1.0.0")``."""
    import geopandas as gpd
    import pandas as pd
    import shapely

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
    tensor = pa.FixedShapeTensorArray.from_numpy_ndarray(x)
    gdf = gpd.GeoDataFrame({"embeddings": pd.arrays.ArrowExtensionArray(tensor)}, geometry=boxes, crs="EPSG:4326")
    path = Path(folder) / str(year) / original_name(year, column)
    path.parent.mkdir(parents=True, exist_ok=True)
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
    import torch

    from wcembed.pipeline.inference import encode_latlon, encode_time

    n = len(pixels)
    x = torch.as_tensor(np.asarray(pixels, np.float32))
    latlon = encode_latlon(PXSIZE, 0.0).flip(-1).repeat(n, 1)  # [sin(a), atan2(cos d, sin d)] swapped
    return x, latlon, encode_time([year] * n)


def original_encoder(model):
    """The encoder as the original scripts rebuilt it: ``CLAYModule.load_from_checkpoint(..., band_groups=
    {"rgb": ..., "nir": (3,)}, strict=False)`` made a model of two band groups, so the nir group's tokens got
    the band code of the second row of Clay's table, rededge's, instead of nir's (the third). The weights are
    ``model``'s own (shared, not copied)."""
    import copy

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
    import torch

    from wcembed.pipeline.bands import read_chips
    from wcembed.pipeline.model import ClayEncoder
    from wcembed.tileset import plan_grid

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
