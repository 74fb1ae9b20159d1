"""OWSLib against the local MapServer WMS: real imagery, the source tile's pixels."""

import io
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from local_servers import interrupt, start_cli, wait_for_url
from PIL import Image
from wcembed.core.product import layer_name, tile_key
from wcembed.core.tileset import plan_grid
from wcembed.explore.views.wms import FCC_SCALE, TCC_SCALE, LocalWMS, WMSClient


@pytest.fixture(scope="module")
def wms(sample_root, tmp_path_factory):
    with LocalWMS(sample_root, tmp_path_factory.mktemp("ms")) as server:
        yield server


def stretch(values, lo_hi):
    lo, hi = lo_hi
    return np.clip((values.astype(np.float64) - lo) * 255.0 / (hi - lo), 0, 255)


@pytest.mark.parametrize("kind,bands,scale", [("TCC", (1, 2, 3), TCC_SCALE), ("FCC", (4, 1, 2), FCC_SCALE)])
def test_getmap_returns_the_source_pixels(wms, sample_root, tmp_path, kind, bands, scale):
    grid = plan_grid(2020, sample_root)
    c, r = 1156, 288
    (piece,) = grid.chip_pieces(c, r)
    client = WMSClient(wms.url, cache_dir=tmp_path / "cache")
    assert layer_name(2020, kind) in client.layers()
    png = client.thumbnail(grid.chip_bounds(c, r), layer_name(2020, kind), size=(512, 512))
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))
    assert img.shape == (512, 512, 4)
    with rasterio.open(f"{sample_root}/{tile_key('N37W076', 2020)}") as ds:
        src = ds.read(list(bands), window=piece.window)
    want = stretch(src, scale).transpose(1, 2, 0)
    diff = np.abs(img[..., :3].astype(float) - want)
    assert (diff <= 1.5).mean() > 0.99, f"only {(diff <= 1.5).mean():.3f} of pixels match"
    assert (img[..., 3] == 255).all()  # all data, opaque
    assert list((tmp_path / "cache").glob("*.png"))  # cached on disk
    assert client.thumbnail(grid.chip_bounds(c, r), layer_name(2020, kind), size=(512, 512)) == png


def test_outside_the_data_is_transparent(wms, sample_root):
    grid = plan_grid(2020, sample_root)
    png = WMSClient(wms.url, cache_dir=None).thumbnail(grid.chip_bounds(1150, 280), layer_name(2020), (128, 96))
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))
    assert img.shape == (96, 128, 4) and (img[..., 3] == 0).all()


def test_layer_names():
    assert layer_name(2021, "map") == "WORLDCOVER_2021_MAP"
    assert layer_name(2020, "FCC") == "WORLDCOVER_2020_S2_FCC"
    with pytest.raises(ValueError):
        layer_name(2020, "NDVI")


def test_server_rendered_chip_footprints(sample_root, tmp_path):
    """The CHIPS layer draws every footprint on the server (no GeoJSON per chip in the browser)."""
    import geopandas as gpd
    from wcembed.core.grid import Grid

    grid = Grid(["N37W076"])
    chips = grid.to_geodataframe(2020)  # all 576 chips of the tile
    chips.to_file(tmp_path / "chips.fgb", driver="FlatGeobuf")
    with LocalWMS(sample_root, tmp_path / "ms", footprints=tmp_path / "chips.fgb") as server:
        client = WMSClient(server.url, cache_dir=None)
        assert "CHIPS" in client.layers()
        w, s, e, n = grid.chip_bounds(1156, 288)
        png = client.thumbnail((w - 0.01, s - 0.01, e + 0.01, n + 0.01), "CHIPS", (300, 300))
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))
    drawn = img[..., 3] > 0
    assert 0.005 < drawn.mean() < 0.2  # outlines, not fills
    yellow = drawn & (img[..., 0] > 200) & (img[..., 1] > 200) & (img[..., 2] < 80)
    assert yellow.sum() > 0.8 * drawn.sum()
    # an outline runs along the chip's western edge, at x = (w - (w - 0.01)) / width * 300 px
    col = round(0.01 / (e - w + 0.02) * 300)
    assert drawn[:, max(col - 2, 0) : col + 3].any(axis=1).mean() > 0.8
    assert isinstance(gpd.read_file(tmp_path / "chips.fgb"), gpd.GeoDataFrame)


def test_serve_wms_command_serves_until_ctrl_c(sample_root, tmp_path):
    import socket

    from wcembed.tools.servers import free_port

    port = free_port()
    proc, out = start_cli(["serve-wms", sample_root, "--port", str(port), "--workdir", str(tmp_path)], "Ctrl-C")
    try:
        url = f"http://127.0.0.1:{port}/cgi-bin/mapserv"
        assert url in out and layer_name(2020, "TCC") in out
        assert layer_name(2020, "TCC") in WMSClient(url, cache_dir=None).layers()
    finally:
        code = interrupt(proc)
    assert code == 0
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass  # the WMS stopped with it


@pytest.fixture(scope="module")
def lab_db(tmp_path_factory):
    """A database of one small synthetic set (what ``lab`` opens)."""
    from builders import synthetic_index

    root = tmp_path_factory.mktemp("lab_db")
    return synthetic_index(root, lambda y, c, r: np.random.default_rng([c, r, y]).normal(size=8), years=(2020,)).db


