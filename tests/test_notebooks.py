"""The committed notebooks: stripped of outputs, parameter cells, headless runs."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT, run_papermill

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


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
