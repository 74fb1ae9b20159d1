"""What tests build, defined once: the tiny untrained encoder, and indexes of sample columns.

* :func:`tiny_model`: a small untrained Clay v0 encoder (64-d, 2 layers), for tests of the machinery,
  never of Clay; its "UNTRAINED" warning is expected and checked here.
* :func:`brute_force`: the exact nearest chips by NumPy, what search results are checked against.
* :func:`mosaic_chip`: a chip's pixels cut from each tile by the file's own transform, what chip reads
  are checked against.
* :func:`dead_pid`: the process id of a process that has ended, as a killed writer's.
* :func:`write_column`, :func:`write_years`: column files of random vectors (our writer), for search tests.
* :func:`check_emb_item`, :func:`check_emb_collection`: the STAC embeddings extension's rules, as asserts.
* :func:`link_locked`: a fresh virtual environment given this one's installed copies of a lock's
  distributions (linked, not reinstalled), so that ``pip install -r`` the lock finds them satisfied.
* :func:`run_papermill`: a committed notebook run by papermill's command line in a new process.
* :func:`write_corner_tiles`: synthetic tiles (:data:`CORNER_TILES`) meeting at a corner.
* :func:`table_chips`: the chips of an index whose stored footprint passes a test.
* :func:`record_only_file`: a Parquet file whose only content is a column file's metadata record, complete
  or partial: what ``resubmit-missing`` reads of each file.
* :func:`synthetic_index`: real per-column GeoParquet files (:func:`wcembed.core.store.write_column`) on the real
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
import rasterio
from rasterio.errors import WindowError
from rasterio.windows import Window, from_bounds
from wcembed import NOTEBOOKS
from wcembed.core import contract, store
from wcembed.core.contract import EMB_EXTENSION, FileMetadata, column_extent, column_table
from wcembed.core.grid import Grid, chip_id
from wcembed.core.product import Tile, tile_key
from wcembed.pipeline.model import ClayConfig
from wcembed.pipeline.weights import LoadedModel, load_model
from wcembed.tools.sample import write_tile


def mosaic_chip(root: str | Path, grid: Grid, chip: tuple[int, int], year: int = 2020) -> np.ndarray:
    """Chip ``(column, row)`` ``(4, H, W)`` uint16 cut from the year's files of the grid's tiles under the
    folder ``root`` by each file's own transform (``rasterio.windows.from_bounds`` of the chip's bounds),
    nodata 0 where no tile lies: an independent reading of what the pipeline reads."""
    cs = grid.chip_size
    out = np.zeros((4, cs, cs), np.uint16)
    for tile in grid.tiles:
        with rasterio.open(Path(root, tile_key(tile.name, year))) as ds:
            want = from_bounds(*grid.chip_bounds(*chip), ds.transform).round_offsets().round_lengths()
            try:
                part = want.intersection(Window(0, 0, ds.width, ds.height))
            except WindowError:  # the chip is not on this tile
                continue
            y, x = int(part.row_off - want.row_off), int(part.col_off - want.col_off)
            out[:, y : y + int(part.height), x : x + int(part.width)] = ds.read(window=part)
    return out


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
    """A :class:`~wcembed.explore.data.index.ChipIndex` at ``root/db`` of the chips ``columns`` x ``rows`` of the
    sample tile's 512 px grid in ``years``, each with ``vectors(year, column, row)`` (a 1-D float array),
    written as the real column files and ingested. Returns the index."""
    from wcembed.explore.data.index import ChipIndex
    from wcembed.explore.data.ingest import ingest

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


def link_locked(venv: Path, lock: Path) -> list[str]:
    """Link this environment's installed files of every ``name==version`` of ``lock`` into the fresh
    virtual environment ``venv``'s site-packages (top-level packages, modules, ``.libs`` and ``.dist-info``
    folders; no scripts), after checking that the installed version is the pinned one. Returns the names.
    Nothing else of this environment is visible there: ``pip install -r lock --no-index`` then proves that
    the lock is complete (a missing dependency cannot be fetched) without copying gigabytes again."""
    from importlib.metadata import distribution

    from packaging.specifiers import SpecifierSet

    (site,) = (venv / "lib").glob("python3*/site-packages")
    pins = dict(
        line.split(";")[0].strip().split("==") for line in lock.read_text().splitlines() if line.strip()[:1] not in "#"
    )
    norm = {n.lower().replace("-", "_") for n in pins}
    own = [p.name.split("-")[0] for p in site.glob("*.dist-info") if p.name.split("-")[0].lower() in norm]
    if own:  # the venv's own pip or setuptools: the lock's version replaces it
        subprocess.run([str(venv / "bin/python"), "-m", "pip", "uninstall", "-q", "-y", *own], check=True)
    names = []
    for name, version in pins.items():
        dist = distribution(name)
        pinned = SpecifierSet(f"=={version}")  # a build's local label (+cpu) matches its public pin
        assert pinned.contains(dist.version), f"{name} {dist.version} installed here, {version} in {lock.name}"
        tops = {Path(str(f)).parts[0] for f in dist.files or () if not str(f).startswith("..")}
        for top in tops - {"__pycache__"}:
            target = site / top
            if not target.exists():
                target.symlink_to(dist.locate_file(top))
        names.append(name)
    return names


def table_chips(idx, year: int | None, keep: Callable) -> set[str]:
    """Ids of an index's chips of ``year`` (any, if None) whose stored footprint (the table's WKB, a shapely
    polygon in degrees) passes ``keep``: what a query by place is checked against, without the grid."""
    import shapely

    rows = idx.table.to_arrow().select(["chip_id", "year", "geometry"]).to_pylist()
    return {r["chip_id"] for r in rows if year in (None, r["year"]) and keep(shapely.from_wkb(r["geometry"]))}


def record_only_file(year: int, column: int, *, complete: bool = True, weights: str = "untrained") -> bytes:
    """A one-row Parquet file carrying a column file's record (``complete`` or partial, as ``max_rows`` makes
    it; embedded with ``weights``), for tests of what reads the record alone (resubmit-missing, a rerun's
    skip)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    record = {"year": year, "column": column, "format": store.FORMAT_VERSION, "complete": complete}
    meta = FileMetadata({"dimension": 4, "weights": weights}, record)
    buf = io.BytesIO()
    pq.write_table(pa.table({"x": [1]}).replace_schema_metadata(meta.header()), buf)
    return buf.getvalue()


