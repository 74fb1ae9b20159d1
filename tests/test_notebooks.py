"""The committed notebooks: stripped of outputs, parameter cells, headless runs."""

import json
import subprocess
import sys

import pytest
from builders import run_papermill
from wcembed import ROOT
from wcembed.pipeline.job import ColumnJob

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _parameters(name: str) -> dict:
    """The names and literal values of a notebook's ``parameters`` cell, in order."""
    import ast

    nb = json.loads((ROOT / "notebooks" / name).read_text())
    (cell,) = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    return {s.targets[0].id: ast.literal_eval(s.value) for s in ast.parse("".join(cell["source"])).body}


def test_there_are_notebooks():
    assert {p.name for p in NOTEBOOKS} >= {"plan_grid.ipynb", "embed_column.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebooks_carry_no_outputs(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None, f"{path.name} has outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_cell_holds_only_literals(path):
    import ast

    nb = json.loads(path.read_text())
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    tree = ast.parse("".join(tagged[0]["source"]))
    for stmt in tree.body:
        assert isinstance(stmt, ast.Assign), ast.dump(stmt)
        ast.literal_eval(stmt.value)  # a plain literal, or this raises


def test_embed_notebook_parameters_are_the_column_job_definition():
    """The notebook's parameters cell declares exactly ColumnJob's fields, in order, with its defaults."""
    params = _parameters("embed_column.ipynb")
    fields = ColumnJob.fields()
    assert list(params) == [f.name for f in fields]
    for f in fields:
        assert params[f.name] == ColumnJob.example(f), f.name
        assert type(params[f.name]) in (ColumnJob.kind(f), type(None)), f.name
    job = ColumnJob.from_mapping(params)  # what the notebook's run cell does with its globals
    assert job.parameters() == params


def test_column_job_round_trips_through_env_flags_and_papermill():
    import argparse

    job = ColumnJob(
        year=2021, column=40, output="s3://b/e", tile_index="land", batch_size=16, precision="bfloat16",
        min_valid_fraction=0.25, allow_untrained=True, max_rows=3, workers=4,
    )  # fmt: skip
    assert ColumnJob.from_env(job.to_env(), column=40) == job
    parser = argparse.ArgumentParser()
    ColumnJob.add_arguments(parser)
    argv = [f"--{k.replace('_', '-')}" for k, v in job.parameters().items() if v is True]
    for k, v in job.parameters().items():
        if v is not None and not isinstance(v, bool):
            argv += [f"--{k.replace('_', '-')}", str(v)]
    assert ColumnJob.from_args(parser.parse_args(argv)) == job
    env = job.to_env()
    assert env["ALLOW_UNTRAINED"] == "true" and env["BATCH_SIZE"] == "16" and "COLUMN" not in env
    assert "CHECKPOINT" not in env  # None is left out, so a job definition's own value stands


@pytest.mark.parametrize(
    "env,match",
    [
        ({"OUTPUT": "x"}, "YEAR"),
        ({"YEAR": "2019"}, "2019"),
        ({"YEAR": "2020", "BATCH_SIZE": "eight"}, "BATCH_SIZE"),
        ({"YEAR": "2020", "BATCH_SIZE": "0"}, "batch_size"),
        ({"YEAR": "2020", "OVERWRITE": "maybe"}, "OVERWRITE"),
        ({"YEAR": "2020", "MIN_VALID_FRACTION": "1.5"}, "min_valid_fraction"),
        ({"YEAR": "2020", "PRECISION": "int4"}, "precision"),
    ],
)
def test_bad_job_environment_is_bad_input(env, match):
    from wcembed.core.errors import BadParameterError

    with pytest.raises(BadParameterError, match=match):
        ColumnJob.from_env(env)


@pytest.mark.slow
def test_plan_grid_notebook_runs_offline(tmp_path):
    text = run_papermill(
        "plan_grid.ipynb", tmp_path / "plan.ipynb", {"year": 2021, "output": tmp_path / "grid"}, cwd=tmp_path
    )
    assert (tmp_path / "grid/grid_2021_CONUS.parquet").exists()
    assert "columns (array size)" in text and "image/png" in text and "leaflet" in text.lower()


def test_cli_plan_prints_the_array_size(tmp_path):
    cmd = [sys.executable, "-m", "wcembed", "plan", "--year", "2020", "--tile-index", "land", "--out", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "columns: 1383 (0..1382)" in done.stdout and "chips:   538076" in done.stdout
    bad = subprocess.run([*cmd[:5], "2019", *cmd[6:]], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 65 and "2019" in bad.stderr  # bad input: AWS Batch must not retry
