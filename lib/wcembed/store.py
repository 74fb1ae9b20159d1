"""GeoParquet files of embeddings: naming, schema, metadata, atomic writes (local or S3).

One file per (year, column), ``{output}/{year}/worldcover_embeddings_{year}_{column:04d}_v002.gpq``,
with one row per embedded chip. The file format is a public contract:

======================= ==================================================================
column                  type
======================= ==================================================================
``chip_id``             string, ``{year}-{column:04d}-{row:04d}``
``year``                int16
``column``, ``row``     int32, grid position (:mod:`wcembed.grid`)
``lon``, ``lat``        float64, chip centre in degrees (EPSG:4326)
``valid_fraction``      float32, share of pixels with data (0..1)
``embeddings``          fixed_size_list<float32>[768], mean of Clay's patch tokens
``geometry``            binary, WKB polygon of the chip footprint (OGC:CRS84 lon/lat)
``bbox``                struct<xmin, ymin, xmax, ymax: double>, GeoParquet 1.1 covering
======================= ==================================================================

Metadata keys: ``geo`` (GeoParquet 1.1.0), ``embedding`` (what the vectors are:
model, checkpoint identity, providers, licence, datetime range, source dataset
and version, dimension, dtype) and ``wcembed`` (full provenance: normalisation,
chip size, package version, creation time, precision, ...). A STAC Item (JSON)
with the same facts sits beside each file.

Writes are atomic: a local file is written under a temporary name in the same
folder and renamed into place; on S3 it is one ``PutObject``, which either
completes or leaves nothing. So a file that exists is complete.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import re
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from wcembed.errors import OutputError
from wcembed.grid import Grid, chip_id
from wcembed.product import CRS

FORMAT_VERSION = "v002"
GEO_VERSION = "1.1.0"
FILE_GLOB = f"worldcover_embeddings_*_*_{FORMAT_VERSION}.gpq"
_OUTPUT_RE = re.compile(rf"worldcover_embeddings_(\d{{4}})_(\d{{4,}})_{FORMAT_VERSION}\.gpq$")


def output_path(output: str | Path, year: int, column: int) -> str:
    """Where the file of ``(year, column)`` goes under ``output`` (folder or ``s3://bucket/prefix``)."""
    return f"{str(output).rstrip('/')}/{year}/worldcover_embeddings_{year}_{column:04d}_{FORMAT_VERSION}.gpq"


def parse_output_path(path: str) -> tuple[int, int]:
    """``(year, column)`` of an output file's path (see :func:`output_path`).

    >>> parse_output_path("s3://b/e/2020/worldcover_embeddings_2020_0012_v002.gpq")
    (2020, 12)
    """
    m = _OUTPUT_RE.search(str(path))
    if not m:
        raise OutputError(f"not an output file name: {path}")
    return int(m[1]), int(m[2])


def stac_path(path: str) -> str:
    """The STAC Item that describes a GeoParquet file: same name, ``.json``."""
    return path[: -len(".gpq")] + ".json"


def _s3():
    import boto3

    return boto3.client("s3")


def split_s3(url: str) -> tuple[str, str]:
    bucket, _, key = url[len("s3://") :].partition("/")
    return bucket, key


def exists(path: str) -> bool:
    """Whether a complete output file exists at ``path`` (local or ``s3://``)."""
    if path.startswith("s3://"):
        from botocore.exceptions import ClientError

        bucket, key = split_s3(path)
        try:
            _s3().head_object(Bucket=bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
    return Path(path).is_file()


@contextlib.contextmanager
def exclusive(lock_path: str | Path) -> Iterator[None]:
    """An exclusive lock on ``lock_path`` between processes (``flock``; no lock where there is no fcntl)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Linux/macOS
        yield
        return
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_leftovers(target: Path) -> list[Path]:
    """Remove the temporary files of ``target`` (``.{name}.{pid}.{hex}.tmp``) whose writing process is gone,
    e.g. killed mid-write; a live writer's are kept. Returns what was removed."""
    gone = []
    for tmp in target.parent.glob(f".{target.name}.*.tmp"):
        pid = tmp.name[len(target.name) + 2 :].split(".")[0]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)
            gone.append(tmp)
    return gone


def write_bytes_atomic(path: str, data: bytes, content_type: str = "application/octet-stream") -> None:
    """Write ``data`` so that ``path`` either holds all of it or does not exist (locally: a temporary file
    renamed into place; what a killed writer of ``path`` left behind is removed first)."""
    if path.startswith("s3://"):
        bucket, key = split_s3(path)
        _s3().put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def read_bytes(path: str) -> bytes:
    """Bytes of a local or ``s3://`` file."""
    if path.startswith("s3://"):
        bucket, key = split_s3(path)
        return _s3().get_object(Bucket=bucket, Key=key)["Body"].read()
    return Path(path).read_bytes()


def list_outputs(output: str | Path, year: int | None = None) -> dict[str, int]:
    """Output files under ``output`` (optionally one year) with their sizes in bytes."""
    base = str(output).rstrip("/")
    prefix = f"{base}/{year}/" if year is not None else f"{base}/"
    found: dict[str, int] = {}
    if base.startswith("s3://"):
        bucket, key = split_s3(prefix)
        for page in _s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
            for obj in page.get("Contents", []):
                if obj["Key"].endswith(f"_{FORMAT_VERSION}.gpq"):
                    found[f"s3://{bucket}/{obj['Key']}"] = int(obj["Size"])
        return found
    root = Path(prefix)
    pattern = FILE_GLOB if year is not None else f"*/{FILE_GLOB}"
    return {str(p): p.stat().st_size for p in sorted(root.glob(pattern))} if root.is_dir() else {}


def crs_projjson() -> dict[str, Any]:
    """PROJJSON of :data:`wcembed.product.CRS` (OGC:CRS84: WGS 84, lon/lat axis order), the CRS of every geometry."""
    from pyproj import CRS as ProjCRS

    return ProjCRS(CRS).to_json_dict()


def embeddings_table(
    *,
    chip_ids: list[str],
    year: int,
    columns: np.ndarray,
    rows: np.ndarray,
    bounds: np.ndarray,
    valid_fraction: np.ndarray,
    embeddings: np.ndarray,
    metadata: dict[str, dict],
) -> pa.Table:
    """The Arrow table of one file, with its ``geo`` and other metadata.

    ``bounds`` is ``(N, 4)``: west, south, east, north in degrees; ``embeddings`` is ``(N, D)`` float32.
    """
    import shapely

    n = len(chip_ids)
    dim = int(metadata["embedding"]["dimension"])
    emb = np.ascontiguousarray(embeddings, dtype=np.float32).reshape(n, dim)
    b = np.asarray(bounds, dtype=np.float64).reshape(n, 4)
    geoms = shapely.box(b[:, 0], b[:, 1], b[:, 2], b[:, 3])
    bbox = pa.StructArray.from_arrays([pa.array(b[:, i]) for i in range(4)], names=["xmin", "ymin", "xmax", "ymax"])
    table = pa.table(
        {
            "chip_id": pa.array(chip_ids, pa.string()),
            "year": pa.array(np.full(n, year, np.int16)),
            "column": pa.array(np.asarray(columns, np.int32)),
            "row": pa.array(np.asarray(rows, np.int32)),
            "lon": pa.array((b[:, 0] + b[:, 2]) / 2),
            "lat": pa.array((b[:, 1] + b[:, 3]) / 2),
            "valid_fraction": pa.array(np.asarray(valid_fraction, np.float32)),
            "embeddings": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), dim),
            "geometry": pa.array(shapely.to_wkb(geoms), pa.binary()),
            "bbox": bbox,
        }
    )
    geo_col: dict[str, Any] = {
        "encoding": "WKB",
        "geometry_types": ["Polygon"] if n else [],
        "crs": crs_projjson(),
        "orientation": "counterclockwise",
        "covering": {"bbox": {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}},
    }
    if n:
        geo_col["bbox"] = [float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())]
    geo = {"version": GEO_VERSION, "primary_column": "geometry", "columns": {"geometry": geo_col}}
    meta = {b"geo": json.dumps(geo).encode()}
    meta.update({k.encode(): json.dumps(v).encode() for k, v in metadata.items()})
    return table.replace_schema_metadata(meta)


PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    # Dictionary encoding only where values repeat: a dictionary of float embeddings (pyarrow's default
    # for every column) is larger than the raw floats. The embeddings' bytes are split by position
    # (BYTE_STREAM_SPLIT: sign and exponent bytes together), which ZSTD then compresses.
    "use_dictionary": ["year", "column"],
    "use_byte_stream_split": ["embeddings.list.element"],
}
"""How the column files are written (``benchmarks/bench_store.py`` measures it against pyarrow's defaults)."""


def parquet_bytes(table: pa.Table) -> bytes:
    """Serialise a table as Parquet: :data:`PARQUET_OPTIONS`, statistics on, one row group per file.

    A column file holds a few hundred chips (about 1 MB), one north-south strip in row order,
    so one row group is both the natural unit of a read and spatially compact: its statistics
    (``bbox`` covering, ``lon``/``lat``) let a reader skip the whole file outside its area.
    """
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=max(len(table), 1), **PARQUET_OPTIONS)
    return buf.getvalue()


def vector_matrix(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An Arrow column of fixed-size float lists (``embeddings``, ``vector``) as an ``(N, D)`` matrix."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pa.types.is_fixed_size_list(arr.type):
        raise OutputError(f"not a column of fixed-size vectors: {arr.type}")
    return arr.flatten().to_numpy(zero_copy_only=False).reshape(len(arr), arr.type.list_size)


def write_column(
    path: str,
    grid: Grid,
    year: int,
    column: int,
    chips: Sequence[tuple[int, float]],
    embeddings: np.ndarray,
    metadata: dict[str, dict],
) -> str:
    """Write one column's GeoParquet file and the STAC Item beside it; return the file's path.

    ``chips`` are ``(row, valid_fraction)`` of the embedded chips of ``column``,
    in the order of the rows of ``embeddings`` (``(N, D)`` float32). The
    GeoParquet file is written first and the STAC Item after it, each
    atomically, so a file that exists is complete and an Item never stands
    without its file; a file whose Item a crash left unwritten gets it from
    :func:`restore_item` (``run_job`` calls it for the columns it skips).
    """
    rows = np.array([r for r, _ in chips], np.int32)
    table = embeddings_table(
        chip_ids=[chip_id(year, column, int(r)) for r in rows],
        year=year,
        columns=np.full(len(rows), column, np.int32),
        rows=rows,
        bounds=np.array([grid.chip_bounds(column, int(r)) for r in rows]).reshape(-1, 4),
        valid_fraction=np.array([v for _, v in chips], np.float32),
        embeddings=embeddings,
        metadata=metadata,
    )
    write_bytes_atomic(path, parquet_bytes(table), "application/vnd.apache.parquet")
    _write_item(path, table, metadata, grid, column)
    return path


def _write_item(path: str, table: pa.Table, metadata: dict[str, dict], grid: Grid, column: int) -> None:
    all_rows = grid.rows(column)
    west, _, east, north = grid.chip_bounds(column, int(all_rows[0]))
    south = grid.chip_bounds(column, int(all_rows[-1]))[1]
    item = _stac_item(path, table, metadata, (west, south, east, north))
    write_bytes_atomic(stac_path(path), json.dumps(item, indent=1).encode(), "application/json")


def restore_item(path: str, grid: Grid) -> bool:
    """Write the STAC Item of an existing column file if it has none (a writer killed between the file and
    its Item); return whether one was written."""
    if exists(stac_path(path)):
        return False
    table = pq.read_table(io.BytesIO(read_bytes(path)))
    raw = table.schema.metadata or {}
    metadata = {k: json.loads(raw[k.encode()]) for k in ("embedding", "wcembed")}
    _write_item(path, table, metadata, grid, parse_output_path(path)[1])
    return True


def _stac_item(path: str, table: pa.Table, metadata: dict[str, dict], bounds: tuple[float, ...]) -> dict:
    """A STAC Item (dict) describing one output file; ``bounds`` is the column's (west, south, east, north)."""
    import pystac
    import shapely

    emb, prov = metadata["embedding"], metadata["wcembed"]
    year, column = prov["year"], prov["column"]
    item = pystac.Item(
        id=f"worldcover-embeddings-{year}-{column:04d}",
        geometry=shapely.geometry.mapping(shapely.box(*bounds)),
        bbox=list(bounds),
        datetime=None,
        start_datetime=dt.datetime(year, 1, 1, tzinfo=dt.UTC),
        end_datetime=dt.datetime(year, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
        properties={f"embedding:{k}": v for k, v in emb.items() if k != "datetime_range"}
        | {"wcembed:column": column, "wcembed:rows": table.num_rows, "wcembed:format": prov["format"]}
        | _emb_extension(emb, prov),
    )
    note = ": architecture only, the weights were random" if emb.get("weights") == "untrained" else ""
    item.add_link(
        pystac.Link(
            "emb:model",
            emb.get("model_url") or emb.get("checkpoint") or "",
            media_type="application/octet-stream",
            title=f"{emb.get('model', 'encoder')}{note}",
        )
    )
    item.add_link(
        pystac.Link(
            "emb:source-data",
            f"{str(prov.get('tiles', '')).rstrip('/')}/rgbnir/{year}/",
            title=f"{emb.get('source_dataset', 'source imagery')} {emb.get('source_version', '')}".strip(),
        )
    )
    item.add_asset(
        "data",
        pystac.Asset(
            href=f"./{Path(path).name}",
            media_type="application/vnd.apache.parquet",
            roles=["data"],
            title="Chip embeddings (GeoParquet 1.1)",
        ),
    )
    return item.to_dict(include_self_link=False)


def _emb_extension(emb: dict, prov: dict) -> dict:
    """Item fields of the proposed STAC embeddings extension (``emb:``, CNG sprint 2026; not yet published
    with a JSON schema, so not validated), beside our own ``embedding:`` and ``wcembed:`` fields."""
    size = int(prov.get("chip_size_px", 512))
    runtime = ("precision", "device", "min_valid_fraction", "date_encoded", "normalisation", "bands", "chip_size_px")
    return {
        "emb:type": "chip",
        "emb:dimensions": emb.get("dimension"),
        "data_type": emb.get("dtype", "float32"),
        "emb:chip_layout": {
            "layout_type": "regular_grid",
            "chip_size": [size, size],
            "stride": [size, size],
            "grid_id": f"wcembed {size} px chips of 1/12000 degree pixels from (-125, 50), EPSG:4326",
        },
        "emb:temporal_resolution": "annual",
        "emb:runtime_parameters": {k: prov[k] for k in runtime if k in prov},
        "emb:postprocessing": {"expression": emb.get("pooling", ""), "format": "text"},
        "emb:fit_for_use": ["similarity_search", "retrieval", "classification", "change_detection"],
        "processing:datetime": prov.get("created"),
        "processing:version": emb.get("source_version"),
    }


def read_column(path: str):
    """A column's GeoParquet file as a GeoDataFrame (without the vectors) and its ``(N, D)`` float32 matrix."""
    import geopandas as gpd

    data = read_bytes(path)
    vectors = vector_matrix(pq.read_table(io.BytesIO(data), columns=["embeddings"])["embeddings"])
    names = [n for n in pq.read_schema(io.BytesIO(data)).names if n not in ("embeddings", "bbox")]
    return gpd.read_parquet(io.BytesIO(data), columns=names), vectors


def file_metadata(path: str) -> dict[str, Any]:
    """The JSON metadata (``geo``, ``embedding``, ``wcembed``) of an output file."""
    schema = pq.read_schema(io.BytesIO(read_bytes(path)))
    return {k.decode(): json.loads(v) for k, v in (schema.metadata or {}).items() if k != b"ARROW:schema"}
