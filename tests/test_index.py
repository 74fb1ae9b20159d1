"""LanceDB ingest and search against brute force."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from builders import brute_force, built_index, dead_pid, table_chips, write_column, write_years
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wcembed.core import contract, store
from wcembed.core.contract import FileMetadata
from wcembed.core.errors import BadParameterError, IngestError, UnknownChipError
from wcembed.core.grid import Grid, chip_id
from wcembed.explore.data.index import ChipIndex, query_vector
from wcembed.explore.data.ingest import ingest
from wcembed.explore.data.kept import kept_vectors, unit_vectors

DIM = 32


@pytest.fixture
def db(tmp_path):
    out = tmp_path / "emb"
    write_years(out, range(1150, 1160))
    report = ingest(out, tmp_path / "db")
    assert report.rows == 2 * 10 * 20 and report.files_added == 20
    return out, tmp_path / "db"


def test_exact_search_equals_numpy_brute_force(db):
    _, path = db
    idx = ChipIndex(path)
    q = np.random.default_rng(5).normal(size=DIM).astype(np.float32)
    res = idx.by_vector(q, k=10)
    ids, dist = brute_force(idx, q, 10)
    assert res["chip_id"].tolist() == ids
    np.testing.assert_allclose(res["distance"], dist, atol=1e-5)
    assert res.crs.equals("OGC:CRS84") and list(res["rank"]) == list(range(1, 11))
    res20 = idx.by_vector(q, k=5, year=2021)
    ids20, _ = brute_force(idx, q, 5, mask=lambda t: np.array(t["year"].to_pylist()) == 2021)
    assert res20["chip_id"].tolist() == ids20


def test_search_by_chip_point_examples_and_filters(db):
    _, path = db
    idx = ChipIndex(path)
    target = "2020-1155-0290"
    res = idx.by_chip(target, k=5)
    assert target not in res["chip_id"].tolist() and len(res) == 5
    grid = Grid(["N37W076"])
    lon, lat = grid.chip_center(1155, 290)
    assert idx.chip_at(lon, lat, 2020) == target
    assert (
        idx.by_point(lon, lat, k=5, year=2020)["chip_id"].tolist()
        == idx.by_chip(target, k=5, year=2020)["chip_id"].tolist()
    )
    pos, neg = ["2020-1155-0290", "2020-1156-0281"], ["2021-1151-0299"]
    q = query_vector(idx.vectors(pos), idx.vectors(neg))
    ex = idx.by_examples(pos, neg, k=8)
    ids, _ = brute_force(idx, q, 8, mask=lambda t: ~np.isin(t["chip_id"].to_pylist(), pos + neg))
    assert ex["chip_id"].tolist() == ids
    w, s, e, n = grid.chip_bounds(1152, 285)
    inside = idx.by_vector(q, k=50, bbox=(w, s, e, n))
    assert set(inside["column"]) == {1152} and set(inside["row"]) == {285}
    with pytest.raises(UnknownChipError):
        idx.vectors(["nope"])


def test_missing_chips_are_the_same_by_lookups_and_by_one_pass(db, monkeypatch):
    """Beyond LOOKUP_MOST ids, one pass over the chip ids of their years finds the same missing chips, in the
    order given, as the lookups do (ids of another year, off the grid, and strings that are no chip id)."""
    from wcembed.explore.data import index as index_module

    _, path = db
    idx = ChipIndex(path)
    have = idx.table.to_arrow()["chip_id"].to_pylist()
    asked = [have[3], "2020-1150-9999", have[200], "2019-1150-0283", "nope", have[0], "2021-0001-0001"]
    by_lookups = idx.missing(asked)
    assert by_lookups == ["2020-1150-9999", "2019-1150-0283", "nope", "2021-0001-0001"]
    monkeypatch.setattr(index_module, "LOOKUP_MOST", 2)
    assert idx.missing(asked) == by_lookups
    assert idx.missing(asked[:1] + asked[2:3] + asked[5:6]) == []


def test_ingest_is_incremental_and_never_duplicates(db):
    out, path = db
    again = ingest(out, path)
    assert (again.files_added, again.files_replaced, again.files_unchanged, again.rows) == (0, 0, 20, 400)
    write_column(out, 2020, 1160, np.random.default_rng(1), rows=range(280, 287))
    new = ingest(out, path)
    assert new.files_added == 1 and new.rows == 407
    write_column(out, 2020, 1160, np.random.default_rng(2), rows=range(280, 283))  # rewritten, fewer rows
    changed = ingest(out, path)
    assert changed.files_replaced == 1 and changed.rows == 403
    ids = ChipIndex(path).table.to_arrow()["chip_id"].to_pylist()
    assert len(ids) == len(set(ids))


def test_chip_at_a_point_is_the_grids_answer_at_tile_and_column_edges(tmp_path):
    """Points on chip, column and tile edges: the index's answer (arithmetic + lookup) is the grid's."""
    from wcembed.core.grid import CHIP_PX
    from wcembed.core.product import PX_PER_DEGREE

    rng = np.random.default_rng(0)
    grid = Grid(["N37W076", "N37W075", "N36W076"])
    columns = sorted({grid.chip_at(-75.0, 37.5)[0] + d for d in (-1, 0, 1)})  # across the tile edge lon -75
    for year in (2020, 2021):
        for c in columns:
            write_column(tmp_path / "emb", year, c, rng, rows=grid.rows(c))
    ingest(tmp_path / "emb", tmp_path / "db")
    idx = ChipIndex(tmp_path / "db")
    px = 1 / PX_PER_DEGREE
    w, s, e, n = grid.chip_bounds(columns[1], 300)
    points = [(-75.0, 37.0), (-75.0, 37.0 + px / 2), (w, n), (w, s), (e, n), (w + px / 3, s + px / 3)]
    points += [(-75.0 - k * CHIP_PX * px, 36.5) for k in range(-1, 2)]  # on column edges
    for lon, lat in points:
        c, r = grid.chip_at(lon, lat)
        want = chip_id(2021, c, r) if c in columns and (c, r) in grid else None
        assert idx.chip_at(lon, lat, 2021) == want, (lon, lat)
        if want:
            assert idx.footprint(want).bounds == grid.chip_bounds(c, r)
            assert idx.chip_at(lon, lat) == chip_id(2020, c, r)  # no year: the first year that has it
    assert idx.chip_at(-100.0, 37.5) is None and idx.chip_at(-130.0, 55.0) is None


def test_ingest_after_a_crash_never_duplicates_and_indexes_ids(db):
    """A rerun that finds rows the file list does not know (an ingest killed before it recorded them)."""
    import lancedb

    out, path = db
    lancedb.connect(str(path)).create_table(
        "files", pa.table({"path": pa.array([], pa.string()), "size": pa.array([], pa.int64())}), mode="overwrite"
    )
    again = ingest(out, path)
    assert again.files_added == 20 and again.rows == 400
    ids = ChipIndex(path).table.to_arrow()["chip_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 400
    indexed = {i.columns[0]: i.index_type for i in ChipIndex(path).table.list_indices()}
    assert indexed["chip_id"] == "BTree" and indexed["year"] == "Bitmap"


@pytest.mark.slow
def test_ann_index_recall_at_10(tmp_path):
    rng = np.random.default_rng(3)
    out = tmp_path / "emb"
    centres = rng.normal(size=(40, DIM))
    for column in range(1150, 1170):  # 20 files x 1000 rows, clustered like real embeddings
        write_column(out, 2020, column, rng, rows=range(1000))
        path = store.output_path(out, 2020, column)

        t = pq.read_table(path)
        vec = (centres[rng.integers(0, 40, 1000)] + 0.3 * rng.normal(size=(1000, DIM))).astype(np.float32)
        t = t.set_column(
            t.schema.get_field_index("embeddings"),
            "embeddings",
            pa.FixedSizeListArray.from_arrays(pa.array(vec.ravel()), DIM),
        )
        store.write_bytes_atomic(path, contract.parquet_bytes(t))
    report = ingest(out, tmp_path / "db", ann_min_rows=10_000)
    idx = ChipIndex(tmp_path / "db")
    assert report.rows == 20_000 and idx.table.list_indices()
    hits = 0
    picks = rng.choice(20_000, size=50, replace=False)  # queries drawn from the data, as a click draws them
    rows = idx.table.to_arrow().select(["chip_id"]).take(picks)["chip_id"].to_pylist()
    for chip in rows:
        q = idx.vectors([chip])[0]
        ann = set(idx.by_vector(q, k=10, year=2020, exclude=[chip])["chip_id"])
        exact = set(idx.by_vector(q, k=10, year=2020, exclude=[chip], exact=True)["chip_id"])
        hits += len(ann & exact)
    assert hits / (10 * len(rows)) >= 0.95


def test_unreadable_files_are_named_and_the_rest_ingested(tmp_path):

    rng = np.random.default_rng(0)
    out = tmp_path / "emb"
    paths = [write_column(out, 2020, c, rng, rows=range(280, 290)) for c in range(1150, 1156)]
    good = {p: Path(p).read_bytes() for p in paths}
    Path(paths[1]).write_bytes(good[paths[1]][: len(good[paths[1]]) // 2])  # truncated
    Path(paths[4]).write_bytes(b"PAR1 this is not parquet PAR1")  # corrupt
    with pytest.raises(IngestError) as info:
        ingest(out, tmp_path / "db")
    message = str(info.value)
    assert paths[1] in message and paths[4] in message and "2 of 6 files" in message
    assert info.value.report.rows == 40 and set(info.value.report.failed) == {paths[1], paths[4]}
    assert len(ChipIndex(tmp_path / "db")) == 40  # the four good files
    for p in (paths[1], paths[4]):
        Path(p).write_bytes(good[p])  # repaired: the next ingest takes exactly those
    report = ingest(out, tmp_path / "db")
    assert (report.files_added, report.files_unchanged, report.rows, report.failed) == (2, 4, 60, {})
    ids = ChipIndex(tmp_path / "db").table.to_arrow()["chip_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 60


def test_a_file_with_a_nan_embedding_is_named_and_the_rest_ingested(tmp_path):

    class WithNaN:  # the vectors of a column, one of them NaN (a model or writer gone wrong)
        def normal(self, size):
            x = np.random.default_rng(1).normal(size=size)
            x[3, 5] = np.nan
            return x

    out = tmp_path / "emb"
    write_column(out, 2020, 1150, np.random.default_rng(0), rows=range(280, 290))
    bad = write_column(out, 2020, 1151, WithNaN(), rows=range(280, 290))
    with pytest.raises(IngestError, match="the embedding of chip 2020-1151-0283 is not finite") as info:
        ingest(out, tmp_path / "db")
    assert set(info.value.report.failed) == {bad} and len(ChipIndex(tmp_path / "db")) == 10


@pytest.mark.parametrize(("value", "length"), [(0.0, "length 0"), (3e38, r"length 1\.7e\+39")])
def test_a_file_with_an_embedding_without_direction_is_named_and_the_rest_ingested(tmp_path, value, length):
    """All-zero or 3e38 embeddings are finite but have no direction: such a chip would vanish from every
    search, and a search from it would find nothing. The file is refused, naming the chip."""

    class Degenerate:
        def normal(self, size):
            x = np.random.default_rng(1).normal(size=size)
            x[2] = value
            return x

    out = tmp_path / "emb"
    write_column(out, 2020, 1150, np.random.default_rng(0), rows=range(280, 290))
    bad = write_column(out, 2020, 1151, Degenerate(), rows=range(280, 290))
    with pytest.raises(IngestError, match=f"chip 2020-1151-0282 has {length}: no direction") as info:
        ingest(out, tmp_path / "db")
    assert set(info.value.report.failed) == {bad} and len(ChipIndex(tmp_path / "db")) == 10


def test_a_killed_first_ingest_gets_its_indexes_on_the_rerun(tmp_path):
    """A first ingest killed after recording its files but before its scalar indexes: the rerun finds every
    file unchanged and builds the indexes all the same."""
    out = tmp_path / "emb"
    write_column(out, 2020, 1150, np.random.default_rng(0), rows=range(280, 290))
    ingest(out, tmp_path / "db")
    table = ChipIndex(tmp_path / "db").table
    for index in table.list_indices():
        if index.columns[0] != "chip_id":
            table.drop_index(index.name)  # as a kill right after the table and its first index appeared
    assert {i.columns[0] for i in table.list_indices()} == {"chip_id"}
    report = ingest(out, tmp_path / "db")
    assert report.files_unchanged == 1
    assert {i.columns[0] for i in ChipIndex(tmp_path / "db").table.list_indices()} == {"chip_id", "year", "column"}


@pytest.mark.slow
def test_an_ingest_killed_midway_leaves_a_table_that_opens_and_a_rerun_completes(tmp_path):
    import os

    out = tmp_path / "emb"
    write_years(out, range(1100, 1160))
    db = tmp_path / "db"
    code = (
        "import sys; from wcembed.explore.data.ingest import ingest; ingest(sys.argv[1], sys.argv[2], batch_rows=100)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(out), str(db)])
    versions = db / "chips.lance" / "_versions"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(versions.glob("*"))) < 6:  # a few batches in
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = ChipIndex(db)  # the table opens
    assert 0 < len(partial) < 2 * 60 * 20
    report = ingest(out, db)
    ids = ChipIndex(db).table.to_arrow()["chip_id"].to_pylist()
    assert report.rows == len(ids) == len(set(ids)) == 2 * 60 * 20  # complete, no chip twice


@pytest.mark.slow
def test_a_replacing_ingest_killed_midway_leaves_each_column_whole_and_a_rerun_completes(tmp_path):
    """``index --replace`` of every column by files of another folder (10 chips a column where the set held 20),
    killed after a few batches: each (year, column) holds either its old 20 chips or its new 10, never a part
    or both; the rerun replaces the rest and the files table names the new files."""
    import os

    from wcembed.explore.data.table import connect, set_tables

    old, new, db = tmp_path / "old", tmp_path / "new", tmp_path / "db"
    write_years(old, range(1100, 1160))
    ingest(old, db)
    write_years(new, range(1100, 1160), rows=range(280, 290))
    code = (
        "import sys; from wcembed.explore.data.ingest import ingest; "
        "ingest(sys.argv[1], sys.argv[2], batch_rows=100, replace=True)"
    )
    versions = db / "chips.lance" / "_versions"
    start = len(list(versions.glob("*")))
    proc = subprocess.Popen([sys.executable, "-c", code, str(new), str(db)])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(versions.glob("*"))) < start + 4:  # a few batches in
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    chips = ChipIndex(db).table.to_arrow().to_pandas()
    per_column = chips.groupby(["year", "column"]).size()
    assert len(per_column) == 2 * 60 and set(per_column) <= {10, 20}, per_column.value_counts()
    assert 0 < (per_column == 10).sum() < 2 * 60  # killed midway: some replaced, some not
    assert chips["chip_id"].is_unique
    report = ingest(new, db, replace=True)
    chips = ChipIndex(db).table.to_arrow().to_pandas()
    assert report.rows == len(chips) == 2 * 60 * 10 and chips["chip_id"].is_unique
    recorded = connect(db).open_table(set_tables("wcembed")[1]).to_arrow()["path"].to_pylist()
    assert len(recorded) == 2 * 60 and all(str(new) in p for p in recorded)


def test_diverse_results_are_spread_out_and_start_with_the_plain_first(tmp_path):
    """On a smooth field (each chip's vector close to its neighbours', as a field continuing into the next
    chips), plain results crowd around the query; diverse ones are at least 3 chips apart."""
    out = tmp_path / "emb"
    rng = np.random.default_rng(3)
    grid = Grid(["N37W076"])
    centres = rng.normal(size=(6, DIM))  # a few "land covers" blended smoothly over the grid
    for column in range(1150, 1170):
        rows = list(range(280, 300))
        weights = np.array([[np.cos(0.3 * column + i) + np.sin(0.25 * r * (i + 1)) for i in range(6)] for r in rows])
        vectors = (weights @ centres + 0.05 * rng.normal(size=(len(rows), DIM))).astype(np.float32)
        meta = FileMetadata({"dimension": DIM}, {"year": 2020, "column": column})
        table = contract.embeddings_table(
            chip_ids=[chip_id(2020, column, r) for r in rows],
            year=2020,
            columns=np.full(len(rows), column),
            rows=np.array(rows),
            bounds=np.array([grid.chip_bounds(column, r) for r in rows]),
            valid_fraction=np.ones(len(rows)),
            embeddings=vectors,
            metadata=meta,
        )
        store.write_bytes_atomic(store.output_path(out, 2020, column), contract.parquet_bytes(table))
    ingest(out, tmp_path / "db")
    idx = ChipIndex(tmp_path / "db")
    plain = idx.by_chip("2020-1160-0290", k=10)
    spread = idx.by_chip("2020-1160-0290", k=10, diverse=True)

    def adjacent(res) -> int:
        cr = list(zip(res["column"], res["row"], strict=True))
        return sum(max(abs(a - c), abs(b - d)) < 3 for i, (a, b) in enumerate(cr) for c, d in cr[i + 1 :])

    assert adjacent(plain) > 0  # the plain ranking crowds (else this test shows nothing)
    assert adjacent(spread) == 0 and len(spread) == 10
    assert spread["chip_id"][0] == plain["chip_id"][0] and list(spread["rank"]) == list(range(1, 11))
    assert spread["distance"].is_monotonic_increasing
    assert set(spread["chip_id"]) - set(plain["chip_id"])  # others than the plain ten


def test_a_diverse_search_returns_the_columns_of_a_plain_one(db):
    """Footprints, centres and bboxes of diverse results come from grid arithmetic: equal to the stored ones."""
    _, path = db
    idx = ChipIndex(path)
    q = np.random.default_rng(8).normal(size=DIM).astype(np.float32)
    spread = idx.by_vector(q, k=5, diverse=2)
    stored = idx.chips(list(spread["chip_id"]))
    assert list(spread.columns) == list(idx.by_vector(q, k=5).columns)
    for col in ("lon", "lat", "xmin", "ymin", "xmax", "ymax", "valid_fraction", "year", "row"):
        np.testing.assert_array_equal(spread[col].to_numpy(), stored[col].to_numpy(), err_msg=col)
    assert all(a.equals_exact(b, 0) for a, b in zip(spread.geometry, stored.geometry, strict=True))


def _unit_f16(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)


def test_a_table_made_again_at_the_same_version_is_not_served_the_old_vectors(tmp_path, monkeypatch):
    """A set deleted and ingested again from other files ends at the same version number: its kept unit vectors
    are those of the new table (the query chip is most similar to itself), never the old table's, also where
    the check of a sample of rows against the table would not see the difference (one chip of a million)."""
    from builders import synthetic_index
    from wcembed.explore.compute.vectors import YearVectors
    from wcembed.explore.data.table import connect, set_tables

    chip = "2020-1156-0288"

    def vectors(change: bool):
        def of(y, c, r):
            return np.random.default_rng([c, r, 1, 7 if change and (c, r) == (1156, 288) else 0]).normal(size=8)

        return of

    first = synthetic_index(tmp_path / "a", vectors(False))
    version = first.table.version
    YearVectors.load(first, 2020)  # kept beside the database
    conn = connect(first.db)
    for name in set_tables("wcembed"):
        conn.drop_table(name)
    synthetic_index(tmp_path / "b", vectors(True))  # the same chips, one of them changed
    monkeypatch.setattr("wcembed.explore.data.kept.agrees_with_table", lambda *a: True)  # a sample that missed it
    ingest(tmp_path / "b" / "emb", first.db)
    again = ChipIndex(first.db)
    assert again.table.version == version  # the same number, another table
    new = YearVectors.load(again, 2020)
    assert new.similarity(again.vectors([chip])[0]).value_at(*again.footprint(chip).centroid.coords[0]) > 0.999


def test_ingest_keeps_each_years_unit_vectors_and_a_new_version_replaces_them(db, caplog, monkeypatch):
    """The region layers' float16 unit vectors are kept beside the database by ingest, read back as they
    were made, replaced when the table changes, and passed over (with a warning) when damaged or
    unwritable: the table stays the truth. A killed writer's leftovers go with the next write."""
    out, path = db
    idx = ChipIndex(path)
    kept = path / "unit_vectors"
    version = idx.table.version
    assert sorted(p.name for p in kept.iterdir()) == sorted(kept_vectors(idx, y).path(part).name for y in (2020, 2021)
                                                            for part in ("cells", "vectors"))  # fmt: skip
    assert kept_vectors(idx, 2020).path("cells").name.startswith(f"2020-v{version}-t")
    table_read = idx.batches
    idx.batches = None  # kept: the table is not read
    columns, rows, x = unit_vectors(idx, 2021)
    idx.batches = table_read
    assert x.dtype == np.float16 and x.shape == (200, DIM)
    ids = [chip_id(2021, int(c), int(r)) for c, r in zip(columns, rows, strict=True)]
    np.testing.assert_array_equal(x, _unit_f16(idx.vectors(ids)))  # each row: its chip's vector, unit, float16
    with monkeypatch.context() as m:  # an ingest with nothing new sees that they are kept, and reads none
        m.setattr("wcembed.explore.data.kept._read_npy", None)
        assert ingest(out, path).files_unchanged == 20

    write_column(out, 2021, 1160, np.random.default_rng(9), rows=range(280, 300))  # a new column: a new version
    ingest(out, path)
    idx = ChipIndex(path)
    assert idx.table.version > version and not list(kept.glob(f"*-v{version}-*"))  # the old ones are gone
    columns, rows, x = unit_vectors(idx, 2021)
    assert len(x) == 220 and 1160 in set(columns.tolist())

    target = kept_vectors(idx, 2021).path("vectors")
    target.write_bytes(b"\x93NUMPY damaged")
    stale = target.with_name(f".{target.name}.{dead_pid()}.0badc0de.tmp")  # a writer killed mid-write
    live = target.with_name(f".{target.name}.{os.getpid()}.0a11ve00.tmp")  # a writer still at work
    for p in (stale, live):
        p.write_bytes(b"half")
    with caplog.at_level("WARNING"):
        again = unit_vectors(idx, 2021)
    assert "cannot be read" in caplog.text and not stale.exists() and live.exists()
    np.testing.assert_array_equal(again[2], x)  # read from the table, and kept again
    np.testing.assert_array_equal(np.load(target), x)

    cells_path = kept_vectors(idx, 2021).path("cells")
    rng = np.random.default_rng(3)
    damages = {  # the header intact, the data not: each is found against the table and written again
        "random bytes": lambda: np.save(target, rng.integers(0, 2**16, x.shape).astype(np.uint16).view(np.float16)),
        "valid float16 noise": lambda: np.save(target, _unit_f16(rng.normal(size=x.shape))),
        "shuffled cells": lambda: np.save(cells_path, np.load(cells_path)[:, rng.permutation(len(x))]),
    }
    for damage, do in damages.items():
        do()
        caplog.clear()
        with caplog.at_level("WARNING"):
            got = unit_vectors(idx, 2021)
        assert "do not agree with the table" in caplog.text, damage
        np.testing.assert_array_equal(got[2], x)
        np.testing.assert_array_equal(np.load(target), x)  # kept again, right

    shutil.rmtree(kept)
    kept.write_text("not a folder")  # nowhere to keep them: read from the table each time, with a warning
    caplog.clear()
    with caplog.at_level("WARNING"):
        np.testing.assert_array_equal(unit_vectors(idx, 2021)[2], x)
    assert "cannot keep the unit vectors of 2021" in caplog.text


