"""Shared fixtures: the real sample region, synthetic corner tiles, local servers."""

from __future__ import annotations

import os

import pytest
from builders import tiny_model, write_corner_tiles
from filelock import FileLock
from local_servers import RangeServer, moto_s3
from wcembed.tools.sample import build_sample_region

# Tests never reach the network: fail fast instead of trying real hosts.
os.environ.setdefault("GDAL_HTTP_TIMEOUT", "20")


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory, worker_id) -> str:
    """The real Virginia Sentinel-2 scene in WorldCover layout (full 12000 px tile N37W076), 2020 and 2021: built
    once for all the test processes of a run (tests read it, never change it)."""
    if worker_id == "master":  # one process: its own folder
        root = tmp_path_factory.mktemp("sample")
        build_sample_region(root, years=(2020, 2021))
        return str(root)
    shared = tmp_path_factory.getbasetemp().parent  # the run's folder, above each worker's
    root, built = shared / "sample", shared / "sample.built"
    with FileLock(str(shared / "sample.lock")):
        if not built.exists():
            build_sample_region(root, years=(2020, 2021))
            built.touch()
    return str(root)


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
    from wcembed.core.tileset import plan_grid
    from wcembed.explore.data.index import ChipIndex
    from wcembed.explore.data.ingest import ingest
    from wcembed.explore.views.wms import LocalWMS
    from wcembed.pipeline.embed import embed_column

    tmp = tmp_path_factory.mktemp("explore")
    grid = plan_grid(2020, sample_root)
    model = tiny_model()
    for column in range(1153, 1161):
        embed_column(2020, column, output=tmp / "emb", tiles=sample_root, model=model, grid=grid, progress=False)
    ingest(tmp / "emb", tmp / "db")
    with LocalWMS(sample_root, tmp / "ms") as wms:
        yield grid, ChipIndex(tmp / "db"), wms, tmp


LONGEST_FIRST = (
    "test_demo.py", "test_embed.py", "test_chaos.py", "test_batch.py", "test_lab_browser.py", "test_model.py",
)  # fmt: skip
"""Files whose tests take minutes, longest first: started first, so that ``make test``'s workers finish together
(the Makefile's ``--no-loadscope-reorder`` keeps xdist from ordering files by their number of tests instead)."""


def pytest_collection_modifyitems(items) -> None:
    """Put the longest files first, each file's tests in their own order (module fixtures are built once)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
