"""A band job end to end against its parts, in one run: readers alone, model alone, and both together.

The job embeds the band of the filled tile's whole columns (``bench_tiles.py``: 5 columns of
24 chips of real imagery, 120 chips) exactly as ``run_job`` does (same plan, reader threads,
batch size, precision ``"auto"``, files written). Beside it, at the same threads:

* **readers only**: the band's :class:`~wcembed.pipeline.bands.BandFeed`, groups consumed in order;
* **model only**: one :class:`~wcembed.pipeline.inference.Embedder` per column on the same batches,
  already in memory (including the ``"auto"`` precision check of each column's first batch);
* **stand-in**: the same pipeline with the embedder's device work (normalisation and encoder)
  replaced by a fixed cost per chip (default: the H200's measured bf16 rate, 1,873 chips/s),
  so that a CPU shows whether the readers and the main thread would keep a GPU fed: end to
  end against readers only.

``--device cuda`` runs the same comparison on a GPU (batch 64, one reader per core by
default). The ratios to read: ``end_to_end_over_slower_part`` (≥ 0.9: the pipeline hides the
faster part) and ``stand_in_over_readers`` (≥ 0.9: the readers set the pace, not the main
thread).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from unittest import mock

import numpy as np
import torch
from bench_tiles import FILLED_COLUMNS, band_plan, filled_tile_root, read_band
from common import Timer, report
from wcembed.core.tileset import plan_grid
from wcembed.pipeline import embed
from wcembed.pipeline.embed import reader_workers, run_job
from wcembed.pipeline.inference import Embedder, pick_device
from wcembed.pipeline.job import ColumnJob
from wcembed.pipeline.weights import LoadedModel, load_model

H200_BF16_CHIPS_PER_S = 1873.0
"""``Embedder`` bf16 at batch 128 on one NVIDIA H200 (measured 2026-11-27)."""


class StandInEmbedder(Embedder):
    """The :class:`Embedder` with its device work (normalisation and encoder) replaced by a fixed cost per chip,
    after the same copy to the device: what the job's main thread and readers see when a GPU embeds at
    ``1 / seconds_per_chip`` chips/s (the H200's rate was measured for the whole ``Embedder`` call)."""

    seconds_per_chip = 1 / H200_BF16_CHIPS_PER_S

    def __call__(self, pixels, valid, places, year) -> np.ndarray:
        px = self.to_device(pixels)
        time.sleep(self.seconds_per_chip * len(px))
        return np.zeros((len(px), self.model.encoder.config.dim), np.float32)


def model_only(model: LoadedModel, plan, groups, device: str, year: int = 2020) -> float:
    """Seconds for the embedders alone on the band's batches (one Embedder per column, as a job)."""
    embedders = [Embedder(model, device=device) for _ in plan.columns]
    grid = plan.grid
    with Timer() as t:
        for g, pixels in groups:
            for col, rows in enumerate(plan.groups[g]):
                if rows:
                    centres = [grid.chip_center(plan.columns[col], r) for r in rows]
                    embedders[col](pixels[col, : len(rows)], None, centres, year)
    return t.s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=None, help="default: 8 on a CPU, 64 on a GPU")
    ap.add_argument("--workers", type=int, default=None, help="reader threads (default: the product's)")
    ap.add_argument("--stand-in-chips-per-s", type=float, default=H200_BF16_CHIPS_PER_S)
    args = ap.parse_args()
    device = pick_device(args.device)
    batch_size = args.batch_size or (64 if device.type == "cuda" else 8)
    workers = args.workers or reader_workers(device)
    root = filled_tile_root()
    grid = plan_grid(2020, root)
    columns = list(range(FILLED_COLUMNS[0], FILLED_COLUMNS[1] + 1))
    plan = band_plan(grid, columns, batch_size)
    model = load_model(None, allow_untrained=True)  # full size, random weights: the same arithmetic
    job = ColumnJob(
        year=2020,
        column=columns[0],
        band=len(columns),
        tiles=root,
        batch_size=batch_size,
        device=str(device),
        workers=workers,
    )
    result = {
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "columns": f"{columns[0]}..{columns[-1]}",
        "chips": plan.n_chips,
        "batch_size": batch_size,
        "reader_workers": workers,
        "torch_threads": torch.get_num_threads(),
    }

    read_band(plan, root, workers)  # warm-up: the tile in the page cache, as for every later run
    with Timer() as t:
        read_band(plan, root, workers)
    result["readers_only_chips_per_s"] = plan.n_chips / t.s

    from wcembed.pipeline.bands import BandFeed

    with BandFeed(plan, 2020, root, workers=workers) as feed:  # the batches, kept for the model-only run
        groups = [(g.index, g.pixels.clone()) for g in feed]
    Embedder(model, device=str(device))(groups[0][1][0, :2], None, [(-76.0, 37.0)] * 2, 2020)  # warm-up
    result["model_only_chips_per_s"] = plan.n_chips / model_only(model, plan, groups, str(device))
    del groups

    with tempfile.TemporaryDirectory() as tmp, Timer() as t:
        results = run_job(ColumnJob(**{**job.parameters(), "output": tmp}), grid=grid, model=model, progress=False)
    result["embedded"] = sum(r.embedded for r in results)
    result["end_to_end_chips_per_s"] = plan.n_chips / t.s
    slower = min(result["readers_only_chips_per_s"], result["model_only_chips_per_s"])
    result["end_to_end_over_slower_part"] = result["end_to_end_chips_per_s"] / slower

    StandInEmbedder.seconds_per_chip = 1 / args.stand_in_chips_per_s
    result["stand_in_chips_per_s"] = args.stand_in_chips_per_s
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(embed, "Embedder", StandInEmbedder), Timer() as t:
        run_job(ColumnJob(**{**job.parameters(), "output": tmp}), grid=grid, model=model, progress=False)
    result["stand_in_end_to_end_chips_per_s"] = plan.n_chips / t.s
    result["stand_in_over_readers"] = result["stand_in_end_to_end_chips_per_s"] / result["readers_only_chips_per_s"]
    report("embed", result)


if __name__ == "__main__":
    main()