@pytest.fixture
def built(tmp_path):
    """20 synthetic column files (random 32-d vectors, not embeddings) ingested into a database."""
    return built_index(tmp_path)


PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**6), 10**6))


def test_api_inputs_that_used_to_raise_other_exceptions(built):
    _, db = built
    idx = ChipIndex(db)
    with pytest.raises(BadParameterError, match="positive example"):
        idx.by_examples([])
    injected = ("-180 OR year = 2021 OR xmax > -180", 30, -60, 50)
    with pytest.raises(BadParameterError, match="not a bbox"):
        idx.by_vector(np.ones(32, np.float32), bbox=injected, year=2020)
    w, s, e, n = idx.footprint("2020-1150-0283").bounds
    bowtie = shapely.Polygon([(w, s), (e, n), (e, s), (w, n)])  # self-intersecting: what it encloses counts
    assert "2020-1150-0283" in idx.chips_in(bowtie, 2020)
    with pytest.raises(BadParameterError, match="empty"):
        idx.chips_in(shapely.Polygon(), 2020)


# The synthetic index's chips (columns 1150-1151, rows 280-289) and a margin around them, in degrees.
_GRID = Grid(["N37W076"])
DATA_W, _, _, DATA_N = _GRID.chip_bounds(1150, 280)
_, DATA_S, DATA_E, _ = _GRID.chip_bounds(1151, 289)
near_lon = st.floats(DATA_W - 0.05, DATA_E + 0.05)
near_lat = st.floats(DATA_S - 0.05, DATA_N + 0.05)


