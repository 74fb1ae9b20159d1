"""Build the documentation site: ``python scripts/build_docs.py [--site outputs/site]``.

The pages are ``docs/``; the notebooks are rendered from the demo's executed copies
(``outputs/notebooks/``, after ``make demo``) where they exist, else from ``notebooks/`` (without
outputs); the changelog is ``CHANGELOG.md``. Those are copied into ``docs/`` (not committed), then
``mkdocs build --strict``: a broken link, a missing API object or a page not in the navigation fails.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ("plan_grid", "embed_column", "explore")


def prepare(executed: Path = ROOT / "outputs" / "notebooks") -> list[str]:
    """Copy the notebooks and the changelog into ``docs/``; return where each notebook came from."""
    target = ROOT / "docs" / "notebooks"
    target.mkdir(exist_ok=True)
    used = []
    for name in NOTEBOOKS:
        source = executed / f"{name}.ipynb"
        source = source if source.exists() else ROOT / "notebooks" / f"{name}.ipynb"
        shutil.copyfile(source, target / f"{name}.ipynb")
        used.append(str(source))
    shutil.copyfile(ROOT / "CHANGELOG.md", ROOT / "docs" / "changelog.md")
    return used


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--site", default=str(ROOT / "outputs" / "site"), help="where the site is written")
    args = ap.parse_args()
    for source in prepare():
        print("notebook:", source)
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(Path(args.site).resolve())]
    return subprocess.run(cmd, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