def test_lab_refuses_what_it_cannot_open_before_starting_anything(lab_db, tmp_path):
    """A database that is a file or holds no set, a missing labels file or checkpoint, a set to compare with
    that the database lacks: one line each (exit 65), before any server starts."""
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    cases = {
        ("--db", str(tmp_path / "file")): "not a database folder",
        ("--db", str(tmp_path / "empty")): "no embedding set in it",
        ("--db", str(lab_db), "--labels", str(tmp_path / "none.geojson")): "--labels",
        ("--db", str(lab_db), "--checkpoint", str(tmp_path / "none.ckpt")): "--checkpoint",
        ("--db", str(lab_db), "--compare-set", "nope"): "the database holds wcembed",
        ("--db", str(lab_db), "--set", "nope"): "--set 'nope': the database holds wcembed",
    }
    for args, says in cases.items():
        done = subprocess.run([sys.executable, "-m", "wcembed", "lab", *args, "--no-browser"], capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        assert done.returncode == 65 and says in done.stderr and done.stderr.count("\n") == 1, (args, done.stderr)


@pytest.mark.slow
def test_lab_command_opens_the_explore_notebook_pointed_at_the_wms(sample_root, lab_db, tmp_path):
    import json
    import re

    from wcembed.tools.servers import free_port

    lab_port = free_port()
    nb = tmp_path / "explore_live.ipynb"
    args = ["lab", "--tiles", sample_root, "--db", str(lab_db), "--workdir", str(tmp_path / "ms")]
    args += ["--notebook-out", str(nb), "--lab-port", str(lab_port), "--no-browser", "--port", str(free_port())]
    proc, out = start_cli(args, "Ctrl-C stops both")
    try:
        wms_url = re.search(r"WMS (http\S+); JupyterLab", out)[1]
        (params,) = [c for c in json.loads(nb.read_text())["cells"] if "injected-parameters" in str(c)]
        assert wms_url in str(params) and str(lab_db) in str(params)
        assert layer_name(2020, "TCC") in WMSClient(wms_url, cache_dir=None).layers()
        status, body = wait_for_url(f"http://127.0.0.1:{lab_port}/lab")  # JupyterLab takes a few seconds
        assert status in (200, 302) or "JupyterLab" in body
    finally:
        code = interrupt(proc)
    assert code == 0


@pytest.mark.parametrize("name", ['v" DEBUG 5 DATA "x', "it's", "back\\slash", "new\nline"])
def test_a_path_a_mapfile_cannot_quote_is_refused(sample_root, tmp_path, name):
    """A tile folder whose name would end a mapfile string (and inject directives after it) is refused in one
    line, before any mapfile is written; the same tiles under a plain name are served."""
    import shutil

    from wcembed.core.errors import BadParameterError
    from wcembed.explore.views.wms import mapfile

    odd = tmp_path / name / "tiles"
    shutil.copytree(sample_root, odd)
    with pytest.raises(BadParameterError, match="which a MapServer mapfile cannot quote"):
        mapfile(odd, "http://127.0.0.1:9/wms")
    done = subprocess.run([sys.executable, "-m", "wcembed", "serve-wms", str(odd), "--workdir", str(tmp_path / "ms")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 65 and done.stderr.count("\n") == 1 and "cannot quote" in done.stderr
    assert not (tmp_path / "ms" / "wms.map").exists()
    assert "DEBUG" not in mapfile(sample_root, "http://127.0.0.1:9/wms")


@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_serve_wms_without_tiles_says_so(tmp_path, kind):
    """A missing or empty tile folder is refused in one line (exit 65), also with chip footprints at hand:
    a WMS without imagery would serve nothing."""
    folder = tmp_path / "tiles"
    if kind == "empty":
        folder.mkdir()
    (tmp_path / "chips.fgb").write_bytes(b"")
    args = ["serve-wms", str(folder), "--workdir", str(tmp_path / "ms"), "--footprints", str(tmp_path / "chips.fgb")]
    done = subprocess.run([sys.executable, "-m", "wcembed", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 65 and "no WorldCover-layout tile" in done.stderr and done.stderr.count("\n") == 1


@pytest.mark.slow
def test_a_killed_lab_leaves_no_jupyterlab_and_a_busy_port_is_refused(sample_root, lab_db, tmp_path):
    """``lab`` killed with SIGKILL: its JupyterLab and its WMS end with it (nothing keeps listening with its
    token); a ``lab`` on a port in use says so in one line instead of printing the URL of another server."""
    import signal
    import socket
    import time

    from wcembed.tools.servers import free_port

    lab_port = free_port()
    args = ["lab", "--tiles", sample_root, "--db", str(lab_db), "--workdir", str(tmp_path / "ms")]
    args += ["--notebook-out", str(tmp_path / "nb.ipynb"), "--lab-port", str(lab_port), "--no-browser"]
    proc, _ = start_cli(args, "Ctrl-C stops both")
    wait_for_url(f"http://127.0.0.1:{lab_port}/lab")
    busy = subprocess.run([sys.executable, "-m", "wcembed", *args], capture_output=True, text=True, timeout=120)
    assert busy.returncode == 65 and f"port {lab_port}" in busy.stderr and "in use" in busy.stderr
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", lab_port), timeout=1).close()
        except OSError:
            break
        time.sleep(0.5)
    else:
        pytest.fail("JupyterLab still listens after its lab was killed")
