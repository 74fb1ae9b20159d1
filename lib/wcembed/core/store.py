"""Where the column files go and how they are written: atomic writes and reads, local or S3.

What a file is (its name, schema, header and STAC) is :mod:`wcembed.core.contract`'s; this module
writes and reads the files, their STAC Items, and a run's STAC Collections and Catalog.

Writes are atomic: a local file is written under a temporary name in the same
folder and renamed into place; on S3 it is one ``PutObject``, which either
completes or leaves nothing. So a file that exists is complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import struct
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from wcembed.core.contract import (
    FILE_GLOB,
    FORMAT_VERSION,
    FileMetadata,
    output_path,
    parquet_bytes,
    parse_output_path,
    stac_catalog,
    stac_collection,
    stac_item,
    stac_path,
)
from wcembed.core.errors import OutputError

__all__ = [  # the names a column file's path is made of stay importable from here, where they were
    "FILE_GLOB", "FORMAT_VERSION", "output_path", "parse_output_path", "stac_path",
]  # fmt: skip


def _s3():
    import boto3  # deferred: only for s3:// paths

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
        import fcntl  # not on every platform: looked for when a lock is taken
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
    """Write ``data`` so that ``path`` either holds all of it or does not exist (locally:
    :func:`write_file_atomic`)."""
    if path.startswith("s3://"):
        bucket, key = split_s3(path)
        _s3().put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
        return
    write_file_atomic(path, lambda fh: fh.write(data))


def write_file_atomic(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Let ``write`` fill a local file so that ``path`` either holds all of it or does not exist: a temporary
    file, synced, then renamed into place; what a killed writer of ``path`` left behind is removed first.
    For a large array, ``write=lambda fh: np.save(fh, x)`` makes no copy of it in memory."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
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


FOOTER_GUESS = 64 * 1024
"""Bytes read from a file's end to find its Parquet footer in one request (more when the footer is larger)."""


def read_footer(path: str) -> bytes:
    """The Parquet footer of a local or ``s3://`` file (one or two ranged reads, not the whole file), as a
    buffer ``pyarrow.parquet.read_schema`` reads: the magic number, the footer, its length, the magic."""

    def tail(n: int) -> bytes:
        if path.startswith("s3://"):
            bucket, key = split_s3(path)
            return _s3().get_object(Bucket=bucket, Key=key, Range=f"bytes=-{n}")["Body"].read()
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - n))
            return fh.read()

    data = tail(FOOTER_GUESS)
    if len(data) < 12 or data[-4:] != b"PAR1":
        raise OutputError(f"{path} is not a Parquet file (no footer)")
    size = struct.unpack("<I", data[-8:-4])[0] + 8
    if size > len(data):
        data = tail(size)
        if len(data) < size:
            raise OutputError(f"{path}: its footer says {size} bytes, the file has {len(data)}")
    return b"PAR1" + data[-size:]


def finished(path: str) -> FileMetadata | None:
    """The record of the output file at ``path`` if it holds its whole column (its record says ``complete``),
    else None: no file, a partial file (``max_rows``) or one without a readable record, whose column is
    embedded again."""
    if not exists(path):
        return None
    try:
        meta = read_metadata(path)
    except OutputError:
        return None
    return meta if meta.complete else None


def done(path: str) -> bool:
    """Whether the output file at ``path`` holds its whole column (:func:`finished`)."""
    return finished(path) is not None


def list_outputs(output: str | Path, year: int | None = None, version: str = FORMAT_VERSION) -> dict[str, int]:
    """Output files under ``output`` (optionally one year) with their sizes in bytes: ours, or with ``version``
    ``"v002"`` the original 2024 run's (:mod:`wcembed.core.original`)."""
    base = str(output).rstrip("/")
    prefix = f"{base}/{year}/" if year is not None else f"{base}/"
    found: dict[str, int] = {}
    if base.startswith("s3://"):
        bucket, key = split_s3(prefix)
        for page in _s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
            for obj in page.get("Contents", []):
                if obj["Key"].endswith(f"_{version}.gpq") and obj["Key"].rsplit("/", 1)[-1].startswith("worldcover_"):
                    found[f"s3://{bucket}/{obj['Key']}"] = int(obj["Size"])
        return found
    root = Path(prefix)
    name = FILE_GLOB.replace(FORMAT_VERSION, version)
    pattern = name if year is not None else f"*/{name}"
    return {str(p): p.stat().st_size for p in sorted(root.glob(pattern))} if root.is_dir() else {}


def content_keys(files: dict[str, int]) -> dict[str, str]:
    """What each listed output file holds, as a key that changes when its content does: its size and the
    SHA-256 of its Parquet footer (schema, row groups' statistics and offsets, the file's record), read with
    one or two ranged reads. A rewrite of the same size with other content gets another key; a file whose
    footer cannot be read gets a key that matches no record (reading it then says what is wrong)."""

    def key(item: tuple[str, int]) -> str:
        path, size = item
        try:
            return f"{size}:{hashlib.sha256(read_footer(path)).hexdigest()[:32]}"
        except (OSError, OutputError):
            return f"{size}:unreadable"

    with ThreadPoolExecutor(max_workers=16) as pool:  # ranged reads of an object store: many at a time
        return dict(zip(files, pool.map(key, files.items()), strict=True))