@PROPS
@given(coords=st.lists(st.tuples(numbers, numbers), min_size=0, max_size=7))
def test_any_drawing_gives_chips_or_a_package_error(built, coords):
    """Any drawing (degenerate, far away, infinite): a list of chip ids or BadParameterError, nothing else."""
    _, db = built
    idx = ChipIndex(db)
    try:
        polygon = shapely.Polygon([(float(x), float(y)) for x, y in coords]) if len(coords) >= 3 else shapely.Polygon()
    except (ValueError, shapely.errors.GEOSException):
        return  # not a polygon at all: nothing the map can draw
    with contextlib.suppress(BadParameterError):
        got = idx.chips_in(polygon, 2020)
        assert set(got) <= table_chips(idx, 2020, lambda f: True)


@PROPS
@given(coords=st.lists(st.tuples(near_lon, near_lat), min_size=3, max_size=7))
def test_a_drawing_over_the_data_gives_the_chips_it_overlaps(built, coords):
    """A drawing over the data gives exactly the year's chips whose stored footprint it overlaps with a
    positive area (a self-intersecting one: what it encloses; a drawing of no area: none)."""
    _, db = built
    idx = ChipIndex(db)
    polygon = shapely.Polygon(coords)
    area = shapely.make_valid(polygon)
    want = table_chips(idx, 2020, lambda f: shapely.intersection(f, area).area > 0)
    got = idx.chips_in(polygon, 2020)
    assert len(got) == len(set(got)) and set(got) == want


