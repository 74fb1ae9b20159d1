"""The command line: every command and flag explains itself, and a refused argument is one line, exit 65."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
from builders import built_index, one_line_error, table_chips, wcembed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wcembed.apps import cli
from wcembed.apps.cli import build_parser, main
from wcembed.core.errors import EXIT_BAD_INPUT, WcEmbedError
from wcembed.pipeline.job import ColumnJob


def _parsers(parser: argparse.ArgumentParser, name: str = "wcembed"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def test_every_command_and_flag_has_help():
    parser = build_parser()
    commands = {
        a.dest for act in parser._actions if isinstance(act, argparse._SubParsersAction) for a in act._choices_actions
    }
    assert {"plan", "embed", "index", "search", "lab", "batch", "submit", "resubmit-missing"} <= commands
    for act in parser._actions:
        if isinstance(act, argparse._SubParsersAction):
            assert all(a.help for a in act._choices_actions), "a command without help"
    missing = [
        f"{name} {'/'.join(a.option_strings) or a.dest}"
        for name, p in _parsers(parser)
        for a in p._actions
        if not isinstance(a, argparse._SubParsersAction | argparse._HelpAction) and not a.help
    ]
    assert missing == []


def test_batch_help_lists_every_environment_variable():
    batch = dict(_parsers(build_parser()))["wcembed batch"]
    text = batch.format_help()
    for f in ColumnJob.fields():
        if f.metadata["env"]:
            assert f"  {f.metadata['env']} " in text
    assert "AWS_BATCH_JOB_ARRAY_INDEX" in text and "GRID_COLUMNS" in text


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["serve-wms", "x", "--port", "70000"], "port 70000 is not within 1..65535"),
        (["serve-wms", "x", "--port", "-1"], "port -1 is not within 1..65535"),
        (["run-array", "--year", "2020", "--output", "o", "--parallel", "0"], "0 is less than 1"),
        (["search", "--chip", "2020-1156-0288", "--point", "-75", "37"], "not allowed with argument"),
        (["search", "-k", "many"], "invalid int value: 'many'"),
        (["embed", "--year", "2020"], "the following arguments are required: --column"),
    ],
)
def test_a_refused_argument_is_one_line_and_exit_65(args, says):
    """argparse's refusals are like every other bad input: one line naming the problem, exit 65."""
    done = subprocess.run([sys.executable, "-m", "wcembed", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == EXIT_BAD_INPUT, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], done.stderr


def test_index_into_a_regular_file_is_one_line(tmp_path, capsys):
    (tmp_path / "db").write_text("not a database")
    (tmp_path / "emb").mkdir()
    assert main(["index", str(tmp_path / "emb"), "--db", str(tmp_path / "db")]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a file, not a folder" in err


def test_a_batch_band_too_large_is_bad_input(tmp_path):
    env = {"YEAR": "2020", "OUTPUT": str(tmp_path), "TILES": str(tmp_path), "BAND": "99999999999999999999"}
    from wcembed.pipeline.batch import entrypoint

    assert entrypoint(env) == EXIT_BAD_INPUT  # not "Python int too large" and exit 1 (a bug, for Batch)


@pytest.fixture
def built(tmp_path):
    """20 synthetic column files (random 32-d vectors, not embeddings) ingested into a database."""
    return built_index(tmp_path)


PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**6), 10**6))


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


