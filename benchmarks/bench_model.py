"""Chips/s of our batched inference vs the seed's way, on the same chips (full-size encoder, random weights)."""

from __future__ import annotations

import argparse

import numpy as np
import torch
from common import Timer, report
from wcembed.inference import Embedder, agreement, encode_latlon, encode_time
from wcembed.model import ClayConfig, ClayEncoder
from wcembed.weights import CLAY_V01, UNTRAINED, LoadedModel

MEAN, STD = CLAY_V01.mean, CLAY_V01.std


def seed_way(encoder: ClayEncoder, pixels: np.ndarray, lat, lon, year) -> np.ndarray:
    """Batch of 1, training-mode flags, autograd on, per-chip Python normalisation."""
    encoder.train()
    out = []
    for i in range(len(pixels)):
        chip = pixels[i].astype(np.float32)
        for b in range(4):  # per-band Python loop, as torchvision Normalize on one chip
            chip[b] = (chip[b] - MEAN[b]) / STD[b]
        x = torch.from_numpy(chip)[None]
        enc = encoder(x, encode_latlon([lat[i]], [lon[i]]), encode_time([year]))
        out.append(ClayEncoder.embedding(enc).detach().numpy())
    encoder.eval()
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chips", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = LoadedModel(ClayEncoder(ClayConfig()).eval(), UNTRAINED, UNTRAINED)
    rng = np.random.default_rng(0)
    pixels = rng.integers(1, 8000, size=(args.chips, 4, 512, 512)).astype(np.uint16)
    valid = np.ones((args.chips, 512, 512), bool)
    lat, lon = list(37 + rng.random(args.chips)), list(-76 + rng.random(args.chips))
    result = {"chips": args.chips, "device": args.device}
    emb = Embedder(model, device=args.device, precision="float32" if args.device == "cpu" else "auto")
    emb(pixels[:1], valid[:1], lat[:1], lon[:1], 2020)  # warm-up
    for bs in sorted({1, args.batch_size, 8}):
        with Timer() as t:
            ours = np.concatenate(
                [emb(pixels[i : i + bs], valid[i : i + bs], lat[i : i + bs], lon[i : i + bs], 2020)
                 for i in range(0, args.chips, bs)]
            )  # fmt: skip
        result[f"ours_chips_per_s_batch{bs}"] = args.chips / t.s
    result["precision"] = emb.precision
    if args.device == "cpu":
        with Timer() as t:
            seed = seed_way(model.encoder, pixels, lat, lon, 2020)
        result["seed_chips_per_s"] = args.chips / t.s
        result["speed_ratio_ours_over_seed"] = (
            result[f"ours_chips_per_s_batch{args.batch_size}"] / result["seed_chips_per_s"]
        )
        result.update(
            {f"agreement_{k}": v for k, v in agreement(torch.from_numpy(seed), torch.from_numpy(ours)).items()}
        )
    else:
        ref = Embedder(model, device=args.device, precision="float32")
        for bs in (32, 64, 128):
            px = np.concatenate([pixels] * (bs // args.chips + 1))[:bs]
            va, la, lo = np.ones((bs, 512, 512), bool), [37.5] * bs, [-75.5] * bs
            emb(px, va, la, lo, 2020)
            torch.cuda.synchronize()
            with Timer() as t:
                for _ in range(3):
                    e = emb(px, va, la, lo, 2020)
                torch.cuda.synchronize()
            result[f"bf16_chips_per_s_batch{bs}"] = 3 * bs / t.s
        result.update(
            {
                f"bf16_vs_fp32_{k}": v
                for k, v in agreement(torch.from_numpy(ref(px, va, la, lo, 2020)), torch.from_numpy(e)).items()
            }
        )
    report(f"model_{args.device}", result)


if __name__ == "__main__":
    main()
