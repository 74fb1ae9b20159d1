"""Reading chips through the pipeline's one path (a band plan of the chips, :func:`read_chips`), stitched
across tiles, from a folder, HTTP range requests and S3, and the tile reader's errors on that path."""

import shutil
from pathlib import Path

import boto3
import numpy as np
import pytest
import rasterio
from builders import CORNER_TILES, mosaic_chip
from local_servers import RangeServer
from rasterio.windows import Window
from wcembed.core.errors import TileCorruptError, TileFormatError, TileMissingError, TileTransientError, TransientError
from wcembed.core.grid import Grid
from wcembed.core.product import tile_key
from wcembed.core.tileset import load_tiles
from wcembed.pipeline.bands import read_chips
from wcembed.tools.sample import write_tile

# Around the corner (lon -100, lat 40): column 585 and row 234 cross the tile edges.
ONE, TWO_X, TWO_Y, FOUR = (584, 233), (585, 233), (584, 234), (585, 234)


def read_one(grid, source, chip, **kw):
    """One chip's pixels and valid fraction, read as the pipeline reads."""
    got = read_chips(grid, 2020, str(source), [chip], **kw)
    return got.pixels[0], got.valid_fraction[0]


@pytest.mark.parametrize("chip,n", [(ONE, 1), (TWO_X, 2), (TWO_Y, 2), (FOUR, 4)])
def test_stitched_chip_equals_an_independent_mosaic(corner_root, chip, n):
    grid = Grid(CORNER_TILES)
    assert sum(p.exists for p in grid.chip_pieces(*chip)) == n
    pixels, valid = read_one(grid, corner_root, chip)
    want = mosaic_chip(corner_root, grid, chip)
    assert pixels.shape == want.shape == (4, 512, 512)
    np.testing.assert_array_equal(pixels, want)
    assert valid == 1.0


def test_chips_come_back_in_the_order_asked_with_repeats(corner_root):
    """Chips of several columns and rows, in no order and one twice: each slot holds its own chip."""
    grid = Grid(CORNER_TILES)
    chips = [FOUR, ONE, (590, 230), TWO_Y, ONE, TWO_X]
    got = read_chips(grid, 2020, str(corner_root), chips, columns_at_once=2)
    assert got.pixels.shape == (6, 4, 512, 512) and got.valid_fraction.shape == (6,)
    for chip, pixels in zip(chips, got.pixels, strict=True):
        np.testing.assert_array_equal(pixels, mosaic_chip(corner_root, grid, chip))


def test_missing_neighbour_tile_is_nodata(corner_root):
    present = CORNER_TILES[:3]  # N39W100 (south-east) does not exist
    grid = Grid(present)
    pixels, valid = read_one(grid, corner_root, FOUR)
    np.testing.assert_array_equal(pixels, mosaic_chip(corner_root, grid, FOUR))
    # the south-east piece (rows from 384, cols from 128) is nodata
    piece = next(p for p in grid.chip_pieces(*FOUR) if p.tile == "N39W100")
    cw = piece.chip_window
    assert not pixels[:, cw.row_off :, cw.col_off :].any()
    assert valid == pytest.approx(1 - cw.width * cw.height / 512**2)


def test_real_sample_chip_matches_direct_read(sample_root):
    """Full 12000 x 12000 px tile geometry: the chip is the tile's own pixels under its window."""
    tiles = load_tiles(sample_root, 2020)
    assert tiles == ["N37W076"]
    grid = Grid(tiles)
    c, r = grid.chip_at(-75.62, 37.67)
    (piece,) = grid.chip_pieces(c, r)
    pixels, valid = read_one(grid, sample_root, (c, r))
    with rasterio.open(f"{sample_root}/{tile_key('N37W076', 2020)}") as ds:
        assert (ds.width, ds.height) == (12000, 12000)
        direct = ds.read(window=piece.window)
    np.testing.assert_array_equal(pixels, direct)
    assert valid == 1.0
    assert 300 < np.median(pixels[0]) < 3000  # real reflectance x 10000


def test_same_chip_from_folder_http_and_s3(sample_root, s3_endpoint):
    grid = Grid(load_tiles(sample_root, 2020))
    chip = grid.chip_at(-75.60, 37.70)
    local, _ = read_one(grid, sample_root, chip)
    with RangeServer(sample_root) as srv:
        http, _ = read_one(grid, srv.url, chip)
        ranges = [r for r in srv.requests() if r["method"] == "GET"]
        assert ranges and all(r["status"] == 206 and r["range"] for r in ranges)
    key = tile_key("N37W076", 2020)
    boto3.client("s3").upload_file(f"{sample_root}/{key}", "wc-tiles", f"mirror/{key}")
    s3, _ = read_one(grid, "s3://wc-tiles/mirror", chip)
    np.testing.assert_array_equal(local, http)
    np.testing.assert_array_equal(local, s3)


