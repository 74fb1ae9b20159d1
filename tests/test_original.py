"""The original 2024 run's files, written exactly as its code wrote them, ingested as their own embedding set
beside ours, and the two sets compared chip by chip."""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely
from builders import SAMPLE_COLUMNS, synthetic_index
from wcembed.core import original
from wcembed.core.errors import BadParameterError, IngestError, OutputError
from wcembed.core.grid import chip_bounds
from wcembed.explore.compute.compare import agreement, edge_distance, neighbour_overlap, overlap_summary, summary
from wcembed.explore.compute.layers import index_note
from wcembed.explore.data.index import ChipIndex
from wcembed.explore.data.ingest import ingest
from wcembed.pipeline import original as original_run

DIM = 16
ROWS = range(286, 292)
CHANGED = {(1155, 288), (1158, 290)}  # chips whose embeddings differ between the two sets (a known difference)


def ours(year: int, column: int, row: int) -> np.ndarray:
    return np.random.default_rng([column, row, year]).normal(size=DIM)


def theirs(year: int, column: int, row: int) -> np.ndarray:
    v = ours(year, column, row)
    return -v if (column, row) in CHANGED else v + 1e-4 * np.random.default_rng([column, row]).normal(size=DIM)


def write_originals(folder, skip=(), vectors=theirs, year=2020):
    """The original run's files of the sample's columns (chips of ``skip`` left out: a 0 pixel)."""
    for column in SAMPLE_COLUMNS:
        rows = [r for r in ROWS if (column, r) not in skip]
        original_run.write_original(folder, year, column, rows, np.stack([vectors(year, column, r) for r in rows]))


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory):
    """A database with our files (set wcembed) and the original run's of the same chips (original-2024), one
    chip of the latter skipped as the original scripts skipped a chip with a 0 pixel."""
    root = tmp_path_factory.mktemp("two_sets")
    synthetic_index(root, ours, years=(2020,), rows=ROWS, weights="clay-v0.1")
    write_originals(root / "orig", skip={(1157, 289)})
    report = ingest(root / "orig", root / "db")
    assert report.sets == {"original-2024": 35}
    return root


def test_files_are_written_as_the_original_code_wrote_them(tmp_path):
    """The original writer statement, run verbatim: a FixedShapeTensorArray handed to a GeoDataFrame is an object
    column to pandas, so the file holds list<element: float> (as the original run's files do)."""
    path = original_run.write_original(tmp_path, 2020, 1156, [286, 287], np.ones((2, DIM), np.float32))
    assert path.name == "worldcover_embeddings_2020_1156_v002.gpq" and path.parent.name == "2020"  # not padded
    table = pq.read_table(path)
    assert table.schema.field("embeddings").type == pa.list_(pa.field("element", pa.float32()))
    assert "chip_id" not in table.schema.names
    assert json.loads(table.schema.metadata[b"geo"])["version"] == "1.0.0"
    west, _, _, north = shapely.from_wkb(table["geometry"][0].as_py()).bounds
    assert west == -125.0 + original.PXSIZE * 1156 * 512  # the float pixel size: off the exact grid by float error
    assert abs(west - chip_bounds(1156, 286)[0]) < 1e-9 and abs(north - chip_bounds(1156, 286)[3]) < 1e-9


def writer_statement() -> str:
    """The original writer statement as :func:`~wcembed.pipeline.original.write_original` holds it (from
    ``gdf = gpd.GeoDataFrame(`` to its ``to_parquet`` line), dedented: run elsewhere exactly as written."""
    import inspect
    import textwrap

    source = inspect.getsource(original_run.write_original)
    start = source.index("    gdf = gpd.GeoDataFrame(")
    end = source.index("\n", source.index("gdf.to_parquet(", start))
    return textwrap.dedent(source[start:end])


