"""Clay v1.5 on the 512 px grid: the two chip recipes, ``quarters`` (the four 256 px quarters, class tokens
averaged) against ``whole`` (one sequence of 4,096 patches), through the product's ``Embedder`` on the same
chips of the sample region, in one run.

Reports seconds per chip of each recipe and their ratio (whole / quarters) at the precision given. With
``--checkpoint`` (the published ``clay-v1.5.ckpt``) it also reports how close the two recipes' embeddings
of each chip are (cosine, and the rank of each chip's whole-chip vector among the quarters' vectors); without
one the encoder's weights are random, which times the arithmetic exactly but says nothing of closeness.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch
from common import Timer, report, sample_root
from wcembed.apps.demo import START
from wcembed.core.tileset import plan_grid
from wcembed.pipeline.bands import read_chips
from wcembed.pipeline.inference import Embedder
from wcembed.pipeline.models import CLAY_V15
from wcembed.pipeline.weights import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chips", type=int, default=2, help="chips of the sample embedded by each recipe")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each recipe (median reported)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="float32", help="float32, bfloat16 or auto")
    parser.add_argument("--checkpoint", default=None, help="clay-v1.5.ckpt: also report the recipes' closeness")
    args = parser.parse_args()

    root = sample_root()
    grid = plan_grid(2020, root)
    column, row = grid.chip_at(*START)  # farmland and villages near Accomac, Virginia: every pixel valid
    chips = [(column + i % 3, row + i // 3) for i in range(args.chips)]
    pixels, valid = read_chips(grid, 2020, root, chips)
    places = [grid.chip_center(c, r) for c, r in chips]
    model = load_model(args.checkpoint, model=CLAY_V15, allow_untrained=args.checkpoint is None)
    result = {
        "model": CLAY_V15.id,
        "weights": "published" if args.checkpoint else "random (timing only)",
        "chips": len(chips),
        "valid_fraction_min": float(valid.min()),
        "chip_px": grid.chip_size,
        "device": args.device,
        "precision": args.precision,
        "rounds": args.rounds,
    }
    vectors = {}
    for recipe in ("quarters", "whole"):
        embedder = Embedder(model, device=args.device, precision=args.precision, recipe=recipe)
        times = []
        for _ in range(args.rounds):
            with Timer() as t:
                vectors[recipe] = embedder(pixels, None, places, 2020)
            times.append(t.s / len(chips))
        result[f"{recipe}_s_per_chip"] = statistics.median(times)
        print(f"{recipe}: {result[f'{recipe}_s_per_chip']:.1f} s a chip", flush=True)
    result["whole_over_quarters"] = result["whole_s_per_chip"] / result["quarters_s_per_chip"]
    if args.checkpoint:
        a, b = (torch.from_numpy(vectors[k]).double() for k in ("whole", "quarters"))
        cos = torch.nn.functional.cosine_similarity(a[:, None], b[None], dim=-1).numpy()
        result["cosine_same_chip_min"] = float(np.diag(cos).min())
        result["whole_rank_of_own_quarters_max"] = int((cos >= np.diag(cos)[:, None]).sum(1).max())
    report(f"recipes_{args.device}", result)


if __name__ == "__main__":
    main()