def vector_matrix(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An Arrow column of fixed-size float lists (``embeddings``, ``vector``) as an ``(N, D)`` matrix."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pa.types.is_fixed_size_list(arr.type):
        raise OutputError(f"not a column of fixed-size vectors: {arr.type}")
    return arr.flatten().to_numpy(zero_copy_only=False).reshape(len(arr), arr.type.list_size)


def write_column(path: str, table: pa.Table, metadata: FileMetadata, extent: tuple[float, ...]) -> str:
    """Write one column's file (``table``, :func:`wcembed.core.contract.column_table`) and the STAC Item beside it
    (its bbox ``extent``, :func:`wcembed.core.contract.column_extent`); return the file's path.

    The GeoParquet file is written first and the STAC Item after it, each atomically, so a file that
    exists is complete and an Item never stands without its file; a file whose Item a crash left
    unwritten gets it from :func:`restore_item` (``run_job`` calls it for the columns it skips).
    """
    write_bytes_atomic(path, parquet_bytes(table), "application/vnd.apache.parquet")
    _write_item(path, table.num_rows, metadata, extent)
    return path


def _write_item(path: str, n_rows: int, metadata: FileMetadata, extent: tuple[float, ...]) -> None:
    item = stac_item(path, n_rows, metadata, tuple(extent))
    write_bytes_atomic(stac_path(path), json.dumps(item, indent=1).encode(), "application/json")


def restore_item(path: str, extent: tuple[float, ...]) -> bool:
    """Write the STAC Item of an existing column file if it has none (a writer killed between the file and
    its Item); return whether one was written."""
    if exists(stac_path(path)):
        return False
    n_rows = pq.read_metadata(io.BytesIO(read_bytes(path))).num_rows
    _write_item(path, n_rows, read_metadata(path), extent)
    return True


def read_metadata(path: str) -> FileMetadata:
    """The record of the output file at ``path`` (local or ``s3://``), from its Parquet footer alone
    (:func:`read_footer`); :class:`OutputError` when the file has none."""
    return FileMetadata.from_header(pq.read_schema(io.BytesIO(read_footer(path))).metadata)


def read_item(path: str) -> dict:
    """A column file's STAC Item; :class:`OutputError` naming the file when it is not JSON or not an Item
    with an ``id`` and a ``bbox`` of four numbers (a damaged or foreign file)."""
    try:
        item = json.loads(read_bytes(path))
    except (ValueError, UnicodeDecodeError) as exc:
        raise OutputError(f"the STAC Item {path} is not JSON ({exc}): write it again (embed --overwrite)") from None
    bbox = item.get("bbox") if isinstance(item, dict) else None
    if not (isinstance(item, dict) and isinstance(item.get("id"), str) and isinstance(bbox, list) and len(bbox) == 4
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)):  # fmt: skip
        raise OutputError(f"{path} is not a STAC Item with an id and a bbox of four numbers: write it again")
    return item


def write_catalog(output: str | Path) -> list[str]:
    """Write the STAC Collection of each year's files under ``output`` (``{year}/collection.json``, linking
    the Items beside the files) and the Catalog of the run (``catalog.json``). Returns the paths written.

    Run it when a run's files are all there (``python -m wcembed catalog``, the demo, ``run-array``);
    a rerun after more files rewrites both. :class:`OutputError` when ``output`` holds no column file.
    """
    written, years = [], []
    by_year: dict[int, dict[str, dict]] = {}
    first: dict[int, str] = {}
    for path in sorted(list_outputs(output)):
        year = parse_output_path(path)[0]
        if not exists(stac_path(path)):
            continue  # a file without its Item (a writer killed in between): restore_item gives it one
        first.setdefault(year, path)
        by_year.setdefault(year, {})[Path(stac_path(path)).name] = read_item(stac_path(path))
    if not by_year:
        raise OutputError(f"no column file with its STAC Item under {output}: nothing to catalogue")
    root = str(output).rstrip("/")
    for year, items in sorted(by_year.items()):
        collection = stac_collection(year, items, read_metadata(first[year]))
        target = f"{root}/{year}/collection.json"
        write_bytes_atomic(target, json.dumps(collection, indent=1).encode(), "application/json")
        written.append(target)
        years.append(year)
    target = f"{root}/catalog.json"
    write_bytes_atomic(target, json.dumps(stac_catalog(years), indent=1).encode(), "application/json")
    return [*written, target]


def read_column(path: str):
    """A column's GeoParquet file as a GeoDataFrame (without the vectors) and its ``(N, D)`` float32 matrix."""
    import geopandas as gpd  # deferred: heavy, and most commands never read a column back

    data = read_bytes(path)
    vectors = vector_matrix(pq.read_table(io.BytesIO(data), columns=["embeddings"])["embeddings"])
    names = [n for n in pq.read_schema(io.BytesIO(data)).names if n not in ("embeddings", "bbox")]
    return gpd.read_parquet(io.BytesIO(data), columns=names), vectors
