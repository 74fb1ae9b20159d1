"""wcembed: Clay v0 embeddings of ESA WorldCover Sentinel-2 composites, chip by chip.

Modules, each named for what it holds:

========== ==================================================================
product    facts of ESA's product: years, versions, tile names, URLs, bands
grid       the chip grid: chips and windows (integer pixel arithmetic)
tileset    which tiles exist (ESA tile index, land outline, local folder)
tiles      reading chips stitched across tiles (local, HTTP(S), S3)
sample     building a sample region in WorldCover layout from a real scene
model      the Clay v0 encoder's architecture
weights    Clay weights: the record, checkpoint download and strict loading
inference  model inputs and batched, device-aware inference (``Embedder``)
job        a column job's parameters, defined once (``ColumnJob``)
embed      the column pipeline: read -> embed -> hand over to store
store      the output file: GeoParquet + STAC, metadata, atomic local/S3 writes
batch      AWS Batch requests, entrypoint and local array runner
index      LanceDB ingest and similarity search (``ChipIndex``)
classify   labels, a spatially cross-validated classifier, scores
wms        WMS client (OWSLib) and the local MapServer for offline use
servers    loopback plumbing of the local WMS (ports, CGI gateway)
explore    the live leafmap map and its widgets (``Explorer``)
styles     how results, labels and scores look on a map (styled GeoJSON)
pages      the map as a standalone page, and headless-Chromium screenshots
figures    static figures (PCA map of a column, thumbnail gallery)
demo       ``make demo``: the whole pipeline offline on the sample region
cli        ``python -m wcembed ...``
errors     the exceptions: transient (retry) or bad input (do not)
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
    here = Path(__file__).resolve().parents[2]
    return Path(os.environ.get("WCEMBED_ROOT") or here)


ROOT = _root()
"""The folder that holds ``notebooks/`` and ``batch/``: ``$WCEMBED_ROOT`` if set (the Batch image sets
it), else the source tree this package is imported from (an editable install, or running from the tree)."""
NOTEBOOKS = ROOT / "notebooks"
"""The notebooks that papermill runs."""
