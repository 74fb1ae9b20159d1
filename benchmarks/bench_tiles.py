"""Chip reads: band reading against one-column reading, the original scripts' loop and GDAL's raw block decode.

1. One column of the sample region over a local HTTP range server: requests, bytes
   and chips/s of the product's reader (:class:`wcembed.pipeline.bands.BandFeed`, a band of one
   column, as ``run_job`` runs it) against the original scripts' loop (reopen the file per chip,
   read each window separately).
2. Bytes over HTTP of a band of ``--band`` columns (the job definitions' width) against
   the compressed bytes of the COG blocks under its chips counted once (read from the
   TIFF's block byte counts), and against the same columns read one job each.
3. The reader threads at 1, 2, 4, 8 workers (exactly what ``run_job`` runs: the band's
   plan, batch groups consumed in order), from local files, median of 5 interleaved
   rounds: chips/s against GDAL
   decoding exactly the blocks under those chips, whole blocks, one dataset per thread,
   the same number of threads (the ceiling of any reader). The sample scene covers few
   whole chips, so parts 2 and 3 read a tile filled with it: the sample tile's fully
   valid 2048 x 1536 px repeated over a 3072 px wide strip of a full 12000 x 12000 px
   tile, written as ESA writes its COGs (DEFLATE, predictor 2, 1024 px blocks). This is
   the rate a GPU can be fed at: compare it with ``bench_model.py --device cuda``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import rasterio
from common import OUT, Timer, report, sample_root
from local_servers import RangeServer, cog_block_bytes
from rasterio.windows import Window
from wcembed import ROOT
from wcembed.core.grid import CHIP_PX, CONUS_ORIGIN
from wcembed.core.product import BLOCK_PX, PX_PER_DEGREE, TILE_PX, Tile, gdal_path, parse_tile_filename, tile_url
from wcembed.core.tileset import plan_grid
from wcembed.pipeline.bands import BandFeed, BandPlan
from wcembed.pipeline.tiles import gdal_options
from wcembed.tools.sample import write_tile

FILLED_COLUMNS = (1149, 1153)
"""The columns whose chips lie wholly on the filled strip (tile px 288 .. 2848)."""


def default_band() -> int:
    """The band width of the CPU job definition (``batch/job_definition.json``)."""
    spec = json.loads((ROOT / "batch/job_definition.json").read_text())
    env = {e["name"]: e["value"] for e in spec["containerProperties"]["environment"]}
    return int(env["BAND"])


def seed_way(grid, year, source, column, rows):
    """Reopen the remote file for every chip and read each window separately (the original scripts' loop)."""
    for row in rows:
        for piece in grid.chip_pieces(column, row):
            if piece.exists:
                with (
                    rasterio.Env(**gdal_options(source)),
                    rasterio.open(gdal_path(tile_url(piece.tile, year, source))) as ds,
                ):
                    ds.read(window=Window(*piece.window.flatten()))


CHIP_MB = 4 * 512 * 512 * 2 / 2**20


def filled_tile_root() -> str:
    """A copy of the sample's tile whose 3072 px wide western strip is filled with real imagery."""
    root = OUT / "filled_tile"
    sample = next(Path(sample_root()).glob("rgbnir/2020/*/*.tif"))
    path = root / sample.relative_to(sample_root())
    if not path.exists():
        tile = Tile.from_name(parse_tile_filename(path.name)[1])
        x0 = 1155 * CHIP_PX - round((tile.lon - CONUS_ORIGIN[0]) * PX_PER_DEGREE)  # chips 1155..1158 x 287..289
        y0 = 287 * CHIP_PX - round((CONUS_ORIGIN[1] - tile.lat - 1) * PX_PER_DEGREE)  # are fully valid
        with rasterio.open(sample) as ds:
            scene = ds.read(window=Window(x0, y0, 4 * CHIP_PX, 3 * CHIP_PX))
        if (scene == 0).any():
            raise RuntimeError("the crop of the sample scene has nodata")
        strip = np.tile(scene, (1, -(-TILE_PX // scene.shape[1]), 2))[:, :TILE_PX, :3072]
        write_tile(path, tile, strip, Window(0, 0, 3072, TILE_PX), overviews=False)
    return str(root)


def band_plan(grid, columns, batch_size: int = 8) -> BandPlan:
    """The plan of a band job over ``columns`` (every row), as ``run_job`` makes it."""
    return BandPlan(grid, {c: [int(r) for r in grid.rows(c)] for c in columns}, batch_size)


def read_band(plan: BandPlan, source: str, workers: int) -> int:
    """Read a band's chips as a job does (groups consumed in order); return the chips read."""
    with BandFeed(plan, 2020, source, workers=workers) as feed:
        return sum(sum(len(rows) for rows in group.rows) for group in feed)


def fetched(plans: list[BandPlan], root: str) -> tuple[int, int]:
    """Requests and bytes served to read each plan as its own job (a new process's datasets each)."""
    requests = size = 0
    for plan in plans:
        with RangeServer(root) as srv:
            read_band(plan, srv.url, 1)
            log = srv.requests()
        requests += len(log)
        size += sum(q["bytes"] for q in log)
    return requests, size


def blocks_under(plan: BandPlan, tif: Path) -> list[tuple[int, int, int]]:
    """``(x, y, bytes)`` of the stored blocks of ``tif`` under the plan's chips, each once."""
    stored = cog_block_bytes(tif)
    return [
        (x, y, stored[(x, y)])
        for s in plan.strips
        for x in range(s.x0 // BLOCK_PX, (s.x1 - 1) // BLOCK_PX + 1)
        for y in [s.block_row]
        if (x, y) in stored
    ]


def gdal_decode(tif: Path, blocks: list[tuple[int, int, int]], threads: int) -> float:
    """Seconds for GDAL to decode ``blocks`` whole, ``threads`` threads with a dataset each."""
    local = threading.local()
    opened = []

    def decode(block) -> None:
        ds = getattr(local, "ds", None)
        if ds is None:
            ds = local.ds = rasterio.open(tif)
            opened.append(ds)
        x, y, _ = block
        w, h = min(BLOCK_PX, TILE_PX - x * BLOCK_PX), min(BLOCK_PX, TILE_PX - y * BLOCK_PX)
        ds.read(window=Window(x * BLOCK_PX, y * BLOCK_PX, w, h))

    with rasterio.Env(GDAL_CACHEMAX=0), ThreadPoolExecutor(threads) as pool, Timer() as t:
        list(pool.map(decode, blocks))
    for ds in opened:
        ds.close()
    return t.s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=lambda t: [int(v) for v in t.split(",")], default=[1, 2, 4, 8])
    ap.add_argument("--band", type=int, default=None, help="band width (default: the CPU job definition's)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of the reader sweep (median reported)")
    args = ap.parse_args()
    band = args.band or default_band()
    root = sample_root()
    grid = plan_grid(2020, root)
    column = 1156
    rows = list(grid.rows(column))
    result = {"column": column, "chips": len(rows)}
    for name in ("ours", "seed"):
        with RangeServer(root) as srv:
            with Timer() as t:
                if name == "ours":
                    read_band(band_plan(grid, [column]), srv.url, 1)
                else:
                    seed_way(grid, 2020, srv.url, column, rows)
            reqs = srv.requests()
        result[f"{name}_requests"] = len(reqs)
        result[f"{name}_bytes"] = sum(q["bytes"] for q in reqs)
        result[f"{name}_chips_per_s"] = len(rows) / t.s
    result["requests_ratio_seed_over_ours"] = result["seed_requests"] / result["ours_requests"]
    result["bytes_ratio_seed_over_ours"] = result["seed_bytes"] / result["ours_bytes"]
    result["speed_ratio_ours_over_seed"] = result["ours_chips_per_s"] / result["seed_chips_per_s"]

    filled = filled_tile_root()
    tif = next(Path(filled).rglob("*.tif"))
    grid = plan_grid(2020, filled)
    filled_columns = list(range(FILLED_COLUMNS[0], FILLED_COLUMNS[1] + 1))
    # 2. bytes: the bands of `band` columns that hold the filled columns, against one job per column
    starts = sorted({c // band * band for c in filled_columns})
    bands = [band_plan(grid, grid.band(s, band)) for s in starts]
    columns = [c for plan in bands for c in plan.columns]
    under = sum(n for plan in bands for *_, n in blocks_under(plan, tif))
    result["bytes_band_width"] = band
    result["bytes_bands"] = f"{starts[0]}..{starts[-1] + band - 1} ({len(starts)} bands, {len(columns)} columns)"
    result["bytes_blocks_under_chips"] = under
    result["bytes_band_requests"], result["bytes_band_fetched"] = fetched(bands, filled)
    result["bytes_columns_requests"], result["bytes_columns_fetched"] = fetched(
        [band_plan(grid, [c]) for c in columns], filled
    )
    result["bytes_band_over_blocks"] = result["bytes_band_fetched"] / under
    result["bytes_columns_over_blocks"] = result["bytes_columns_fetched"] / under
    result["bytes_columns_over_band"] = result["bytes_columns_fetched"] / result["bytes_band_fetched"]

    # 3. readers against GDAL's raw decode of the same blocks, thread for thread
    plan = band_plan(grid, filled_columns)
    blocks = blocks_under(plan, tif)
    result["sweep_columns"] = f"{filled_columns[0]}..{filled_columns[-1]}"
    result["sweep_chips"] = plan.n_chips
    result["sweep_blocks"] = len(blocks)
    result["rounds"] = args.rounds
    for w in args.workers:
        ours, gdal = [], []
        for _ in range(args.rounds):  # interleaved, the median of each: this machine is noisy
            with Timer() as t:
                n = read_band(plan, filled, w)
            ours.append(n / t.s)
            gdal.append(plan.n_chips / gdal_decode(tif, blocks, w))
        result[f"readers_workers{w}_chips_per_s"] = statistics.median(ours)
        result[f"readers_workers{w}_decoded_mb_per_s"] = statistics.median(ours) * CHIP_MB
        result[f"gdal_decode_threads{w}_chips_per_s"] = statistics.median(gdal)
        result[f"readers_over_gdal_decode_workers{w}"] = (
            result[f"readers_workers{w}_chips_per_s"] / result[f"gdal_decode_threads{w}_chips_per_s"]
        )
    report("tiles", result)


if __name__ == "__main__":
    main()
