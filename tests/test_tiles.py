"""Reading chips stitched across tiles, from a folder, HTTP range requests and S3."""

import shutil
from pathlib import Path

import boto3
import numpy as np
import pytest
import rasterio
from conftest import CORNER_TILES
from local_servers import RangeServer
from rasterio.merge import merge
from rasterio.windows import Window
from wcembed.errors import TileCorruptError, TileFormatError, TileMissingError, TileTransientError, TransientError
from wcembed.grid import Grid
from wcembed.pipeline.tiles import ChipReader
from wcembed.product import tile_key
from wcembed.sample import write_tile
from wcembed.tileset import load_tiles

# Around the corner (lon -100, lat 40): column 585 and row 234 cross the tile edges.
ONE, TWO_X, TWO_Y, FOUR = (584, 233), (585, 233), (584, 234), (585, 234)


def mosaic_window(root, tiles, grid, chip, year=2020):
    """The chip's window cut from an independent mosaic of the tiles (rasterio.merge)."""
    paths = [root / tile_key(t, year) for t in tiles]
    srcs = [rasterio.open(p) for p in paths]
    try:
        arr, _ = merge(srcs, bounds=grid.chip_bounds(*chip), res=(1 / 12000, 1 / 12000), nodata=0)
    finally:
        for s in srcs:
            s.close()
    return arr


@pytest.mark.parametrize("chip,n", [(ONE, 1), (TWO_X, 2), (TWO_Y, 2), (FOUR, 4)])
def test_stitched_chip_equals_an_independent_mosaic(corner_root, chip, n):
    grid = Grid(CORNER_TILES)
    assert sum(p.exists for p in grid.chip_pieces(*chip)) == n
    with ChipReader(grid, 2020, str(corner_root)) as reader:
        got = reader.read(*chip)
    want = mosaic_window(corner_root, CORNER_TILES, grid, chip)
    assert got.pixels.shape == want.shape == (4, 512, 512)
    np.testing.assert_array_equal(got.pixels, want)
    assert got.valid.all()


def test_missing_neighbour_tile_is_nodata(corner_root):
    present = CORNER_TILES[:3]  # N39W100 (south-east) does not exist
    grid = Grid(present)
    with ChipReader(grid, 2020, str(corner_root)) as reader:
        got = reader.read(*FOUR)
    want = mosaic_window(corner_root, present, grid, FOUR)
    np.testing.assert_array_equal(got.pixels, want)
    # the south-east piece (rows from 384, cols from 128) is nodata and masked
    piece = next(p for p in grid.chip_pieces(*FOUR) if p.tile == "N39W100")
    cw = piece.chip_window
    assert not got.valid[cw.row_off :, cw.col_off :].any()
    assert got.valid_fraction == pytest.approx(1 - cw.width * cw.height / 512**2)


def test_real_sample_chip_matches_direct_read(sample_root):
    """Full 12000 x 12000 px tile geometry: the reader's window is the tile's own pixels."""
    tiles = load_tiles(sample_root, 2020)
    assert tiles == ["N37W076"]
    grid = Grid(tiles)
    c, r = grid.chip_at(-75.62, 37.67)
    (piece,) = grid.chip_pieces(c, r)
    with ChipReader(grid, 2020, sample_root) as reader:
        chip = reader.read(c, r)
    with rasterio.open(f"{sample_root}/{tile_key('N37W076', 2020)}") as ds:
        assert (ds.width, ds.height) == (12000, 12000)
        direct = ds.read(window=piece.window)
    np.testing.assert_array_equal(chip.pixels, direct)
    assert chip.valid_fraction == 1.0
    assert 300 < np.median(chip.pixels[0]) < 3000  # real reflectance x 10000


def test_same_chip_from_folder_http_and_s3(sample_root, s3_endpoint):
    grid = Grid(load_tiles(sample_root, 2020))
    chip = grid.chip_at(-75.60, 37.70)
    with ChipReader(grid, 2020, sample_root) as reader:
        local = reader.read(*chip).pixels
    with RangeServer(sample_root) as srv, ChipReader(grid, 2020, srv.url) as reader:
        http = reader.read(*chip).pixels
        ranges = [r for r in srv.requests() if r["method"] == "GET"]
        assert ranges and all(r["status"] == 206 and r["range"] for r in ranges)
    key = tile_key("N37W076", 2020)
    boto3.client("s3").upload_file(f"{sample_root}/{key}", "wc-tiles", f"mirror/{key}")
    with ChipReader(grid, 2020, "s3://wc-tiles/mirror") as reader:
        s3 = reader.read(*chip).pixels
    np.testing.assert_array_equal(local, http)
    np.testing.assert_array_equal(local, s3)


