"""The original 2024 run's files: what they are and how they are read as an embedding set.

The original Clay WorldCover scripts (2024) embedded both years over CONUS and published one
GeoParquet file per (year, column), ``worldcover_embeddings_{year}_{index}_v002.gpq`` under
``v002/{year}/`` of their bucket: ``index`` is the array index, the grid column counted from
lon -125 in 512 px steps, not zero-padded. A file holds two columns:

* ``embeddings``: the mean of the encoder's patch tokens, ``(N, 768)`` float32. Their code passed a
  ``pa.FixedShapeTensorArray`` into a GeoDataFrame; pandas made it an object column of arrays, so the files
  hold ``list<element: float>`` (read here as ``list``, ``large_list``, ``fixed_size_list`` or the
  ``fixed_shape_tensor`` type, every row of one length);
* ``geometry``: each chip's box, ``XORIGIN + PXSIZE * xoff`` etc. with the float
  ``PXSIZE = 8.333333333333333e-05`` (corners off the exact 1/12000 grid by float error), rows north
  to south, EPSG:4326, written by GeoPandas ``to_parquet(compression="ZSTD", schema_version="1.0.0")``.

There is no chip id, no year or column column, no record of the weights. :func:`read_as_ours`
recognises such a file by its name *and* its schema, puts each row on our grid (the chip whose
box its footprint is, within :data:`TOLERANCE`), checks that the name's year and column agree with
the footprints, and gives the rows in our layout with a record that says what they are
(:data:`WEIGHTS`, :data:`DEFECTS`). Ingest keeps them as their own embedding set (:data:`SET`).
:func:`wcembed.pipeline.original.write_original` writes them with the original statement, for tests and the
demo.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from wcembed.core.contract import FileMetadata, embeddings_table
from wcembed.core.errors import OutputError
from wcembed.core.grid import CHIP_PX, CONUS_ORIGIN, chip_bounds, chip_id
from wcembed.core.product import PX_PER_DEGREE, check_year

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
    """An original run's file as a table of our file layout (:func:`wcembed.core.contract.embeddings_table`) and its
    record. Each row's chip comes from its footprint: :class:`OutputError` naming the file's row for a
    footprint that is not a chip of the grid, for a name whose year or column the footprints contradict,
    or for embeddings that are not ``(N, D)`` float32."""
    year, column = parse_name(path) or (None, None)
    if year is None:
        raise OutputError(f"{path} is not named as the original run's files (worldcover_embeddings_YEAR_N_v002.gpq)")
    check_year(year)
    table = pq.read_table(io.BytesIO(data))
    if not is_original(path, table.schema):
        raise OutputError(f"{path} is named as the original run's files but its columns are {table.schema.names}")
    x = embedding_matrix(path, table["embeddings"])
    bounds = footprint_bounds(path, table["geometry"])
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
    meta = record(year, column, x.shape[1], weights)
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


def footprint_bounds(path: str, column: pa.ChunkedArray) -> np.ndarray:
    """``(N, 4)`` west, south, east, north (degrees) of each row's footprint in a ``geometry`` column encoded as
    WKB (GeoParquet 1.0, the original run's) or as GeoArrow coordinates (GeoParquet 1.1: nested lists of ``x``/``y``
    structs or of interleaved coordinates). :class:`OutputError` naming the row for a null or empty footprint,
    and for another encoding."""
    kind = column.type
    storage = kind.storage_type if isinstance(kind, pa.BaseExtensionType) else kind
    chunks = [c.storage if isinstance(c, pa.ExtensionArray) else c for c in column.chunks]
    flat = pa.chunked_array(chunks, type=storage).combine_chunks() if chunks else pa.array([], storage)
    if flat.null_count:
        i = int(np.argmax(flat.is_null().to_numpy(zero_copy_only=False)))
        raise OutputError(f"{path}: row {i} has no footprint (a null geometry)")
    if pa.types.is_binary(storage) or pa.types.is_large_binary(storage):
        bounds = shapely.bounds(shapely.from_wkb(flat.to_numpy(zero_copy_only=False))).reshape(-1, 4)
    elif pa.types.is_list(storage) or pa.types.is_large_list(storage):
        bounds = _coordinate_bounds(path, flat)
    else:
        raise OutputError(f"{path}: geometry is {kind}, neither WKB nor GeoArrow coordinates")
    if len(bounds) and not np.isfinite(bounds).all():
        i = int(np.argmax(~np.isfinite(bounds).all(axis=1)))
        raise OutputError(f"{path}: row {i} has an empty footprint")
    return bounds


def _coordinate_bounds(path: str, geometries: pa.Array) -> np.ndarray:
    """Bounds of each row of a GeoArrow polygon or multipolygon column (lists of rings of coordinates): the
    lists are flattened down to the coordinates, each keeping its row; rows without coordinates are NaN."""
    import pyarrow.compute as pc  # deferred: only for GeoArrow geometry

    row = np.arange(len(geometries))
    values = geometries
    while pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
        row = row[pc.list_parent_indices(values).to_numpy()]
        values = pc.list_flatten(values)
    if pa.types.is_struct(values.type) and {"x", "y"} <= {f.name for f in values.type}:
        x, y = (values.field(k).to_numpy(zero_copy_only=False) for k in ("x", "y"))
    elif pa.types.is_fixed_size_list(values.type) and values.type.list_size >= 2:
        xy = values.flatten().to_numpy(zero_copy_only=False).reshape(-1, values.type.list_size)
        x, y = xy[:, 0], xy[:, 1]
    else:
        raise OutputError(f"{path}: geometry coordinates are {values.type}, not GeoArrow x/y")
    bounds = np.full((len(geometries), 4), np.nan)
    if len(row):
        order = np.r_[0, np.flatnonzero(np.diff(row)) + 1]  # rows come in order: each one's first coordinate
        at = row[order]
        for k, (values_, reduce) in enumerate(((x, np.minimum), (y, np.minimum), (x, np.maximum), (y, np.maximum))):
            bounds[at, k] = reduce.reduceat(values_.astype(float), order)
    return bounds


def embedding_matrix(path: str, column: pa.ChunkedArray) -> np.ndarray:
    """The ``(N, D)`` float32 matrix of an original file's ``embeddings`` column, stored as ``list<float>`` (what
    their writer produced), ``large_list<float>``, ``fixed_size_list<float, D>`` or the ``fixed_shape_tensor``
    extension type. :class:`OutputError` for another type, a null row, or a row whose length is not the first
    row's, naming the row."""
    kind = column.type
    storage = kind.storage_type if isinstance(kind, pa.BaseExtensionType) else kind
    lists = pa.types.is_list(storage) or pa.types.is_large_list(storage) or pa.types.is_fixed_size_list(storage)
    if not lists or not pa.types.is_floating(storage.value_type):
        raise OutputError(f"{path}: embeddings are {kind}, not lists of floating-point numbers")
    chunks = [c.storage if isinstance(c, pa.ExtensionArray) else c for c in column.chunks]
    flat = pa.chunked_array(chunks, type=storage).combine_chunks() if chunks else pa.array([], storage)
    if flat.null_count:
        i = int(np.argmax(flat.is_null().to_numpy(zero_copy_only=False)))
        raise OutputError(f"{path}: row {i} has no embedding")
    if len(flat) == 0:
        return np.zeros((0, storage.list_size if pa.types.is_fixed_size_list(storage) else 0), np.float32)
    lengths = (
        np.full(len(flat), storage.list_size)
        if pa.types.is_fixed_size_list(storage)
        else flat.value_lengths().to_numpy(zero_copy_only=False)
    )
    if (lengths != lengths[0]).any():
        i = int(np.argmax(lengths != lengths[0]))
        raise OutputError(f"{path}: row {i}'s embedding has {lengths[i]} values, row 0's {lengths[0]}")
    if lengths[0] == 0:
        raise OutputError(f"{path}: its embeddings are empty")
    values = flat.flatten().to_numpy(zero_copy_only=False)
    if pa.types.is_fixed_size_list(storage) and len(values) != len(flat) * storage.list_size:
        raise OutputError(f"{path}: embeddings hold null values")
    return values.astype(np.float32, copy=False).reshape(len(flat), int(lengths[0]))


def original_name(year: int, column: int) -> str:
    """The original run's file name of a (year, column)."""
    return f"worldcover_embeddings_{year}_{column}_v002.gpq"
