"""Ingest: nothing lost (a whole file is checked before it touches the table, a column is replaced in
one commit), nothing trusted by name (a file's name, metadata and rows must agree)."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from builders import built_index, write_column, write_years
from wcembed.core import store
from wcembed.core.errors import IngestError
from wcembed.explore.data.index import ChipIndex
from wcembed.explore.data.ingest import ingest

COLUMNS = range(1150, 1152)
ROWS = range(280, 290)
"""The columns and rows of :func:`builders.built_index`."""


@pytest.fixture
def built(tmp_path):
    """20 synthetic column files (random 32-d vectors, not embeddings) ingested into a database."""
    return built_index(tmp_path)


def rewrite(path: Path, *, dim: int | None = None, name_column: int | None = None) -> Path:
    """A copy of a column file with other vectors (``dim``), or under another column's name."""
    year, column = store.parse_output_path(str(path))
    target = Path(store.output_path(path.parent.parent, year, name_column or column))
    if dim is not None:
        write_column(path.parent.parent, year, column, np.random.default_rng(9), rows=ROWS, dim=dim)
    else:
        shutil.copy(path, target)
    return target


def test_a_file_of_another_vector_dimension_loses_nothing(built):
    out, db = built
    before = ChipIndex(db).table.to_arrow().sort_by("chip_id")
    bad = rewrite(Path(store.output_path(out, 2020, 1151)), dim=16)
    with pytest.raises(IngestError, match=r"16-d embeddings; the table's are 32-d") as err:
        ingest(out, db)
    assert str(bad) in str(err.value)
    after = ChipIndex(db)
    assert after.table.to_arrow().sort_by("chip_id").equals(before)  # every row still there, unchanged
    assert after.chip_at(*after.footprint("2020-1151-0285").centroid.coords[0], year=2020) == "2020-1151-0285"


def test_a_bad_file_among_new_files_is_named_and_the_others_are_ingested(tmp_path):
    out = tmp_path / "emb"
    write_years(out, COLUMNS, rows=ROWS)
    bad = rewrite(Path(store.output_path(out, 2021, 1150)), dim=16)
    with pytest.raises(IngestError, match="1 of 4 files") as err:
        ingest(out, tmp_path / "db")
    assert str(bad) in str(err.value) and err.value.report.files_added == 3
    assert len(ChipIndex(tmp_path / "db")) == 3 * len(ROWS)