def test_column_reads_each_block_once(sample_root):
    grid = Grid(load_tiles(sample_root, 2020))
    column = grid.chip_at(-75.62, 37.67)[0]
    with RangeServer(sample_root) as srv:
        chips = read_chips(grid, 2020, srv.url, list(grid.chips(column)))
        gets = [q for q in srv.requests() if q["method"] == "GET"]
    assert len(chips.pixels) == 24
    spans = [tuple(int(v) for v in q["range"].split("=")[1].split("-")) for q in gets]
    # the blocks the column touches, located by their offsets in the TIFF
    x0 = grid.chip_pieces(column, 0)[0].window.col_off
    blocks = {}
    with rasterio.open(f"{sample_root}/{tile_key('N37W076', 2020)}") as ds:
        for by in range(12):
            for bx in {x0 // 1024, (x0 + 511) // 1024}:
                offset = ds.get_tag_item(f"BLOCK_OFFSET_{bx}_{by}", "TIFF", bidx=1)
                if offset:  # sparse (all-nodata) blocks are not stored
                    blocks[(bx, by)] = int(offset)
    assert blocks
    for block, offset in blocks.items():
        fetched = sum(a <= offset <= b for a, b in spans)
        assert fetched == 1, f"block {block} fetched {fetched} times"


# ---------------------------------------------------------------------------- errors


def test_404_on_a_tile_the_set_says_exists(tmp_path):
    grid = Grid(["N37W076"])
    with pytest.raises(TileMissingError) as err:
        read_one(grid, tmp_path, grid.chip_at(-75.6, 37.7))
    assert "N37W076" in str(err.value)
    with RangeServer(tmp_path) as srv:
        with pytest.raises(TileMissingError) as err:
            read_one(grid, srv.url, grid.chip_at(-75.6, 37.7))
        assert srv.url in str(err.value)


@pytest.mark.parametrize("fault,count", [(500, 2), (503, 1), (429, 1), ("reset", 2), ("cut", 2)])
def test_transient_faults_are_retried_to_the_right_pixels(sample_root, fault, count):
    """HTTP 5xx, 429 (with Retry-After), a reset connection and a body cut short: retried, then the
    chip's exact pixels."""
    grid = Grid(["N37W076"])
    chip = grid.chip_at(-75.6, 37.7)
    with RangeServer(sample_root, faults=[("N37W076", fault, count)]) as srv:
        pixels, valid = read_one(grid, srv.url, chip, backoff=0.05)
        statuses = [str(q["status"]) for q in srv.requests()]
    assert statuses[:count] == [str(fault)] * count and "206" in statuses
    np.testing.assert_array_equal(pixels, mosaic_chip(sample_root, grid, chip))
    assert valid == 1.0


def test_persistent_500_fails_as_transient_naming_tile_and_url(sample_root, monkeypatch):
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "1")  # GDAL's retries, before the reader's own
    monkeypatch.setenv("GDAL_HTTP_RETRY_DELAY", "0.05")
    grid = Grid(["N37W076"])
    faults = [("N37W076", 503, 1000)]
    with RangeServer(sample_root, faults=faults) as srv:
        with pytest.raises(TileTransientError) as err:
            read_one(grid, srv.url, grid.chip_at(-75.6, 37.7), retries=1, backoff=0.01)
        statuses = [q["status"] for q in srv.requests()]
    # GDAL's two requests (1 + 1 retry), then the reader's retry asks the server again
    assert set(statuses) == {503} and len(statuses) > 2
    assert isinstance(err.value, TransientError)
    assert "N37W076" in str(err.value) and srv.url in str(err.value)


def test_a_tile_that_failed_to_open_is_asked_for_again(sample_root, monkeypatch):
    """GDAL keeps a failed open's answer; the reader's retry reaches the server anyway, and succeeds once
    the server recovers."""
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "0")  # every fault reaches the reader
    grid = Grid(["N37W076"])
    chip = grid.chip_at(-75.6, 37.7)
    with RangeServer(sample_root, faults=[("N37W076", 503, 2)]) as srv:
        pixels, _ = read_one(grid, srv.url, chip, retries=3, backoff=0.01)
        statuses = [q["status"] for q in srv.requests()]
    assert statuses[:2] == [503, 503] and 206 in statuses
    np.testing.assert_array_equal(pixels, mosaic_chip(sample_root, grid, chip))


def test_a_tile_removed_from_the_server_is_missing_not_corrupt(sample_root, tmp_path):
    """GDAL keeps what it learnt of a URL (size, header, blocks) for the process: a tile removed from the
    server after it was read once is told missing (asked again, uncached), not undecodable."""
    grid = Grid(["N37W076"])
    dst = _copy_tile(sample_root, tmp_path)
    first, other = grid.chip_at(-75.6, 37.7), grid.chip_at(-75.55, 37.7)
    with RangeServer(tmp_path) as srv:
        read_one(grid, srv.url, first)
        dst.unlink()
        with pytest.raises(TileMissingError) as err:
            read_one(grid, srv.url, other)
        statuses = [q["status"] for q in srv.requests()]
    assert "N37W076" in str(err.value) and statuses[-1] == 404


