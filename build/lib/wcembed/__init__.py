"""wcembed: Clay v0 embeddings of ESA WorldCover Sentinel-2 composites, chip by chip.

Modules, each named for what it holds:

========== ==================================================================
grid       the chip grid: tiles, chips, windows (integer pixel arithmetic)
tileset    which tiles exist (ESA tile index, land outline, local folder)
tiles      reading chips stitched across tiles (local, HTTP(S), S3)
sample     building a sample region in WorldCover layout from a real scene
model      the Clay v0 encoder, checkpoint loading, preprocessing, inference
embed      the column pipeline: read -> embed -> GeoParquet
store      GeoParquet files and their metadata, local or S3, atomic writes
batch      AWS Batch requests, entrypoint and local array runner
index      LanceDB ingest and similarity search
wms        WMS client (OWSLib) and the local MapServer for offline use
explore    the leafmap map and click-to-neighbours widgets
cli        ``python -m wcembed ...``
========== ==================================================================
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("wcembed")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0+unknown"

ESA_HTTPS = "https://esa-worldcover-s2.s3.amazonaws.com"
"""Public https URL of the ESA WorldCover S2 composites bucket (the default tile source)."""
ESA_S3 = "s3://esa-worldcover-s2"
"""The same bucket over S3 (public, unsigned, eu-central-1)."""
ESA_WMS = "https://services.terrascope.be/wms/v2"
"""ESA WorldCover WMS (Terrascope)."""


def attribution(year: int) -> str:
    """The CC-BY 4.0 attribution required for WorldCover data of ``year``."""
    return (
        f"© ESA WorldCover project {year} / Contains modified Copernicus Sentinel data ({year}) "
        "processed by ESA WorldCover consortium"
    )
