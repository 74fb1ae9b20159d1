"""The command line: every command and flag explains itself, and a refused argument is one line, exit 65."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
from wcembed.cli import build_parser, main
from wcembed.errors import EXIT_BAD_INPUT
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