def write_column(out, year, column, rng, rows=range(10), dim=32, weights: str | None = None):
    """A GeoParquet file (our own writer) with random vectors: synthetic, for search tests (``weights``: the
    weights its record names, none by default)."""
    grid = Grid(["N37W076"])
    rows = list(rows)
    embedding = {"dimension": dim} | ({"weights": weights} if weights is not None else {})
    meta = FileMetadata(embedding, {"year": year, "column": column})
    table = contract.embeddings_table(
        chip_ids=[chip_id(year, column, r) for r in rows],
        year=year,
        columns=np.full(len(rows), column),
        rows=np.array(rows),
        bounds=np.array([grid.chip_bounds(column, r) for r in rows]),
        valid_fraction=np.ones(len(rows)),
        embeddings=rng.normal(size=(len(rows), dim)).astype(np.float32),
        metadata=meta,
    )
    path = store.output_path(out, year, column)
    store.write_bytes_atomic(path, contract.parquet_bytes(table))
    return path


def write_years(out, columns, rows=range(280, 300)) -> None:
    """Files of ``columns`` for 2020 and 2021 with random vectors."""
    rng = np.random.default_rng(0)
    for year in (2020, 2021):
        for column in columns:
            write_column(out, year, column, rng, rows=rows)


ITEM_EMB_FIELDS = {
    "emb:runtime_parameters", "emb:preprocessing", "emb:postprocessing", "emb:fit_for_use", "emb:spatial_coverage",
    "emb:uncertainty", "emb:quantization", "emb:energy",
}  # fmt: skip
COLLECTION_EMB_FIELDS = {
    "emb:type", "emb:dimensions", "emb:chip_layout", "emb:temporal_resolution", "emb:fit_for_use", "emb:uncertainty",
}  # fmt: skip


