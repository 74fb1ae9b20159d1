"""One column end to end: our pipeline vs the seed's loop, and end-to-end vs model-only chips/s.

``--tiles filled`` (the default) reads the tile of ``bench_tiles.py`` whose strip is
filled with the sample scene, so that the column has whole chips of real imagery
to embed; ``--tiles sample`` reads the sample region itself (4 chips per column).
Both ways run at the product's defaults (``precision="auto"``, which on a bf16 CPU
checks bf16 against float32 on the first batch: a fixed cost per column, reported).
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
from bench_model import seed_way
from bench_tiles import filled_tile_root
from common import Timer, report, sample_root
from wcembed.embed import embed_column
from wcembed.inference import Embedder
from wcembed.tiles import ChipReader
from wcembed.tileset import plan_grid
from wcembed.weights import load_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiles", choices=["filled", "sample"], default="filled")
    ap.add_argument("--column", type=int, default=None, help="default: 1149 (filled) or 1157 (sample)")
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    root = filled_tile_root() if args.tiles == "filled" else sample_root()
    args.column = args.column or (1149 if args.tiles == "filled" else 1157)
    grid = plan_grid(2020, root)
    model = load_model(None, allow_untrained=True)
    rows = list(grid.rows(args.column))
    result = {"tiles": args.tiles, "column": args.column, "chips_in_column": len(rows), "batch_size": args.batch_size}

    with tempfile.TemporaryDirectory() as tmp, Timer() as t:
        res = embed_column(
            2020,
            args.column,
            output=tmp,
            tiles=root,
            model=model,
            grid=grid,
            progress=False,
            batch_size=args.batch_size,
        )
    result["embedded"] = res.embedded
    result["ours_s"] = t.s

    with Timer() as t:  # the seed's loop: reopen per chip, batch 1, no overlap
        for r in rows:
            with ChipReader(grid, 2020, root) as reader:
                chip = reader.read(args.column, r)
            if chip.valid_fraction >= 0.5:
                lon, lat = grid.chip_center(args.column, r)
                seed_way(model.encoder, chip.pixels[None], [lat], [lon], 2020)
    result["seed_s"] = t.s
    result["speed_ratio_ours_over_seed"] = result["seed_s"] / result["ours_s"]

    with ChipReader(grid, 2020, root) as reader:
        chips = [c for c in (reader.read(args.column, r) for r in rows) if c.valid_fraction >= 0.5]
    emb = Embedder(model, device="cpu")
    px, va = np.stack([c.pixels for c in chips]), np.stack([c.valid for c in chips])
    centres = [grid.chip_center(c.column, c.row) for c in chips]
    first = slice(0, args.batch_size)  # "auto" decides its precision on the first batch, as a column does
    with Timer() as t:
        emb(px[first], va[first], [c[1] for c in centres[first]], [c[0] for c in centres[first]], 2020)
    result["first_batch_with_precision_check_s"] = t.s
    result["precision"] = emb.precision
    with Timer() as t:
        for i in range(0, len(chips), args.batch_size):
            sl = slice(i, i + args.batch_size)
            emb(px[sl], va[sl], [c[1] for c in centres[sl]], [c[0] for c in centres[sl]], 2020)
    result["model_only_chips_per_s"] = len(chips) / t.s
    result["end_to_end_chips_per_s"] = res.embedded / result["ours_s"]
    result["end_to_end_over_model_only"] = result["end_to_end_chips_per_s"] / result["model_only_chips_per_s"]
    report("embed", result)


if __name__ == "__main__":
    main()