def test_the_original_statement_with_the_libraries_of_2024_writes_what_ours_reads(tmp_path):
    """The writer statement, verbatim, run with pandas 2.1.4, pyarrow 15 and geopandas 0.14.1 (make setup's
    .cache/env-2024): its file holds list<element: float> as the file our libraries write with it does, and
    both read as the same rows."""
    from wcembed import ROOT

    python = ROOT / ".cache" / "env-2024" / "bin" / "python"
    assert python.exists(), "no .cache/env-2024: make setup installs requirements/original-2024.txt there"
    x = np.random.default_rng(4).normal(size=(3, DIM)).astype(np.float32)
    ours_path = original_run.write_original(tmp_path / "ours", 2020, 1156, [286, 287, 288], x)
    boxes = shapely.from_wkb(pq.read_table(ours_path)["geometry"].to_numpy()).tolist()
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "boxes.wkb").write_bytes(b"".join(len(b).to_bytes(4, "little") + b for b in shapely.to_wkb(boxes)))
    path = tmp_path / "2024" / "2020" / ours_path.name
    path.parent.mkdir(parents=True)
    script = f"""
import sys, numpy as np, pandas as pd, pyarrow as pa, geopandas as gpd, shapely
data = open({str(tmp_path / "boxes.wkb")!r}, "rb").read()
boxes, at = [], 0
while at < len(data):
    n = int.from_bytes(data[at:at + 4], "little")
    boxes.append(shapely.from_wkb(data[at + 4:at + 4 + n]))
    at += 4 + n
x, path = np.load({str(tmp_path / "x.npy")!r}), {str(path)!r}
{writer_statement()}
print(pd.__version__, pa.__version__, gpd.__version__)
"""
    done = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["2.1.4", "15.0.0", "0.14.1"]
    schema = pq.read_schema(path)
    assert schema.field("embeddings").type == pa.list_(pa.field("element", pa.float32()))
    assert schema.field("embeddings").type == pq.read_schema(ours_path).field("embeddings").type
    theirs_table, _ = original.read_as_ours(str(path), path.read_bytes())
    ours_table, _ = original.read_as_ours(str(ours_path), ours_path.read_bytes())
    assert theirs_table.equals(ours_table)


LAYOUTS = {
    "list<float>": lambda x: pa.array(list(x), pa.list_(pa.float32())),
    "large_list<float>": lambda x: pa.array(list(x), pa.large_list(pa.float32())),
    "fixed_size_list<float, D>": lambda x: pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1]),
    "fixed_shape_tensor": lambda x: pa.FixedShapeTensorArray.from_numpy_ndarray(x),
    "list<double>": lambda x: pa.array(list(x.astype(np.float64)), pa.list_(pa.float64())),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_list_layout_of_the_embeddings_is_read(tmp_path, layout):
    x = np.random.default_rng(1).normal(size=(2, DIM)).astype(np.float32)
    path = original_run.write_original(tmp_path, 2020, 1156, [286, 287], x)
    table = pq.read_table(path)
    table = table.set_column(0, "embeddings", LAYOUTS[layout](x))
    pq.write_table(table, path)
    ours, meta = original.read_as_ours(str(path), path.read_bytes())
    got = np.stack(ours["embeddings"].to_numpy(zero_copy_only=False))
    assert np.allclose(got, x, atol=1e-6) and meta.embedding["dimension"] == DIM


def test_a_row_of_another_length_is_refused_naming_it(tmp_path):
    path = original_run.write_original(tmp_path, 2020, 1156, [286, 287, 288], np.ones((3, DIM), np.float32))
    table = pq.read_table(path)
    rows = [[1.0] * DIM, [1.0] * DIM, [1.0] * (DIM - 1)]
    pq.write_table(table.set_column(0, "embeddings", pa.array(rows, pa.list_(pa.float32()))), path)
    with pytest.raises(OutputError, match=f"row 2's embedding has {DIM - 1} values, row 0's {DIM}"):
        original.read_as_ours(str(path), path.read_bytes())
    pq.write_table(table.set_column(0, "embeddings", pa.array([[1.0] * DIM, None, [1.0] * DIM],
                                                              pa.list_(pa.float32()))), path)  # fmt: skip
    with pytest.raises(OutputError, match="row 1 has no embedding"):
        original.read_as_ours(str(path), path.read_bytes())