def test_a_file_is_checked_against_its_name(built):
    out, db = built
    copy = rewrite(Path(store.output_path(out, 2020, 1150)), name_column=1160)
    with pytest.raises(IngestError, match="its name says year 2020, column 1160") as err:
        ingest(out, db)
    assert str(copy) in str(err.value)
    ids = ChipIndex(db).table.to_arrow()["chip_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 2 * len(COLUMNS) * len(ROWS)


def test_rows_that_contradict_their_file_are_refused(tmp_path):
    out = tmp_path / "emb"
    path = Path(write_column(out, 2020, 1150, np.random.default_rng(0), rows=ROWS))
    table = pq.read_table(path)
    ids = table["chip_id"].to_pylist()
    ids[3] = "2020-1150-0999"
    pq.write_table(table.set_column(0, "chip_id", pa.array(ids)), path)
    with pytest.raises(IngestError, match=r"chip id '2020-1150-0999' on row 283"):
        ingest(out, tmp_path / "db")


def test_a_replaced_column_has_exactly_the_new_rows(built):
    out, db = built
    write_column(out, 2020, 1150, np.random.default_rng(7), rows=range(282, 286))  # fewer chips, new vectors
    report = ingest(out, db)
    assert report.files_replaced == 1
    idx = ChipIndex(db)
    got = idx.table.to_arrow()
    ids = got["chip_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 2 * len(COLUMNS) * len(ROWS) - 6
    mine = sorted(c for c in ids if c.startswith("2020-1150-"))
    assert mine == [f"2020-1150-{r:04d}" for r in range(282, 286)]
    new = store.read_column(store.output_path(out, 2020, 1150))[1]
    np.testing.assert_array_equal(idx.vectors(mine), new)


def test_two_first_ingests_at_once_both_succeed_without_duplicates(tmp_path):
    out = tmp_path / "emb"
    write_years(out, COLUMNS, rows=ROWS)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "wcembed", "index", str(out), "--db", str(tmp_path / "db")],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0], [p.stderr.read()[-1500:] for p in procs]
    ids = ChipIndex(tmp_path / "db").table.to_arrow()["chip_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 2 * len(COLUMNS) * len(ROWS)


def test_any_number_of_sets(tmp_path):
    """Twelve sets (24 tables: LanceDB lists 10 names unless paged): every set is found with its files table
    (its weights known), and a re-index of unchanged files adds nothing."""
    out = tmp_path / "emb"
    for column in COLUMNS:
        write_column(out, 2020, column, np.random.default_rng(column), rows=ROWS)
    names = [f"set-{i:02d}" for i in range(12)]
    for name in names:
        ingest(out, tmp_path / "db", set=name)
    from wcembed.explore.data.table import DEFAULT_SET, TABLE, connect, sets_in, table_names

    assert sets_in(tmp_path / "db") == sorted(names)
    listed = table_names(connect(tmp_path / "db"))  # LanceDB's own listing, paged: the sets the folders say
    assert sorted(n.removeprefix(f"{TABLE}__") for n in listed if n.startswith(TABLE)) == sorted(names)
    assert DEFAULT_SET not in names
    last = ChipIndex(tmp_path / "db", set=names[-1])
    assert last.weights == {""} and len(last) == len(COLUMNS) * len(ROWS)  # its files table is found
    again = ingest(out, tmp_path / "db", set=names[-1])
    assert (again.files_added, again.files_replaced, again.files_unchanged) == (0, 0, len(COLUMNS))


def test_a_column_held_from_another_file_is_refused_or_replaced(built, tmp_path):
    """One set, one source: another folder's file of a (year, column) the set holds is refused (the set as it
    was); with ``replace`` it replaces the column, and the report says so with the chips before and after."""
    out, db = built
    before = ChipIndex(db).table.to_arrow().sort_by("chip_id")
    elsewhere = tmp_path / "elsewhere"
    write_column(elsewhere, 2020, 1150, np.random.default_rng(5), rows=range(280, 285))  # 5 chips, not 10
    with pytest.raises(IngestError, match=r"holds column 1150 of 2020 from .*emb.*--replace") as err:
        ingest(elsewhere, db)
    assert err.value.report.files_added == 0
    assert ChipIndex(db).table.to_arrow().sort_by("chip_id").equals(before)
    report = ingest(elsewhere, db, replace=True)
    assert (report.files_added, report.files_replaced, report.rows_before, report.rows) == (0, 1, 40, 35)
    assert "1 replaced" in str(report) and "35 chips in the table (40 before)" in str(report)
    from wcembed.explore.data.table import connect, set_tables

    recorded = connect(db).open_table(set_tables("wcembed")[1]).to_arrow()["path"].to_pylist()
    assert store.output_path(elsewhere, 2020, 1150) in recorded and store.output_path(out, 2020, 1150) not in recorded
    with pytest.raises(IngestError, match=r"from .*elsewhere") as err:  # the first folder's file: another source
        ingest(out, db)
    assert err.value.report.files_added == 0 and len(ChipIndex(db)) == 35


def test_a_set_never_mixes_weights(built, tmp_path):
    """A file of other weights than the set's is refused, even for a column the set lacks."""
    db = built[1]
    other = tmp_path / "other"
    write_column(other, 2021, 1160, np.random.default_rng(3), rows=ROWS, weights="clay-v1.5")
    with pytest.raises(IngestError, match=r"its weights are clay-v1\.5; set wcembed holds"):
        ingest(other, db)
    assert len(ChipIndex(db)) == 40 and ChipIndex(db).weights == {""}
    report = ingest(other, db, set="v15")  # a set of its own
    assert report.sets == {"v15": len(ROWS)}
    mixed = tmp_path / "mixed"  # two new files of two weights into a new set: the second is refused
    write_column(mixed, 2020, 1150, np.random.default_rng(4), rows=ROWS, weights="clay-v0.1")
    write_column(mixed, 2020, 1151, np.random.default_rng(5), rows=ROWS, weights="clay-v1.5")
    with pytest.raises(IngestError, match=r"1 of 2 files.*its weights are clay-v1\.5; set fresh holds clay-v0\.1"):
        ingest(mixed, db, set="fresh")
    assert ChipIndex(db, set="fresh").weights == {"clay-v0.1"}


def test_a_rewrite_of_the_same_size_is_ingested(built):
    """Unchanged is decided by content: a file rewritten with other vectors and the same size is read again."""
    out, db = built
    path = Path(store.output_path(out, 2020, 1151))
    size = path.stat().st_size
    for seed in range(200):  # random float32s do not compress: another draw often has the same size
        write_column(out, 2020, 1151, np.random.default_rng(1000 + seed), rows=ROWS)
        if path.stat().st_size == size:
            break
    else:
        pytest.skip("no rewrite of the same size found")
    report = ingest(out, db)
    assert report.files_replaced == 1 and report.files_unchanged == 3
    want = pq.read_table(path)["embeddings"].to_pylist()[0]
    got = ChipIndex(db).vectors(["2020-1151-0280"])[0]
    assert np.allclose(got, want)
