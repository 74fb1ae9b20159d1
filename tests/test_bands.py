"""Band jobs: adjacent columns read together, each COG block once, one file per column."""

import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from builders import mosaic_chip, tiny_model
from local_servers import RangeServer, cog_block_bytes
from rasterio.windows import Window
from wcembed.core import store
from wcembed.core.errors import TileCorruptError
from wcembed.core.grid import Grid
from wcembed.core.product import BLOCK_PX, Tile, tile_key
from wcembed.core.tileset import plan_grid
from wcembed.pipeline.bands import BandFeed, BandPlan
from wcembed.pipeline.embed import run_job
from wcembed.pipeline.job import ColumnJob
from wcembed.tools.sample import write_tile

BAND = list(range(1152, 1160))  # the sample scene's columns (4 chips of data each, from 1155)


@pytest.fixture(scope="module")
def small_model():
    return tiny_model()


def job(root, out, **kw) -> ColumnJob:
    return ColumnJob(**{"year": 2020, "column": BAND[0], "output": str(out), "tiles": str(root), "batch_size": 3} | kw)


def comparable(path) -> tuple:
    """A file's table and metadata, less what differs between runs by design (creation time, reader threads)."""
    record = store.read_metadata(path)
    meta = {"embedding": dict(record.embedding), "wcembed": dict(record.provenance), "emb": record.emb_header()}
    meta["wcembed"].pop("created"), meta["wcembed"].pop("reader_workers"), meta["emb"].pop("processing:datetime")
    return pq.read_table(path), meta


