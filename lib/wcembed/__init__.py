"""wcembed: Clay v0 embeddings of ESA WorldCover Sentinel-2 composites, chip by chip.

Three parts: making embeddings and running that at scale (:mod:`wcembed.pipeline`), exploring them
(:mod:`wcembed.explore`), on the shared modules here, each named for what it holds:

========== ==================================================================
product    facts of ESA's product: years, versions, tile names, URLs, bands
grid       the chip grid: chips and windows (integer pixel arithmetic)
tileset    which tiles exist (ESA tile index, land outline, local folder)
contract   the output file: name, schema, metadata record, STAC
store      atomic local/S3 writes and reads of the files, a run's STAC Catalog
errors     the exceptions and the failure policy (transient or not, exit codes)
plots      static figures of column files
sample     building a sample region in WorldCover layout from a real scene
servers    loopback plumbing of the local WMS (ports, CGI gateway)
demo       ``make demo``: the whole pipeline offline on the sample region
cli        ``python -m wcembed ...``
========== ==================================================================
"""

import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

try:
    __version__ = version("wcembed")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0+unknown"


def _root() -> Path:
    if os.environ.get("WCEMBED_ROOT"):
        return Path(os.environ["WCEMBED_ROOT"])
    package = Path(__file__).resolve().parent
    tree = package.parents[1]
    if (tree / "notebooks").is_dir() and (tree / "lib" / "wcembed").is_dir():
        return tree  # a source tree (an editable install, or running from the tree)
    return package  # an installed package: its notebooks/ and batch/ travel inside it


ROOT = _root()
"""The folder that holds ``notebooks/`` and ``batch/``: ``$WCEMBED_ROOT`` if set (the Batch image sets
it), else the source tree this package is imported from, else the installed package itself (whatever the
working folder)."""
NOTEBOOKS = ROOT / "notebooks"
"""The notebooks that papermill runs."""
