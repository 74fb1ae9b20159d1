"""Write the lock files: the exact versions pip resolves for each install of wcembed.

    python scripts/lock.py            # rewrite requirements/{worker,explore,test}.txt
    python scripts/lock.py --check    # exit 1 if a lock differs from a fresh resolve (nothing written)

Each lock is pip's own resolution (``pip install --dry-run --ignore-installed --report``)
of ``.[extra]`` with torch pinned to ``TORCH``, for the Python and platform this runs on
(CPython 3.11, Linux x86-64: CI's and the AWS Batch image's). torch is written without
a local version label (``torch==2.13.0``, not ``+cpu``): the same line installs the CPU
wheel here and the CUDA wheel from PyPI in the image, which brings its own ``nvidia-*``
runtime packages (not listed: they belong to that wheel, not to us).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCH = "2.13.0"
LOCKS = {  # the test lock first: the others are resolved within it, so a package has one version everywhere
    "test": "everything: CI, make setup, make demo",
    "worker": "what a column job imports (the AWS Batch image)",
    "explore": "the explorer: LanceDB, the map, the classifier, JupyterLab",
}


def resolve(extra: str, within: list[str] | None = None) -> list[str]:
    """``name==version`` of every distribution pip would install for ``.[extra]``, sorted by name;
    ``within``: pins it must keep (constraints)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed",
               "--report", str(report), f".[{extra}]", f"torch=={TORCH}"]  # fmt: skip
        if within:
            (Path(tmp) / "within.txt").write_text("\n".join(within) + "\n")
            cmd += ["--constraint", str(Path(tmp) / "within.txt")]
        subprocess.run(cmd, cwd=ROOT, check=True)
        installs = json.loads(report.read_text())["install"]
    pins = {}
    for item in installs:
        name, version = item["metadata"]["name"].lower().replace("_", "-"), item["metadata"]["version"]
        if name != "wcembed":
            pins[name] = version.split("+")[0] if name == "torch" else version
    return [f"{name}=={pins[name]}" for name in sorted(pins)]


def render(extra: str, pins: list[str]) -> str:
    head = [
        f"# wcembed[{extra}]: {LOCKS[extra]}.",
        "# Exact versions for CPython 3.11 on Linux x86-64, written by `python scripts/lock.py` (do not edit).",
        "# Install: pip install -r this file, then pip install --no-deps the project.",
    ]
    return "\n".join([*head, *pins]) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with a fresh resolve, write nothing")
    args = parser.parse_args()
    stale, everything = [], None
    for extra in LOCKS:
        path = ROOT / "requirements" / f"{extra}.txt"
        found = resolve(extra, everything)
        everything = everything or found
        text = render(extra, found)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)} ({text.count('==')} pins)")
    if stale:
        print("stale locks (run python scripts/lock.py):", ", ".join(stale), file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
