"""The package works when installed, not only from the checkout: a wheel carries what its commands read."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from wcembed import ROOT


@pytest.mark.slow
def test_a_wheel_installed_outside_the_checkout_runs_its_commands(sample_root, tmp_path):
    """Build the wheel, install it into a fresh virtual environment outside the checkout (its dependencies
    are the test environment's, at the lock's versions: this environment's site-packages, without the
    checkout's editable install), and run ``wcembed embed`` of one sample column and ``wcembed demo
    --help`` from another folder."""
    wheels = tmp_path / "wheels"
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", str(ROOT),
                           "-w", str(wheels), "-q"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = wheels.glob("wcembed-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"wcembed/notebooks/embed_column.ipynb", "wcembed/notebooks/explore.ipynb",
            "wcembed/batch/job_definition.json"} <= set(names)  # fmt: skip
    assert sum(n.endswith(".py") for n in names) >= 40 and not any(n.startswith("notebooks/") for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    with zipfile.ZipFile(wheel) as z:  # what pip does with a pure-Python wheel
        z.extractall(site)
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # after the wheel: it comes first
    python = venv / "bin" / "python"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([python, "-c", "import wcembed; print(wcembed.__file__, wcembed.ROOT)"], cwd=elsewhere,
                           capture_output=True, text=True, timeout=120, check=True).stdout  # fmt: skip
    assert str(site) in where and str(ROOT) not in where
    args = ["embed", "--year", "2020", "--column", "1156", "--tiles", sample_root, "--output", str(tmp_path / "out"),
            "--allow-untrained", "--batch-size", "4"]  # fmt: skip
    done = subprocess.run([python, "-m", "wcembed", *args], cwd=elsewhere, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert Path(tmp_path / "out/2020/worldcover_embeddings_2020_1156_v003.gpq").exists()
    helped = subprocess.run([python, "-m", "wcembed", "demo", "--help"], cwd=elsewhere, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert helped.returncode == 0 and "--outputs" in helped.stdout
    notebook = subprocess.run([python, "-c", "from wcembed import NOTEBOOKS; print((NOTEBOOKS / 'embed_column.ipynb')"
                               ".exists())"], cwd=elsewhere, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert notebook.stdout.strip() == "True"