def _valid_box(bbox) -> bool:
    try:
        w, s, e, n = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return False
    finite = all(np.isfinite([w, s, e, n]))
    return finite and -180 <= w <= e <= 180 and -90 <= s <= n <= 90


boxes = st.tuples(near_lon, near_lat, near_lon, near_lat).map(lambda b: (min(b[0], b[2]), min(b[1], b[3]),
                                                                        max(b[0], b[2]), max(b[1], b[3])))  # fmt: skip


@PROPS
@given(
    bbox=boxes | st.lists(numbers | st.text(max_size=12), min_size=0, max_size=5),
    year=st.sampled_from([2020, 2021]) | numbers | st.text(max_size=5),
)
def test_filter_values_give_the_nearest_in_the_box_or_a_package_error(built, bbox, year):
    """A valid box (four numbers in degrees, west <= east, south <= north) and year give the 3 chips of that
    year overlapping the box nearest the query (all of them when fewer), as NumPy finds them; anything else
    BadParameterError."""
    _, db = built
    idx = ChipIndex(db)
    query = np.ones(32, np.float32)
    valid = _valid_box(bbox) and not isinstance(year, (bool, str)) and year in (2020, 2021)
    if not valid:
        with pytest.raises(BadParameterError):
            idx.by_vector(query, k=3, bbox=bbox, year=year)
        return
    w, s, e, n = (float(v) for v in bbox)
    inside = table_chips(idx, int(year), lambda f: f.bounds[2] > w and f.bounds[0] < e and f.bounds[3] > s
                          and f.bounds[1] < n)  # fmt: skip
    want, _ = brute_force(idx, query, 3, mask=lambda t: np.isin(t["chip_id"].to_numpy(zero_copy_only=False),
                                                                 list(inside)))  # fmt: skip
    res = idx.by_vector(query, k=3, bbox=bbox, year=year, exact=True)
    assert list(res["chip_id"]) == want
