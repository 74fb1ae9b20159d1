"""What a new user and hostile inputs broke: each case fails on the code before the fix.

Nothing lost (ingest validates a whole file before it touches the table, and replaces a column in one
commit), nothing trusted by name (a file's name, metadata and rows must agree), one-line errors for bad
arguments, no silent no-ops, no leftovers of killed writers, servers that die with their parent, and
property-based tests that any input gives a result or a package error.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from builders import dead_pid, write_column, write_years
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wcembed import cli, store
from wcembed.errors import BadParameterError, IngestError, LabelsError, WcEmbedError
from wcembed.explore.classify import Labels
from wcembed.explore.index import ChipIndex
from wcembed.explore.ingest import ingest
from wcembed.servers import LOOPBACK, free_port

COLUMNS = range(1150, 1152)
ROWS = range(280, 290)


def wcembed(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wcembed", *map(str, args)], capture_output=True, text=True, **kw)


def one_line_error(done: subprocess.CompletedProcess, code: int = 65) -> str:
    """The stderr of a command that must fail with ``code`` and one line saying why, no traceback."""
    assert done.returncode == code, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture
def built(tmp_path):
    """20 synthetic column files (random 32-d vectors, not embeddings) ingested into a database."""
    out = tmp_path / "emb"
    write_years(out, COLUMNS, rows=ROWS)
    ingest(out, tmp_path / "db")
    return out, tmp_path / "db"


# --------------------------------------------------------------------------- 1, 2: ingest


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


# --------------------------------------------------------------------------- 3, 4, 8: the command line


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--point", "nan", "nan"], "not a point"),
        (["--point", "inf", "37"], "not a point"),
        (["--point", "-75.6", "37.6", "-k", "0"], "k must be"),
        (["--point", "-75.6", "37.6", "-k", "-5"], "k must be"),
        (["--point", "-75.6", "37.6", "--year", "2019"], "year 2019"),
        ([], "one of the arguments --chip --point is required"),
    ],
)
def test_bad_search_arguments_are_one_line_errors(built, args, says):
    _, db = built
    assert says in one_line_error(wcembed("search", "--db", db, *args))


def in_process_error(capsys, *args, code: int = 65) -> str:
    """``python -m wcembed ARGS`` run in this process (no interpreter start-up): its one ``error:`` line."""
    assert cli.main([str(a) for a in args]) == code
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, lines
    return lines[0]


def test_commands_on_what_does_not_exist(tmp_path, sample_root, capsys):
    assert "no LanceDB database" in in_process_error(capsys, "search", "--db", tmp_path / "no", "--point", -75, 37)
    assert not (tmp_path / "no").exists()  # not created by a search
    assert "no output files" in in_process_error(capsys, "index", tmp_path / "none", "--db", tmp_path / "new")
    assert not (tmp_path / "new").exists()
    says = in_process_error(capsys, "embed", "--year", 2020, "--column", 1156, "--tiles", tmp_path / "no-tiles")
    assert "tile source folder" in says
    (tmp_path / "ckpt").mkdir()
    args = ["--year", 2020, "--column", 1156, "--tiles", sample_root, "--output", tmp_path / "o", "--max-rows", 1]
    assert "is a directory" in in_process_error(capsys, "embed", *args, "--checkpoint", tmp_path / "ckpt")
    if not __import__("torch").cuda.is_available():
        says = in_process_error(capsys, "embed", *args, "--allow-untrained", "--device", "cuda")
        assert "no CUDA" in says  # said before any weights load
    says = in_process_error(capsys, "run-array", "--year", 2020, "--tiles", sample_root, "--indices", "5-2")
    assert "empty range" in says
    assert not (tmp_path / "o").exists()  # nothing written by a refused command


def test_a_negative_region_value_is_a_value(tmp_path, sample_root):
    assert cli._join_negative_values(["plan", "--region", "-76,37,-75,38", "-v"]) == [
        "plan",
        "--region=-76,37,-75,38",
        "-v",
    ]
    done = wcembed("plan", "--year", 2020, "--tiles", sample_root, "--region", "-77,37,-75,38", "--out", tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_bad_argument_imports_nothing_heavy():
    """A bad argument is answered before torch, rasterio, lancedb or pandas load (they cost seconds)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "wcembed", "search", "--db", "x", "--point", "nan", "0"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 65
    loaded = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time")}
    assert not loaded & {"torch", "rasterio", "lancedb", "pandas", "geopandas"}, sorted(loaded)


# --------------------------------------------------------------------------- the API


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


def label_file(tmp_path, features) -> Path:
    path = tmp_path / "labels.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def feature(chip="2020-1150-0283", year=2020, label="positive"):
    ring = [[-75.9, 37.6], [-75.8, 37.6], [-75.8, 37.7], [-75.9, 37.7], [-75.9, 37.6]]
    props = {"chip_id": chip, "year": year, "label": label}
    return {"type": "Feature", "properties": props, "geometry": {"type": "Polygon", "coordinates": [ring]}}


@pytest.mark.parametrize(
    ("features", "says"),
    [
        ("abc", "not a list"),
        (["abc"], "not a GeoJSON feature"),
        ([feature(year="abc")], "year 'abc'"),
        ([feature(year=None)], "lacks ['year']"),
        ([feature(chip=None)], "lacks ['chip_id']"),
        ([feature(chip="2021-1150-0283")], "is of 2021, labelled as of 2020"),
        ([feature(chip="2020--150-0283")], "not a chip id"),
    ],
)
def test_malformed_labels_are_named(tmp_path, features, says):
    with pytest.raises(LabelsError, match=None) as err:
        Labels.load(label_file(tmp_path, features))
    assert says in str(err.value)