def test_a_file_saved_again_as_geoparquet_1_1_reads_the_same_and_a_null_footprint_is_named(tmp_path):
    """An original file saved again with GeoArrow geometry (GeoParquet 1.1, as geopandas writes it with
    ``geometry_encoding="geoarrow"``) gives the same rows; a null or empty footprint is refused naming its row."""
    import geopandas as gpd

    x = np.random.default_rng(2).normal(size=(3, DIM)).astype(np.float32)
    path = original_run.write_original(tmp_path / "wkb", 2020, 1156, [286, 287, 288], x)
    want, _ = original.read_as_ours(str(path), path.read_bytes())
    frame = gpd.read_parquet(path)
    again = tmp_path / "geoarrow" / path.name
    again.parent.mkdir()
    frame.to_parquet(again, geometry_encoding="geoarrow")
    assert pa.types.is_list(pq.read_schema(again).field("geometry").type)  # coordinates, not WKB
    got, _ = original.read_as_ours(str(again), again.read_bytes())
    assert got.equals(want)
    frame.loc[1, "geometry"] = None
    frame.to_parquet(again)
    with pytest.raises(OutputError, match=f"{again}: row 1 has no footprint"):
        original.read_as_ours(str(again), again.read_bytes())
    frame.loc[1, "geometry"] = shapely.Polygon()
    frame.to_parquet(again, geometry_encoding="geoarrow")
    with pytest.raises(OutputError, match="row 1 has an empty footprint"):
        original.read_as_ours(str(again), again.read_bytes())


def test_original_files_become_their_own_set_with_chip_ids_from_their_footprints(two_sets):
    db = two_sets / "db"
    theirs_index = ChipIndex(db, set="original-2024")
    assert ChipIndex(db).set == "wcembed" and len(ChipIndex(db)) == 36 and len(theirs_index) == 35
    ids = set(theirs_index.table.to_arrow()["chip_id"].to_pylist())
    assert "2020-1156-0288" in ids and "2020-1157-0289" not in ids  # the chip the original skipped
    assert theirs_index.weights == {original.WEIGHTS}
    assert index_note(theirs_index) == f"set original-2024: {original.WEIGHTS}"
    got = theirs_index.table.search().where("chip_id = '2020-1156-0288'").to_arrow()
    assert tuple(got[c][0].as_py() for c in ("xmin", "ymin", "xmax", "ymax")) == chip_bounds(1156, 288)
    np.testing.assert_allclose(theirs_index.vectors(["2020-1156-0288"])[0], theirs(2020, 1156, 288), rtol=1e-6)
    res = theirs_index.by_chip("2020-1156-0288", 5, year=2020)  # a search stays within its set
    assert set(res["chip_id"]) <= ids
    again = ingest(two_sets / "orig", db)  # nothing new
    assert again.files_unchanged == 6 and again.sets == {"original-2024": 35}


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        ("shifted", "row 0's footprint"),
        ("renamed", "its name says column 1155, row 0's footprint is in column 1156"),
        ("ours-named-v002", "named as the original run's files but its columns"),
    ],
)
def test_a_file_off_the_grid_or_misnamed_is_refused(tmp_path, damage, says):
    """A footprint 0.3 px off the grid, a name that contradicts the footprints, or our layout under an original
    name: refused in one line naming the file, the rest ingested."""
    import shapely

    write_originals(tmp_path / "orig")
    folder = tmp_path / "orig" / "2020"
    bad = folder / original.original_name(2020, 1155)
    if damage == "shifted":
        table = pq.read_table(bad)
        shift = np.array([0.3 * original.PXSIZE, 0.0])
        geoms = shapely.transform(shapely.from_wkb(table["geometry"].to_numpy()), lambda xy: xy + shift)
        at = table.schema.get_field_index("geometry")
        pq.write_table(table.set_column(at, table.schema.field(at), pa.array(shapely.to_wkb(geoms))), bad)
    elif damage == "renamed":
        (folder / original.original_name(2020, 1156)).replace(bad)
    else:
        pq.write_table(pq.read_table(bad).append_column("chip_id", pa.array(["x"] * 6)), bad)
    with pytest.raises(IngestError, match=says) as info:
        ingest(tmp_path / "orig", tmp_path / "db")
    assert list(info.value.report.failed) == [str(bad)]
    assert len(ChipIndex(tmp_path / "db", set="original-2024")) == 6 * (5 if damage != "renamed" else 4)