@PROPS
@given(
    lon=numbers | st.floats(-75.92, -75.85),
    lat=numbers | st.floats(37.8, 38.0),
    k=st.integers(-5, 20_000) | st.integers(1, 40),
    year=st.one_of(st.none(), st.integers(2015, 2025)),
)
def test_search_arguments_give_k_results_or_say_why(built, capsys, lon, lat, k, year):
    """Valid arguments (a point in degrees, 1 <= k <= 10000, a year of the data) give exit 0 with
    min(k, chips of the year) results where a chip of the year (of any year, without one) holds the point,
    and exit 65 "no chip at" where none does; any other argument exit 65 naming it."""
    import math

    from wcembed.explore.data.index import ChipIndex

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
    out, err = capsys.readouterr()
    valid = (
        math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90
        and 1 <= k <= 10_000 and year in (None, 2020, 2021)
    )  # fmt: skip
    if not valid:
        assert code == 65 and err.startswith("error: ")
        return
    idx = ChipIndex(db)
    # a chip holds its west and north edges (the grid's floor), not its east and south ones
    held = table_chips(idx, year, lambda f: f.bounds[0] <= lon < f.bounds[2] and f.bounds[1] < lat <= f.bounds[3])
    if not held:
        assert code == 65 and "no chip at" in err, err
        return
    assert code == 0, err
    expected = min(k, len(table_chips(idx, year, lambda f: True)) - 1)  # every chip searched but the query
    assert len(out.strip().splitlines()) == 1 + expected  # a header, then a line per result


BAD_INPUTS = {
    "an output that is a file": (["embed", "--year", "2020", "--column", "1156", "--output", "{file}"], "is a file"),
    "a negative column": (["embed", "--year", "2020", "--column", "-1", "--tiles", "{dir}"], "column -1"),
    "an unknown device": (["embed", "--year", "2020", "--column", "1", "--device", "tpu", "--tiles", "{dir}"],
                          "unknown device 'tpu'"),
    "a missing tile folder": (["embed", "--year", "2020", "--column", "1", "--tiles", "{dir}/none"],
                              "no such tile source folder"),
    "a set name with a newline": (["search", "--db", "{dir}", "--set", "abc\n", "--point", "-75.6", "37.6"],
                                  "an embedding set is named with"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_refused_in_one_line_before_heavy_work(case, tmp_path):
    """Each is refused with exit 65 and one line naming it, before torch is imported (no column embedded)."""
    args, says = BAD_INPUTS[case]
    (tmp_path / "file").write_text("x")
    args = [a.format(file=tmp_path / "file", dir=tmp_path) for a in args]
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "wcembed", *args], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    errors = [line for line in done.stderr.splitlines() if not line.startswith("import time")]
    loaded = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time")}
    assert done.returncode == EXIT_BAD_INPUT and len(errors) == 1 and says in errors[0], done.stderr[-500:]
    assert "torch" not in loaded


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["search", "--set", "nope", "--chip", "2020-1150-0280"], "--set 'nope': the database"),
        (["compare", "--sets", "wcembed", "nope"], "--sets 'nope': the database"),
    ],
)
def test_an_unknown_set_is_refused_before_lancedb_loads(built, args, says):
    """A set the database does not hold: exit 65, one line naming it and the sets there are, before LanceDB (or
    torch) is imported."""
    _, db = built
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "wcembed", *args, "--db", str(db)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    errors = [line for line in done.stderr.splitlines() if not line.startswith("import time")]
    loaded = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time")}
    assert done.returncode == EXIT_BAD_INPUT and len(errors) == 1, done.stderr[-500:]
    assert says in errors[0] and errors[0].endswith("holds wcembed")
    assert "lancedb" not in loaded and "torch" not in loaded


def test_s3_without_credentials_says_which_are_missing(tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("AWS_")}
    env |= {"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none"),
            "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "wcembed", "index", "s3://bucket/embeddings", "--db", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert done.returncode == EXIT_BAD_INPUT and done.stderr.count("\n") == 1
    assert "AWS_ACCESS_KEY_ID" in done.stderr and "Traceback" not in done.stderr


def test_an_error_echoing_a_huge_input_is_cut(capsys):
    """An input of megabytes is not said whole: the line is cut and says how long it was."""
    assert main(["search", "--db", "x", "--set", "a" * 1_000_000, "--point", "-75.6", "37.6"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert len(err) < 1000 and err.count("\n") == 1