def test_column_reads_each_block_once(sample_root):
    grid = Grid(load_tiles(sample_root, 2020))
    column = grid.chip_at(-75.62, 37.67)[0]
    with RangeServer(sample_root) as srv:
        with ChipReader(grid, 2020, srv.url) as reader:
            chips = [reader.read(c, r) for c, r in grid.chips(column)]
        gets = [q for q in srv.requests() if q["method"] == "GET"]
    assert len(chips) == 24
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
    with ChipReader(grid, 2020, str(tmp_path)) as reader, pytest.raises(TileMissingError) as err:
        reader.read(*grid.chip_at(-75.6, 37.7))
    assert "N37W076" in str(err.value)
    with RangeServer(tmp_path) as srv, ChipReader(grid, 2020, srv.url) as reader:
        with pytest.raises(TileMissingError) as err:
            reader.read(*grid.chip_at(-75.6, 37.7))
        assert srv.url in str(err.value)


def test_500_then_success_is_retried(sample_root):
    grid = Grid(["N37W076"])
    chip = grid.chip_at(-75.6, 37.7)
    with RangeServer(sample_root, faults=[("N37W076", 500, 2)]) as srv, ChipReader(grid, 2020, srv.url) as reader:
        got = reader.read(*chip)
        statuses = [q["status"] for q in srv.requests()]
    assert statuses[:2] == [500, 500] and 206 in statuses
    assert got.valid_fraction == 1.0


def test_persistent_500_fails_as_transient_naming_tile_and_url(sample_root):
    grid = Grid(["N37W076"])
    faults = [("N37W076", 503, 1000)]
    with RangeServer(sample_root, faults=faults) as srv, ChipReader(grid, 2020, srv.url, retries=1, backoff=0.01) as rd:
        with pytest.raises(TileTransientError) as err:
            rd.read(*grid.chip_at(-75.6, 37.7))
    assert isinstance(err.value, TransientError)
    assert "N37W076" in str(err.value) and srv.url in str(err.value)


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
    with ChipReader(grid, 2020, str(tmp_path)) as reader, pytest.raises(TileCorruptError):
        reader.read(*chip)
    full = Path(sample_root, tile_key("N37W076", 2020)).read_bytes()
    dst.write_bytes(full[: len(full) // 2])
    with ChipReader(grid, 2020, str(tmp_path)) as reader, pytest.raises(TileCorruptError):
        for c, r in grid.chips(chip[0]):
            reader.read(c, r)


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
    with ChipReader(grid, 2020, str(tmp_path)) as reader, pytest.raises(TileFormatError, match=match):
        reader.read(*grid.chip_at(-75.6, 37.7))


def test_wrong_transform(tmp_path):
    grid = Grid(["N37W076"])
    # the right pixels written for the wrong tile (N36W076) under N37W076's name
    from wcembed.product import Tile

    write_tile(
        tmp_path / tile_key("N37W076", 2020),
        Tile(36, -76),
        np.ones((4, 8, 8), np.uint16),
        Window(0, 0, 8, 8),
        overviews=False,
    )
    with ChipReader(grid, 2020, str(tmp_path)) as reader, pytest.raises(TileFormatError, match="transform"):
        reader.read(*grid.chip_at(-75.6, 37.7))


def test_an_untrusted_tls_certificate_is_named_at_once_not_retried(sample_root):
    from wcembed.errors import EXIT_BAD_INPUT, TileCertificateError, exit_code
    from wcembed.tileset import plan_grid

    grid = plan_grid(2020, sample_root)
    with RangeServer(sample_root, tls=True) as srv, ChipReader(grid, 2020, srv.url) as reader:
        with pytest.raises(TileCertificateError, match="GDAL_CURL_CA_BUNDLE") as info:
            reader.read(1156, 288)  # this process was not given the server's throwaway CA
    assert exit_code(info.value) == EXIT_BAD_INPUT and srv.url in str(info.value)