def test_a_set_named_and_a_set_missing(two_sets, tmp_path):
    from wcembed.core.errors import BadParameterError

    with pytest.raises(BadParameterError, match="no chip of 2021 in the embedding set wcembed of "):
        agreement(ChipIndex(two_sets / "db"), ChipIndex(two_sets / "db", set="original-2024"), 2021)
    with pytest.raises(IngestError, match=r"no embedding set 'nope' \(it holds: wcembed, original-2024\)"):
        ChipIndex(two_sets / "db", set="nope")
    write_originals(tmp_path / "orig")
    report = ingest(tmp_path / "orig", tmp_path / "db", set="mine")
    assert report.sets == {"mine": 36} and len(ChipIndex(tmp_path / "db", set="mine")) == 36


def test_a_set_compared_with_itself_agrees_everywhere(two_sets):
    db = two_sets / "db"
    a = ChipIndex(db)
    agr = agreement(a, ChipIndex(db), 2020)
    assert len(agr) == 36 and np.allclose(agr.cosine, 1.0, atol=2e-3)
    assert neighbour_overlap(a, ChipIndex(db), "2020-1156-0288") == 1.0


def test_two_sets_with_a_known_difference(two_sets, tmp_path):
    """The agreement layer finds exactly the chips whose embeddings differ, the skipped chip is not compared,
    and the summary says where they disagree."""
    db = two_sets / "db"
    a, b = ChipIndex(db), ChipIndex(db, set="original-2024")
    agr = agreement(a, b, 2020)
    assert len(agr) == 35  # the chip the original skipped has nothing to compare
    low = {(int(c), int(r)) for c, r, x in zip(agr.columns, agr.rows, agr.cosine, strict=True) if x < 0.5}
    assert low == CHANGED and agr.cosine[agr.cosine >= 0.5].min() > 0.99
    layer = agr.layer()
    for column, row in CHANGED:
        w, s, e, n = chip_bounds(column, row)
        assert layer.value_at((w + e) / 2, (s + n) / 2) == pytest.approx(-1.0, abs=2e-3)
    assert set(agr.table()["chip_id"].iloc[:2]) == {f"2020-{c}-{r:04d}" for c, r in CHANGED}  # least alike first
    assert "clay-v0.1" in agr.note and "NOT ONE SPACE" not in agr.note
    assert layer.to_cog(tmp_path / "agreement.tif").exists()
    table = summary(agr, a, b, sample=10, k=5)
    assert table.loc[0, "n"] == 35 and table.loc[0, "q50"] > 0.99
    assert table.attrs["neighbour_overlap"]["chips"] == 10


def test_neighbours_are_compared_within_the_chips_both_sets_hold(tmp_path):
    """Two sets of identical vectors, one of them lacking a chip: every chip's nearest neighbours agree (1.0),
    also where the chip one set lacks is among the other's nearest; the summary says how many both hold."""
    root = tmp_path
    synthetic_index(root, ours, years=(2020,), rows=ROWS, weights="clay-v0.1")
    write_originals(root / "orig", skip={(1157, 289)}, vectors=ours)
    ingest(root / "orig", root / "db", original_weights="clay-v0.1")
    a, b = ChipIndex(root / "db"), ChipIndex(root / "db", set="original-2024")
    agr = agreement(a, b, 2020)
    both = set(zip(agr.columns.tolist(), agr.rows.tolist(), strict=True))
    near = [f"2020-{c}-{r:04d}" for c, r in [(1156, 289), (1157, 288), (1158, 289), (1157, 290)]]
    assert all(neighbour_overlap(a, b, chip, 3, both) == 1.0 for chip in near)
    assert any(neighbour_overlap(a, b, chip, 3) < 1.0 for chip in near)  # counted over all of a's chips: less
    table = summary(agr, a, b, sample=35, k=3)
    assert table.attrs["neighbour_overlap"]["in_both"] == 35 and table.attrs["neighbour_overlap"]["mean"] == 1.0


