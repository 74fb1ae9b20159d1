"""One column of the sample region over a local HTTP range server: our reader vs the seed's way."""

from __future__ import annotations

import rasterio
from common import Timer, report, sample_root
from local_servers import RangeServer
from rasterio.windows import Window
from wcembed.product import gdal_path, tile_url
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


def main() -> None:
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
    report("tiles", result)


if __name__ == "__main__":
    main()
