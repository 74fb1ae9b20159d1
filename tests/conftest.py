"""Shared fixtures: the real sample region, synthetic corner tiles, local servers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from builders import tiny_model
from local_servers import RangeServer, moto_s3
from rasterio.windows import Window
from wcembed import NOTEBOOKS
from wcembed.product import Tile, tile_key
from wcembed.sample import build_sample_region, write_tile

# Tests never reach the network: fail fast instead of trying real hosts.
os.environ.setdefault("GDAL_HTTP_TIMEOUT", "20")


def run_papermill(notebook: str, out: Path, params: dict, cwd: Path) -> str:
    """Execute ``notebooks/<notebook>`` with papermill's CLI in a new process, as a user would;
    return the executed notebook's text."""
    cmd = [sys.executable, "-m", "papermill", str(NOTEBOOKS / notebook), str(out), "--cwd", str(cwd)]
    for key, value in params.items():
        cmd += ["-p", key, str(value)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return Path(out).read_text()


CORNER_TILES = ("N40W101", "N40W100", "N39W101", "N39W100")
"""Synthetic tiles (random values, NOT imagery) meeting at lon -100, lat 40."""
CORNER_PX = 1536
"""Half-size of the synthetic data square around the shared corner, in px."""


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory) -> str:
    """The real Virginia Sentinel-2 scene in WorldCover layout (full 12000 px tile N37W076), 2020 and 2021."""
    root = tmp_path_factory.mktemp("sample")
    build_sample_region(root, years=(2020, 2021))
    return str(root)


def write_corner_tiles(root, tiles=CORNER_TILES, year: int = 2020, seed: int = 0) -> None:
    """Synthetic uint16 random data (not real imagery) in a square around the corner of 4 tiles."""
    rng = np.random.default_rng(seed)
    for name in tiles:
        t = Tile.from_name(name)
        # the corner (lon -100, lat 40) is at the tile's east/west and south/north edge
        col0 = 12000 - CORNER_PX if t.lon == -101 else 0
        row0 = 0 if t.lat == 39 else 12000 - CORNER_PX
        data = rng.integers(1, 10000, size=(4, CORNER_PX, CORNER_PX), dtype=np.uint16)
        write_tile(root / tile_key(t, year), t, data, Window(col0, row0, CORNER_PX, CORNER_PX), overviews=False)


@pytest.fixture(scope="session")
def corner_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("corner")
    write_corner_tiles(root)
    return root


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 server on loopback; AWS variables point boto3, s3fs, pyarrow and GDAL at it."""
    with moto_s3(buckets=("wc-tiles", "wc-out")) as endpoint:
        old = {
            k: os.environ.get(k)
            for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")
        }
        os.environ.update(
            AWS_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_REGION="us-east-1",
        )
        try:
            yield endpoint
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@pytest.fixture
def range_server(sample_root):
    with RangeServer(sample_root) as srv:
        yield srv


@pytest.fixture(scope="session")
def explore_db(sample_root, tmp_path_factory):
    """Embeddings of the sample region's columns 1153-1160 (small untrained encoder) in LanceDB, and a WMS."""
    from wcembed.explore.index import ChipIndex
    from wcembed.explore.ingest import ingest
    from wcembed.explore.wms import LocalWMS
    from wcembed.pipeline.embed import embed_column
    from wcembed.tileset import plan_grid

    tmp = tmp_path_factory.mktemp("explore")
    grid = plan_grid(2020, sample_root)
    model = tiny_model()
    for column in range(1153, 1161):
        embed_column(2020, column, output=tmp / "emb", tiles=sample_root, model=model, grid=grid, progress=False)
    ingest(tmp / "emb", tmp / "db")
    with LocalWMS(sample_root, tmp / "ms") as wms:
        yield grid, ChipIndex(tmp / "db"), wms, tmp


LONGEST_FIRST = ("test_demo.py", "test_chaos.py", "test_batch.py", "test_lab_browser.py")
"""Files whose tests take minutes: started first, so that ``make test``'s workers finish together."""


def pytest_collection_modifyitems(items) -> None:
    """Put the longest files first, each file's tests in their own order (module fixtures are built once)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