# --------------------------------------------------------------------------- 5: leftovers


def test_a_killed_writers_leftovers_go_with_the_next_write(tmp_path, sample_root):
    from wcembed.pipeline.embed import embed_column

    target = Path(store.output_path(tmp_path, 2020, 1156))
    target.parent.mkdir(parents=True)
    stale = [
        target.with_name(f".{target.name}.{dead_pid()}.0badc0de.tmp"),
        Path(store.stac_path(str(target))).with_name(f".{target.stem}.json.{dead_pid()}.0badc0de.tmp"),
    ]
    live = target.with_name(f".{target.name}.{os.getpid()}.0a11ve00.tmp")  # a writer still at work
    for p in [*stale, live]:
        p.write_bytes(b"half")
    kw = dict(output=tmp_path, tiles=sample_root, allow_untrained=True, progress=False)  # the whole column
    with pytest.warns(UserWarning):
        embed_column(2020, 1156, **kw)
    assert not any(p.exists() for p in stale) and live.exists()
    # killed between the file and its STAC Item (the Item is written second): the next run writes it
    Path(store.stac_path(str(target))).unlink()
    assert embed_column(2020, 1156, **kw).status == "exists"  # skipped: no weights loaded
    assert json.loads(Path(store.stac_path(str(target))).read_text())["id"]


# --------------------------------------------------------------------------- 6: processes


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((LOOPBACK, port)) == 0


def test_the_wms_gateway_dies_with_a_killed_serve_wms_and_a_busy_port_is_named(tmp_path, sample_root):
    port = free_port()
    args = ["serve-wms", sample_root, "--port", port, "--workdir", tmp_path / "ms"]
    proc = subprocess.Popen([sys.executable, "-m", "wcembed", *map(str, args)], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not listening(port) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert listening(port), proc.poll()
    busy = one_line_error(wcembed(*args))
    assert f"port {port}" in busy and "in use" in busy
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while listening(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not listening(port)  # the gateway child went with it


# --------------------------------------------------------------------------- properties

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**6), 10**6))


@PROPS
@given(lon=numbers, lat=numbers, k=st.integers(-5, 20_000), year=st.one_of(st.none(), st.integers(2015, 2025)))
def test_search_arguments_give_a_result_or_a_package_error(built, capsys, lon, lat, k, year):
    """Valid arguments (a point in degrees, 1 <= k <= 10000, a year of the data) give exit 0 with k results,
    or, where no chip is at the point, exit 65 saying so; any other argument exit 65 naming it."""
    import math

    _, db = built
    args = ["search", "--db", str(db), "--point", repr(float(lon)), repr(float(lat)), "-k", str(k)]
    args += [] if year is None else ["--year", str(year)]
    capsys.readouterr()
    try:
        code = cli.main(args)
    except SystemExit as exc:  # argparse's refusal (e.g. "-inf" read as an option): one line, exit 65
        assert exc.code == 65
        return
    except WcEmbedError:  # pragma: no cover - main turns these into exit codes
        pytest.fail("main let a package error through")
    err = capsys.readouterr().err
    valid = (
        math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90
        and 1 <= k <= 10_000 and year in (None, 2020, 2021)
    )  # fmt: skip
    if not valid:
        assert code == 65 and err.startswith("error: ")
    else:
        assert code == 0 or (code == 65 and "no chip at" in err), err


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
feature_like = st.fixed_dictionaries(
    {
        "type": st.just("Feature"),
        "properties": json_values
        | st.fixed_dictionaries(
            {
                "chip_id": json_values | st.just("2020-1150-0283"),
                "year": json_values | st.just(2020),
                "label": json_values | st.sampled_from(["positive", "negative"]),
            }
        ),
        "geometry": json_values,
    }
)


@PROPS
@given(features=st.lists(feature_like | json_values, max_size=4) | json_values)
def test_label_files_give_labels_or_a_labels_error(tmp_path, features):
    with contextlib.suppress(LabelsError):
        Labels.load(label_file(tmp_path, features))


@PROPS
@given(coords=st.lists(st.tuples(numbers, numbers), min_size=0, max_size=7))
def test_drawn_polygons_give_chips_or_a_package_error(built, coords):
    _, db = built
    idx = ChipIndex(db)
    try:
        polygon = shapely.Polygon([(float(x), float(y)) for x, y in coords]) if len(coords) >= 3 else shapely.Polygon()
    except (ValueError, shapely.errors.GEOSException):
        return  # not a polygon at all: nothing the map can draw
    with contextlib.suppress(BadParameterError):
        assert isinstance(idx.chips_in(polygon, 2020), list)


@PROPS
@given(
    bbox=st.lists(numbers | st.text(max_size=12), min_size=0, max_size=5), year=st.one_of(numbers, st.text(max_size=5))
)
def test_filter_values_give_results_or_a_package_error(built, bbox, year):
    _, db = built
    idx = ChipIndex(db)
    try:
        res = idx.by_vector(np.ones(32, np.float32), k=3, bbox=bbox, year=year)
        assert len(res) <= 3
    except BadParameterError:
        pass
