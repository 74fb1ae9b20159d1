"""Chip reads: our reader against the seed's way on one column, and reader threads against chips/s.

1. One column of the sample region over a local HTTP range server: requests, bytes
   and chips/s of :class:`~wcembed.tiles.ChipReader` against the seed's loop.
2. The reader threads of a column job (:class:`wcembed.embed._Prefetcher`, exactly
   what ``run_job`` runs, rows consumed in order, one reader set per column as in a
   Batch job) at 1, 2, 4, 8 workers, from local files and from the range server:
   chips/s and MB/s of decoded pixels (a 512 px chip is 2 MiB of uint16). The sample
   scene covers few whole chips, so this part reads a tile filled with it: the
   sample tile's fully valid 2048 x 1536 px repeated over a 3072 px wide strip of a
   full 12000 x 12000 px tile, written as ESA writes its COGs (DEFLATE, predictor 2,
   1024 px blocks). This is the rate a GPU can be fed at per core: compare it
   with ``bench_model.py --device cuda``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import rasterio
from common import OUT, Timer, report, sample_root
from local_servers import RangeServer
from rasterio.windows import Window
from wcembed.embed import _Prefetcher
from wcembed.grid import CHIP_PX, CONUS_ORIGIN
from wcembed.product import PX_PER_DEGREE, TILE_PX, Tile, gdal_path, parse_tile_filename, tile_url
from wcembed.sample import write_tile
from wcembed.tiles import ChipReader, gdal_options
from wcembed.tileset import plan_grid


def seed_way(grid, year, source, column, rows):
    """Reopen the remote file for every chip and read each window separately (the seed's loop)."""
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


def full_chips(grid, source: str) -> dict[int, list[int]]:
    """The rows of each column whose chips are all valid pixels."""
    out: dict[int, list[int]] = {}
    with ChipReader(grid, 2020, source) as reader:
        for column in grid.columns:
            rows = [int(r) for r in grid.rows(int(column)) if reader.read(int(column), int(r)).valid_fraction == 1]
            if rows:
                out[int(column)] = rows
    return out


def reader_sweep(grid, source: str, chips: dict[int, list[int]], workers: int) -> tuple[float, int]:
    """Seconds to read ``chips`` (rows by column) with ``workers`` reader threads, and the chips read; a new
    set of readers per column, as each Batch job has."""
    n = 0
    with Timer() as t:
        for column, rows in chips.items():
            prefetch = _Prefetcher(grid, 2020, source, workers=workers, depth=16)
            n += sum(1 for _ in prefetch(column, rows))
            prefetch.close()
    return t.s, n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=lambda t: [int(v) for v in t.split(",")], default=[1, 2, 4, 8])
    args = ap.parse_args()
    root = sample_root()
    grid = plan_grid(2020, root)
    column = 1156
    rows = list(grid.rows(column))
    result = {"column": column, "chips": len(rows)}
    for name, fn in (("ours", None), ("seed", seed_way)):
        with RangeServer(root) as srv:
            with Timer() as t:
                if fn is None:
                    with ChipReader(grid, 2020, srv.url) as reader:
                        for r in rows:
                            reader.read(column, r)
                else:
                    fn(grid, 2020, srv.url, column, rows)
            reqs = srv.requests()
        result[f"{name}_requests"] = len(reqs)
        result[f"{name}_bytes"] = sum(q["bytes"] for q in reqs)
        result[f"{name}_chips_per_s"] = len(rows) / t.s
    result["requests_ratio_seed_over_ours"] = result["seed_requests"] / result["ours_requests"]
    result["bytes_ratio_seed_over_ours"] = result["seed_bytes"] / result["ours_bytes"]
    result["speed_ratio_ours_over_seed"] = result["ours_chips_per_s"] / result["seed_chips_per_s"]

    filled = filled_tile_root()
    grid = plan_grid(2020, filled)
    chips = full_chips(grid, filled)
    result["sweep_chips"] = sum(len(r) for r in chips.values())
    result["sweep_columns"] = len(chips)
    with RangeServer(filled) as srv:
        for where, source in (("local", filled), ("http", srv.url)):
            for w in args.workers:
                seconds, n = reader_sweep(grid, source, chips, w)
                result[f"readers_{where}_workers{w}_chips_per_s"] = n / seconds
                result[f"readers_{where}_workers{w}_decoded_mb_per_s"] = n * CHIP_MB / seconds
            base = result[f"readers_{where}_workers{args.workers[0]}_chips_per_s"]
            best = max(result[f"readers_{where}_workers{w}_chips_per_s"] for w in args.workers)
            result[f"readers_{where}_best_over_{args.workers[0]}_worker"] = best / base
    report("tiles", result)


if __name__ == "__main__":
    main()
