"""What tests build, defined once: the tiny untrained encoder, and indexes of sample columns.

* :func:`tiny_model`: a small untrained Clay v0 encoder (64-d, 2 layers), for tests of the machinery,
  never of Clay; its "UNTRAINED" warning is expected and checked here.
* :func:`brute_force`: the exact nearest chips by NumPy, what search results are checked against.
* :func:`dead_pid`: the process id of a process that has ended, as a killed writer's.
* :func:`record_only_file`: a Parquet file whose only content is a column file's metadata record, complete
  or partial: what ``resubmit-missing`` reads of each file.
* :func:`synthetic_index`: real per-column GeoParquet files (:func:`wcembed.store.write_column`) on the real
  grid of the sample tile, with vectors chosen by the test instead of an encoder, ingested into LanceDB:
  an index in a second, for tests of search and of the explorer's session.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from wcembed import store
from wcembed.contract import FileMetadata, column_extent, column_table
from wcembed.grid import Grid
from wcembed.pipeline.model import ClayConfig
from wcembed.pipeline.weights import LoadedModel, load_model

TINY = {"dim": 64, "depth": 2, "heads": 4, "dim_head": 16}
"""The tiny encoder's configuration (the rest is Clay v0's)."""


def tiny_model(**config) -> LoadedModel:
    """A small untrained encoder: :data:`TINY`, with ``config`` overriding it (e.g. ``image_size=128``)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_model(None, config=ClayConfig(**(TINY | config)), allow_untrained=True)
    assert any("UNTRAINED" in str(w.message) for w in caught), "untrained weights must say so"
    return model


def dead_pid() -> int:
    """The id of a process that has ended (a writer killed mid-write leaves files named with it)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


SAMPLE_TILE = "N37W076"
SAMPLE_COLUMNS = range(1154, 1160)
"""Columns of the 512 px grid that the sample scene covers."""


def synthetic_index(
    root: Path,
    vectors: Callable[[int, int, int], np.ndarray],
    years: tuple[int, ...] = (2020, 2021),
    columns=SAMPLE_COLUMNS,
    rows=range(286, 292),
    weights: str = "synthetic (test)",
):
    """A :class:`~wcembed.explore.index.ChipIndex` at ``root/db`` of the chips ``columns`` x ``rows`` of the
    sample tile's 512 px grid in ``years``, each with ``vectors(year, column, row)`` (a 1-D float array),
    written as the real column files and ingested. Returns the index."""
    from wcembed.explore.index import ChipIndex
    from wcembed.explore.ingest import ingest

    grid = Grid([SAMPLE_TILE])
    for year in years:
        for column in columns:
            vec = np.stack([vectors(year, column, r) for r in rows]).astype(np.float32)
            meta = FileMetadata(
                {"dimension": vec.shape[1], "weights": weights, "model": "none"},
                {"year": year, "column": column, "format": store.FORMAT_VERSION},
            )
            path = store.output_path(root / "emb", year, column)
            table = column_table(grid, year, column, [(r, 1.0) for r in rows], vec, meta)
            store.write_column(path, table, meta, column_extent(grid, column))
    ingest(root / "emb", root / "db")
    return ChipIndex(root / "db")


def brute_force(idx, query, k, mask=None):
    """The ``k`` rows of an index nearest ``query`` by cosine, by NumPy over the whole table (``mask(table)``:
    which rows count): their ids and cosine distances."""
    all_rows = idx.table.to_arrow()
    ids = np.array(all_rows["chip_id"].to_pylist())
    vecs = np.stack(all_rows["vector"].to_numpy(zero_copy_only=False))
    keep = np.ones(len(ids), bool) if mask is None else mask(all_rows)
    ids, vecs = ids[keep], vecs[keep]
    cos = vecs @ query / (np.linalg.norm(vecs, axis=1) * np.linalg.norm(query))
    order = np.argsort(1 - cos, kind="stable")[:k]
    return list(ids[order]), (1 - cos)[order]


def record_only_file(year: int, column: int, *, complete: bool = True) -> bytes:
    """A one-row Parquet file carrying a column file's record (``complete`` or partial, as ``max_rows`` makes
    it), for tests of what reads the record alone (resubmit-missing, a rerun's skip)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    record = {"year": year, "column": column, "format": store.FORMAT_VERSION, "complete": complete}
    meta = FileMetadata({"dimension": 4, "weights": "untrained"}, record)
    buf = io.BytesIO()
    pq.write_table(pa.table({"x": [1]}).replace_schema_metadata(meta.header()), buf)
    return buf.getvalue()