def _copy_tile(sample_root, tmp_path):
    dst = tmp_path / tile_key("N37W076", 2020)
    dst.parent.mkdir(parents=True)
    shutil.copy(f"{sample_root}/{tile_key('N37W076', 2020)}", dst)
    return dst


def test_corrupt_and_truncated_files(sample_root, tmp_path):
    grid = Grid(["N37W076"])
    chip = grid.chip_at(-75.6, 37.7)
    dst = _copy_tile(sample_root, tmp_path)
    dst.write_bytes(b"this is not a tiff" * 100)
    with pytest.raises(TileCorruptError):
        read_one(grid, tmp_path, chip)
    full = Path(sample_root, tile_key("N37W076", 2020)).read_bytes()
    dst.write_bytes(full[: len(full) // 2])
    with pytest.raises(TileCorruptError):
        read_chips(grid, 2020, str(tmp_path), list(grid.chips(chip[0])))


@pytest.mark.parametrize(
    "count,dtype,match", [(3, "uint16", "3 bands"), (4, "uint8", "dtypes"), (4, "int16", "dtypes")]
)
def test_wrong_band_count_or_dtype(tmp_path, count, dtype, match):
    grid = Grid(["N37W076"])
    path = tmp_path / tile_key("N37W076", 2020)
    path.parent.mkdir(parents=True)
    profile = dict(
        driver="GTiff",
        width=12000,
        height=12000,
        count=count,
        dtype=dtype,
        crs="EPSG:4326",
        tiled=True,
        blockxsize=1024,
        blockysize=1024,
        compress="deflate",
        sparse_ok=True,
        transform=rasterio.Affine(1 / 12000, 0, -76, 0, -1 / 12000, 38),
    )
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(np.ones((count, 16, 16), dtype=dtype), window=Window(0, 0, 16, 16))
    with pytest.raises(TileFormatError, match=match):
        read_one(grid, tmp_path, grid.chip_at(-75.6, 37.7))


def test_wrong_transform(tmp_path):
    grid = Grid(["N37W076"])
    # the right pixels written for the wrong tile (N36W076) under N37W076's name
    from wcembed.core.product import Tile

    write_tile(
        tmp_path / tile_key("N37W076", 2020),
        Tile(36, -76),
        np.ones((4, 8, 8), np.uint16),
        Window(0, 0, 8, 8),
        overviews=False,
    )
    with pytest.raises(TileFormatError, match="transform"):
        read_one(grid, tmp_path, grid.chip_at(-75.6, 37.7))


def test_an_untrusted_tls_certificate_is_named_at_once_not_retried(sample_root):
    from wcembed.core.errors import EXIT_BAD_INPUT, TileCertificateError, exit_code
    from wcembed.core.tileset import plan_grid

    grid = plan_grid(2020, sample_root)
    with RangeServer(sample_root, tls=True) as srv:
        with pytest.raises(TileCertificateError, match="GDAL_CURL_CA_BUNDLE") as info:
            read_one(grid, srv.url, (1156, 288))  # this process was not given the server's throwaway CA
    assert exit_code(info.value) == EXIT_BAD_INPUT and srv.url in str(info.value)


@pytest.mark.parametrize(
    "name,value",
    [("GDAL_HTTP_MAX_RETRY", "four"), ("GDAL_HTTP_MAX_RETRY", "-1"), ("GDAL_HTTP_TIMEOUT", "2.5"),
     ("GDAL_HTTP_RETRY_DELAY", "nan"), ("GDAL_HTTP_RETRY_DELAY", "-0.5")],
)  # fmt: skip
def test_a_bad_gdal_setting_in_the_environment_is_named(monkeypatch, sample_root, name, value):
    """A GDAL retry setting in the environment that is not a number ≥ 0 stops the read before any request,
    naming the variable and its value; a valid one, or an empty one (the default), is used."""
    from wcembed.core.errors import BadParameterError
    from wcembed.core.tileset import plan_grid
    from wcembed.pipeline.tiles import gdal_options

    monkeypatch.setenv(name, value)
    with pytest.raises(BadParameterError, match=f"^{name} in the environment must be .* ≥ 0, not '{value}'$"):
        read_one(plan_grid(2020, sample_root), sample_root, (1156, 288))
    monkeypatch.setenv(name, "")
    assert gdal_options(str(sample_root))[name] == {"GDAL_HTTP_MAX_RETRY": 4, "GDAL_HTTP_TIMEOUT": 60}.get(name, 0.5)
    monkeypatch.setenv(name, "3")
    assert gdal_options(str(sample_root))[name] == 3