def check_emb_item(item: dict) -> dict:
    """Assert the extension's Item rules; return the properties."""
    assert EMB_EXTENSION in item["stac_extensions"] and item["type"] == "Feature"
    props = item["properties"]
    assert {k for k in props if k.startswith("emb:")} <= ITEM_EMB_FIELDS, "an emb: field outside the Item scope"
    assert "embeddings" in item["assets"], "Items MUST have an 'embeddings' asset"
    for key in ("emb:preprocessing", "emb:postprocessing"):
        if key in props:
            assert {"format", "expression"} <= set(props[key])  # a Processing extension expression
    return props


def check_emb_collection(collection: dict) -> None:
    """Assert the extension's Collection rules."""
    assert EMB_EXTENSION in collection["stac_extensions"] and collection["type"] == "Collection"
    assert {k for k in collection if k.startswith("emb:")} <= COLLECTION_EMB_FIELDS
    assert collection["emb:type"] in ("pixel", "chip") and collection["emb:dimensions"] >= 1
    assert isinstance(collection["data_type"], str)
    layout = collection.get("emb:chip_layout", {})
    assert set(layout) <= {"layout_type", "chip_size", "stride", "grid_id", "grid_definition"}
    assert layout.get("layout_type", "regular_grid") in ("regular_grid", "variable_grid", "named_grid")
    rels = {link["rel"] for link in collection["links"]}
    assert {"emb:model", "emb:source-data"} <= rels, "a Collection needs its model and source-data links"
    assert "embeddings" in collection.get("item_assets", {})


def wcembed(*args, **kw) -> subprocess.CompletedProcess:
    """``python -m wcembed ARGS`` in a new process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "wcembed", *map(str, args)], capture_output=True, text=True, **kw)


def one_line_error(done: subprocess.CompletedProcess, code: int = 65) -> str:
    """The stderr of a command that must fail with ``code`` and one line saying why, no traceback."""
    assert done.returncode == code, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def built_index(root: Path) -> tuple[Path, Path]:
    """Column files of random 32-d vectors (not embeddings) of two columns and two years under ``root/emb``,
    ingested into ``root/db``: returns both folders."""
    from wcembed.explore.data.ingest import ingest

    write_years(root / "emb", range(1150, 1152), rows=range(280, 290))
    ingest(root / "emb", root / "db")
    return root / "emb", root / "db"


def run_papermill(notebook: str, out: Path, params: dict, cwd: Path) -> str:
    """Execute ``notebooks/<notebook>`` with papermill's CLI in a new process, as a user would;
    return the executed notebook's text."""
    cmd = [sys.executable, "-m", "papermill", str(NOTEBOOKS / notebook), str(out), "--cwd", str(cwd)]
    for key, value in params.items():
        cmd += ["-p", key, str(value)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return Path(out).read_text()


CORNER_TILES = ("N40W101", "N40W100", "N39W101", "N39W100")
"""Synthetic tiles (random values, NOT imagery) meeting at lon -100, lat 40."""
CORNER_PX = 1536
"""Half-size of the synthetic data square around the shared corner, in px."""


def write_corner_tiles(root, tiles=CORNER_TILES, year: int = 2020, seed: int = 0) -> None:
    """Synthetic uint16 random data (not real imagery) in a square around the corner of 4 tiles."""
    rng = np.random.default_rng(seed)
    for name in tiles:
        t = Tile.from_name(name)
        # the corner (lon -100, lat 40) is at the tile's east/west and south/north edge
        col0 = 12000 - CORNER_PX if t.lon == -101 else 0
        row0 = 0 if t.lat == 39 else 12000 - CORNER_PX
        data = rng.integers(1, 10000, size=(4, CORNER_PX, CORNER_PX), dtype=np.uint16)
        write_tile(root / tile_key(t, year), t, data, Window(col0, row0, CORNER_PX, CORNER_PX), overviews=False)