@pytest.mark.parametrize("chip", [(1148, 328), (1147, 327), (1150, 330)])
def test_plan_places_every_pixel_of_a_chip_once_from_one_strip_per_block_row(chip):
    """Around the corner of four tiles (one missing) the strips' placements and the blank parts tile each
    chip exactly, and no block is read twice."""
    grid = Grid(["N36W077", "N36W076", "N35W076"])
    column, row = chip
    plan = BandPlan(grid, {c: [row, row + 1] for c in range(column - 2, column + 2) if c in grid.columns}, 2)
    blocks = [
        (s.tile, s.block_row, x) for s in plan.strips for x in range(s.x0 // BLOCK_PX, (s.x1 - 1) // BLOCK_PX + 1)
    ]
    assert len(blocks) == len(set(blocks))  # no block is under two strips
    assert all(s.x1 - s.x0 <= plan.strip_blocks * BLOCK_PX for s in plan.strips)
    cover = {}
    for s in plan.strips:
        assert s.window.width == s.x1 - s.x0 and s.window.height <= BLOCK_PX
        for p in s.placements:
            y0, y1, x0, x1 = p.dst
            cover.setdefault((p.group, p.col, p.slot), []).append((y0, y1, x0, x1))
    for g, blanks in enumerate(plan.blank):
        for col, slot, dst in blanks:
            cover.setdefault((g, col, slot), []).append(dst)
    assert len(cover) == plan.n_chips
    for parts in cover.values():
        hits = np.zeros((512, 512), np.int32)
        for y0, y1, x0, x1 in parts:
            hits[y0:y1, x0:x1] += 1
        assert (hits == 1).all()


def test_feed_gives_the_chips_of_an_independent_mosaic(corner_root):
    """The band's buffers hold, slot for slot, the chips cut from a rasterio.merge mosaic of the four tiles,
    nodata where a tile is missing, and each chip's count of pixels with data; with more readers than
    strips, and a ring deeper than the groups."""
    grid = plan_grid(2020, corner_root)
    c0, r0 = grid.chip_at(-100.05, 40.05)
    rows = {c: list(range(r0 - 1, r0 + 3)) for c in range(c0 - 1, c0 + 3)}
    plan = BandPlan(grid, rows, batch_size=3)
    got = {}
    with BandFeed(plan, 2020, str(corner_root), workers=3, depth=5) as feed:
        for group in feed:
            for col, group_rows in enumerate(group.rows):
                for slot, r in enumerate(group_rows):
                    got[(plan.columns[col], r)] = group.pixels[col, slot].numpy().copy(), group.valid[col, slot]
    assert len(got) == plan.n_chips == 16
    for chip, (pixels, valid) in got.items():
        want = mosaic_chip(corner_root, grid, chip)
        np.testing.assert_array_equal(pixels, want)
        assert valid == (want != 0).any(axis=0).sum()


@pytest.mark.parametrize("workers", [1, 3])
def test_band_files_equal_one_column_jobs(sample_root, tmp_path, small_model, workers):
    grid = plan_grid(2020, sample_root)
    singles = [
        run_job(job(sample_root, tmp_path / "one", column=c), grid=grid, model=small_model, progress=False)[0]
        for c in BAND
    ]
    band = run_job(
        job(sample_root, tmp_path / "band", band=len(BAND), workers=workers),
        grid=grid,
        model=small_model,
        progress=False,
    )
    assert [r.column for r in band] == BAND and [r.status for r in band] == ["written"] * len(BAND)
    assert [r.embedded for r in band] == [r.embedded for r in singles] == [0, 0, 0, 4, 4, 4, 4, 4]
    for one, many in zip(singles, band, strict=True):
        (ta, ma), (tb, mb) = comparable(one.path), comparable(many.path)
        assert ta.equals(tb), one.column  # same rows in the same order, same vectors bit for bit
        assert ma == mb
        assert tb.column("row").to_pylist() == sorted(tb.column("row").to_pylist())


def test_band_fetches_each_block_once_over_http(sample_root, small_model):
    """Requests and bytes of a band over a range server against the compressed blocks under its chips,
    and against the same columns read one job each."""
    grid = plan_grid(2020, sample_root)
    path = next((Path(sample_root) / "rgbnir/2020").rglob("*.tif"))
    blocks = cog_block_bytes(path)
    tile_x0 = (Tile.from_name("N37W076").index[0]) * 12000 - grid.ox
    x0, x1 = BAND[0] * 512 - tile_x0, (BAND[-1] + 1) * 512 - tile_x0
    under = sum(n for (bx, _), n in blocks.items() if bx * BLOCK_PX < x1 and (bx + 1) * BLOCK_PX > x0)

    def fetched(columns, band):
        total = 0
        for start in columns:
            with RangeServer(sample_root) as srv:
                plan = BandPlan(grid, {c: list(grid.rows(c)) for c in grid.band(start, band)}, 8)
                with BandFeed(plan, 2020, srv.url) as feed:
                    for _ in feed:
                        pass
                total += sum(q["bytes"] for q in srv.requests() if q["method"] == "GET")
        return total

    band_bytes, one_bytes = fetched([BAND[0]], len(BAND)), fetched(BAND, 1)
    assert under <= band_bytes <= 1.15 * under, (band_bytes, under)
    assert one_bytes > 1.5 * band_bytes, (one_bytes, band_bytes)


def synthetic_east_edge(root, name: str, seed: int) -> None:
    """A tile of random values (not imagery) in its east 1024 x 2048 px, under column 1148's chips."""
    data = np.random.default_rng(seed).integers(1, 10000, size=(4, 2048, 1024), dtype=np.uint16)
    tile = Tile.from_name(name)
    write_tile(root / tile_key(tile, 2020), tile, data, Window(12000 - 1024, 0, 1024, 2048), overviews=False)


def test_a_crashed_band_resumes_by_column(tmp_path, small_model, sample_root):
    """Column 1148 runs on south past the other columns of its band into a corrupt tile: the columns that
    ended before are written, 1148 is not; once the tile is mended a rerun writes 1148 alone, reading only
    its own blocks, and every file equals a one-column job's."""
    root = tmp_path / "tiles"
    src = next((Path(sample_root) / "rgbnir/2020").rglob("*.tif"))
    dest = root / src.relative_to(sample_root)
    dest.parent.mkdir(parents=True)
    shutil.copy(src, dest)
    synthetic_east_edge(root, "N36W077", seed=1)
    bad = root / tile_key(Tile.from_name("N35W077"), 2020)
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(b"II*\x00" + b"\x00" * 5000)  # a TIFF header, then nothing
    grid = plan_grid(2020, root)
    assert len(grid.rows(1148)) > len(grid.rows(1149))  # 1148 reaches into the W077 tiles
    with pytest.raises(TileCorruptError, match="N35W077"):
        run_job(
            job(root, tmp_path / "out", column=1148, band=4, min_valid_fraction=0.2),
            grid=grid,
            model=small_model,
            progress=False,
        )
    written = sorted(p.name for p in (tmp_path / "out/2020").glob("*.gpq"))
    assert written == [f"worldcover_embeddings_2020_{c}_v003.gpq" for c in (1149, 1150, 1151)]
    assert not [p for p in (tmp_path / "out/2020").iterdir() if p.name.startswith(".")]  # nothing half-written

    synthetic_east_edge(root, "N35W077", seed=2)  # mended
    with RangeServer(root) as srv:
        rerun = run_job(
            job(srv.url, tmp_path / "out", column=1148, band=4, min_valid_fraction=0.2),
            grid=grid,
            model=small_model,
            progress=False,
        )
        rerun_bytes = sum(q["bytes"] for q in srv.requests())
    assert [r.status for r in rerun] == ["written", "exists", "exists", "exists"]
    with RangeServer(root) as srv:
        alone = run_job(
            job(srv.url, tmp_path / "alone", column=1148, min_valid_fraction=0.2),
            grid=grid,
            model=small_model,
            progress=False,
        )
        alone_bytes = sum(q["bytes"] for q in srv.requests())
    assert rerun_bytes == alone_bytes  # the finished columns' blocks were not read again
    for c in (1149, 1150, 1151):
        run_job(
            job(root, tmp_path / "alone", column=c, min_valid_fraction=0.2),
            grid=grid,
            model=small_model,
            progress=False,
        )
    for c in (1148, 1149, 1150, 1151):
        a, b = (
            comparable(store.output_path(tmp_path / "out", 2020, c)),
            comparable(store.output_path(tmp_path / "alone", 2020, c)),
        )
        assert a[0].equals(b[0]), c
    assert alone[0].embedded == rerun[0].embedded > 0
