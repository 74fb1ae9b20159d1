"""wcembed: Clay v0 embeddings of ESA WorldCover Sentinel-2 composites, chip by chip.

Its folders are its layers; a module imports only from the layers it sits on (``tests/test_layers_of_the_package.py``):

=========== ==================================================================
core        the shared facts and files: product, grid, tile set, file contract, store, errors
tools       helpers of the offline world: the sample region, local servers, static plots
pipeline    making embeddings and running that at scale (on ``core``)
explore     exploring them: ``data`` → ``compute`` → ``state`` → ``views`` (on ``core``)
apps        entry points: the command line and ``make demo`` (on everything)
=========== ==================================================================
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