def test_sets_of_other_dimensions_have_no_cosine_and_are_compared_by_neighbours(tmp_path, capsys):
    synthetic_index(tmp_path, ours, years=(2020,), rows=ROWS)
    write_originals(tmp_path / "orig", vectors=lambda y, c, r: np.random.default_rng([c, r]).normal(size=DIM + 4))
    ingest(tmp_path / "orig", tmp_path / "db")
    a, b = ChipIndex(tmp_path / "db"), ChipIndex(tmp_path / "db", set="original-2024")
    with pytest.raises(BadParameterError, match=f"two models' vectors \\({DIM}-d, {DIM + 4}-d\\): no cosine"):
        agreement(a, b, 2020)
    overlap = overlap_summary(a, b, 2020, sample=10, k=3)  # compared by their neighbours instead
    assert overlap["in_both"] == 36 and overlap["chips"] == 10 and 0 <= overlap["mean"] <= 1
    from wcembed.apps import cli

    db = str(tmp_path / "db")
    assert cli.main(["compare", "--db", db, "--sets", "wcembed", "original-2024", "--sample", "10", "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "hold two models' vectors: two spaces, no cosine between them; compared by their neighbours" in out
    assert "3 nearest neighbours in common, among the 36 chips both sets hold, over 10 random chips" in out
    cog = tmp_path / "neighbours.tif"
    assert cli.main(["compare", "--db", db, "--sets", "wcembed", "original-2024", "--sample", "10", "-k", "3",
                     "--cog", str(cog)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "neighbour agreement of 36 chips (3 nearest, searched among all 36 chips both hold): median" in out
    with rasterio.open(cog) as src:
        assert src.count == 1 and src.tags()["name"].startswith("neighbour agreement 2020")
    from wcembed.explore.state.session import ExploreSession  # the map: the neighbours of a click, no cosine

    session = ExploreSession(a, k=3)
    session.set(compare_set="original-2024")
    w, so, e, n = chip_bounds(1156, 288)
    session.click((w + e) / 2, (so + n) / 2)
    line = session.search.compare_line
    assert line.startswith("2020-1156-0288: wcembed and original-2024 are two models' spaces (no cosine between")
    assert re.search(r"; \d of the 3 nearest in common$", line), line
    session.show_region("agreement")
    assert session.layer is None and "two models' spaces, with no cosine between them" in session.layers.note
    with pytest.raises(BadParameterError, match="no cosine between them"):
        session.scope.agreement()  # asked directly: refused before the other model's vectors are read
    assert all(name != "original-2024" for name, _ in session.scope.held)
    session.show_region("neighbour agreement")  # every chip's neighbours compared, each in its model's space
    layer = session.layer
    assert layer.name == "neighbour agreement 2020: wcembed / original-2024" and layer.key.source[1] == "k 3"
    assert "3 nearest neighbours" in layer.raster.description and "all 36 chips both hold" in layer.raster.description
    assert session.scope.held == [("original-2024", 2020), ("wcembed", 2020)]
    agreed = session.scope.neighbour_agreement(k=3)
    both = set(zip(agreed.columns.tolist(), agreed.rows.tolist(), strict=True))
    table = agreed.table()
    for chip, value in zip(table["chip_id"][::6], table["overlap"][::6], strict=True):  # as a click counts them
        assert neighbour_overlap(a, b, chip, 3, both) == pytest.approx(value), chip
    session.set(k=4)  # the layer counts the neighbours the galleries show
    assert session.layer.key.source[1] == "k 4" and "4 nearest" in session.layer.raster.description
    session.set(compare_set="")  # the set beside's vectors go with it
    assert session.scope.held == [("wcembed", 2020)]


def test_edge_distance_counts_chips_to_the_nearest_tile_edge():
    # 12000 px tiles, 512 px chips: column 23 covers 11776..12288 (crosses), 22 ends 224 px short of the edge,
    # 21 has column 22 between it and the edge, column 0 starts on one
    assert edge_distance(np.array([23, 22, 0, 21]), np.array([5, 5, 5, 5]), 512).tolist() == [0, 1, 1, 2]
    assert edge_distance(np.array([11]), np.array([11]), 512).tolist() == [12]


def test_compare_and_set_flags_on_the_command_line(two_sets, tmp_path, capsys):
    from wcembed.apps import cli

    db = str(two_sets / "db")
    assert cli.main(["compare", "--db", db, "--year", "2020", "--sample", "5", "--cog", str(tmp_path / "a.tif")]) == 0
    out = capsys.readouterr().out
    assert "agreement of 35 chips of 2020, wcembed against original-2024" in out and (tmp_path / "a.tif").exists()
    assert (
        "tile edge: crosses one" in out
        and "nearest neighbours in common, among the 35 chips both sets hold, over 5 random chips" in out
    )
    assert cli.main(["search", "--db", db, "--set", "original-2024", "--chip", "2020-1156-0288", "-k", "3"]) == 0
    assert "2020-1157-0289" not in capsys.readouterr().out  # the chip the original skipped is not in its set
    assert cli.main(["search", "--db", db, "--set", "nope", "--chip", "2020-1156-0288"]) == 65


def test_the_session_searches_a_set_and_shows_the_other_beside_it(two_sets):
    """Choose the set; a click searches both sets (the same place and year) and says how much they agree on
    the clicked chip; the agreement layer is of the two; switching the set follows the search."""
    from wcembed.core.errors import BadParameterError
    from wcembed.explore.state.session import ExploreSession

    s = ExploreSession(ChipIndex(two_sets / "db"), k=5)
    assert s.scope.sets == ["wcembed", "original-2024"]
    with pytest.raises(BadParameterError, match="unknown embedding set 'nope'"):
        s.set(compare_set="nope", k=3)
    assert s.search.k == 5  # nothing half-set
    s.set(compare_set="original-2024")
    w, so, e, n = chip_bounds(1155, 288)
    s.click((w + e) / 2, (so + n) / 2)
    assert len(s.results) == len(s.search.results_other) == 5
    line = s.search.compare_line
    assert line.startswith("2020-1155-0288: cosine -1.000 between its wcembed and original-2024 embeddings")
    s.show_region("agreement")
    assert s.layer.key.kind == "agreement" and s.layer.key.source == ("original-2024",)
    assert s.layer.raster.value_at((w + e) / 2, (so + n) / 2) == pytest.approx(-1.0, abs=2e-3)
    w2, s2, e2, n2 = chip_bounds(1157, 289)  # the chip the original skipped: nothing to compare
    s.click((w2 + e2) / 2, (s2 + n2) / 2)
    assert s.search.results_other is None
    assert s.search.compare_line == "original-2024 has no chip 2020-1157-0289: nothing to compare"
    s.click((w + e) / 2, (so + n) / 2)
    s.set(embedding_set="original-2024", compare_set="wcembed")
    assert s.index.set == "original-2024" and s.query_chip == "2020-1155-0288"
    assert s.status.startswith("5 nearest of 2020-1155-0288 in original-2024")  # the status line names the set
    assert set(s.results["chip_id"]) <= set(s.index.table.to_arrow()["chip_id"].to_pylist())
    assert s.layer.key.set == "original-2024" and s.layer.key.source == ("wcembed",)
    with pytest.raises(BadParameterError, match="original-2024 is the set shown"):
        s.set(compare_set="original-2024")  # a set is never compared with itself
    s.set(embedding_set="wcembed")  # the set beside becomes the one shown: none is beside it
    assert s.scope.beside == "" and s.scope.other is None


def test_the_map_shows_both_sets_side_by_side(two_sets, sample_root, tmp_path):
    from wcembed.explore.state.session import ExploreSession
    from wcembed.explore.views.view import Explorer
    from wcembed.explore.views.wms import LocalWMS, WMSClient

    with LocalWMS(sample_root, tmp_path / "ms") as wms:
        s = ExploreSession(ChipIndex(two_sets / "db"), k=4)
        ex = Explorer(s, wms.url, thumbnails=WMSClient(wms.url, cache_dir=None), basemap=None)
        assert ex.controls["embedding_set"].options == ("wcembed", "original-2024")
        ex.controls["compare_set"].value = "original-2024"
        w, so, e, n = chip_bounds(1156, 288)
        ex.handle_interaction(type="click", coordinates=[(so + n) / 2, (w + e) / 2])
        assert len(ex.gallery.children) == 4 and len(ex.gallery_other.children) == 1 + 4
        assert "in original-2024" in ex.gallery_other.children[0].value
        assert ex.compare_line.value.startswith("2020-1156-0288: cosine 1.000")
        ex.controls["embedding_set"].value = "original-2024"
        assert s.index.set == "original-2024" and "nearest of 2020-1156-0288" in ex.status.value


def test_embedding_as_the_original_scripts_did_reproduces_each_defect(sample_root, tmp_path):
    """Raw digital numbers in, the same lat/lon for every chip (the pixel size, swapped), nir with rededge's
    band code, a chip with one 0 pixel dropped; the files it writes ingest as the original-2024 set."""
    import torch
    from builders import tiny_model
    from wcembed.pipeline.embed import embed_column

    model = tiny_model()
    pixels = np.random.default_rng(0).integers(1, 10_000, size=(2, 4, 512, 512)).astype(np.uint16)
    x, latlon, _ = original_run.original_inputs(pixels, 2020)
    np.testing.assert_array_equal(x.numpy(), pixels.astype(np.float32))  # not normalised
    assert torch.allclose(latlon[0], latlon[1]) and latlon[0, 0] == pytest.approx(np.pi / 2, abs=1e-6)
    assert latlon[0, 1] == pytest.approx(np.sin(np.radians(original.PXSIZE)), rel=1e-6)
    encoder = original_run.original_encoder(model)
    assert encoder.input_rows == [0, 1] and model.encoder.input_rows == [0, 2]  # nir: rededge's row; ours intact
    assert encoder.patch_embedding is model.encoder.patch_embedding  # the same weights

    rows, emb = original_run.embed_like_original(2020, 1156, sample_root, model)
    ours_result = embed_column(2020, 1156, output=tmp_path / "ours", tiles=sample_root, model=model, progress=False)
    ours_rows = pq.read_table(ours_result.path)["row"].to_pylist()
    assert rows and set(rows) < set(ours_rows)  # the coastal chips with a 0 pixel are dropped
    path = original_run.write_original(tmp_path / "orig", 2020, 1156, rows, emb)
    ingest(tmp_path / "ours", tmp_path / "db")
    ingest(tmp_path / "orig", tmp_path / "db", original_weights="untrained")  # made here: recorded so
    agr = agreement(ChipIndex(tmp_path / "db"), ChipIndex(tmp_path / "db", set="original-2024"), 2020)
    assert len(agr) == len(rows) and agr.cosine.max() < 0.999  # the defects change every embedding
    assert "NOT ONE SPACE" in agr.note  # untrained weights: the mechanism only, said so
    assert "UNTRAINED" in index_note(ChipIndex(tmp_path / "db", set="original-2024"))
    assert path.name == "worldcover_embeddings_2020_1156_v002.gpq"


@pytest.mark.slow
def test_the_explore_notebook_opens_a_set_and_compares_another_models_by_neighbours(sample_root, tmp_path):
    """Run All with ``embedding_set`` and a ``compare_set`` of another dimension (two models): the notebook
    opens the set given, says the two are two spaces and compares their neighbours, with no cosine."""
    from builders import run_papermill
    from wcembed import ROOT
    from wcembed.explore.views.wms import LocalWMS

    synthetic_index(tmp_path, ours, years=(2020,), rows=ROWS)
    write_originals(tmp_path / "orig", vectors=lambda y, c, r: np.random.default_rng([c, r]).normal(size=DIM + 4))
    ingest(tmp_path / "orig", tmp_path / "db")
    w, s, e, n = chip_bounds(1156, 288)
    with LocalWMS(sample_root, tmp_path / "ms") as wms:
        params = {"db": tmp_path / "db", "wms_url": wms.url, "embedding_set": "original-2024",
                  "compare_set": "wcembed", "lon": (w + e) / 2, "lat": (s + n) / 2, "k": 4,
                  "layers_out": tmp_path / "layers"}  # fmt: skip
        (tmp_path / "layers").mkdir()
        text = run_papermill("explore.ipynb", tmp_path / "out.ipynb", params, cwd=ROOT)
    assert "in original-2024" in text  # the set given is the one searched
    with rasterio.open(tmp_path / "layers" / "neighbour_agreement_2020.tif") as src:  # every chip's neighbours
        assert "4 nearest neighbours in 2020 that original-2024 and wcembed find" in src.tags()["description"]
    assert "original-2024 and wcembed hold two models' vectors: no cosine between them" in text
    assert "original-2024 and wcembed are two models' spaces (no cosine between them)" in text
