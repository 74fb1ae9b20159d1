"""Encoder chips/s: our default `Embedder` against the original scripts' way, on the same chips, in one run.

Full-size Clay v0 encoder with random weights (the arithmetic is the same as with
the real ones). On a CPU: the original scripts' way (batch 1, training-mode flags, autograd,
per-chip Python normalisation) against ours at its defaults (``precision="auto"``:
bf16 where the CPU has bf16 instructions and the check accepts it) and ours in
float32; each configuration runs ``--rounds`` times over the same ``--chips`` chips
and the median is reported. The fraction of the CPU's peak is the encoder's
arithmetic (FLOPs per chip counted by ``torch.utils.flop_counter``: matmuls,
convolutions, attention) over the rate of a 4096 x 4096 x 4096 matmul measured in
the same precision and the same threads.

On a GPU (``--device cuda``): model-only chips/s at batch 32 to 256, bf16 and
float32, with and without ``torch.compile``, and the peak GPU memory.

``--model clay-v1.5``: the full-size Clay v1.5 encoder (random weights) through our ``Embedder`` at its
defaults (the default recipe, ``precision="auto"``) against the original code's ``Encoder`` (``claymodel``
1.5.0, installed with ``--no-deps`` into ``--original``, a private folder, on first use) given the same
weights, the same normalised pixels and the same recipe (the four 256 px quarters of each 512 px chip, class
tokens averaged), in one process: chips/s of each and their ratio, and the largest difference of the two
embeddings. The original's ``model.py`` imports ``timm`` and torchvision's ``transforms.v2`` for its training
teacher and augmentations, which its ``Encoder`` does not use, and torchvision's wheels do not load beside a
CPU-only torch: they are given as empty modules.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import statistics
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch
from common import Timer, report
from wcembed import ROOT
from wcembed.pipeline.clay_v15 import ClayV15Config
from wcembed.pipeline.inference import Embedder, PrecisionCheck, encode_latlon, encode_time
from wcembed.pipeline.model import ClayConfig, ClayEncoder
from wcembed.pipeline.models import CLAY_V0, CLAY_V15, quarters
from wcembed.pipeline.weights import UNTRAINED, LoadedModel

MEAN, STD = CLAY_V0.mean, CLAY_V0.std


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


def flops_per_chip(encoder: ClayEncoder, size: int = 512) -> float:
    """FLOPs of one chip through the encoder (matmuls, convolutions, attention), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        encoder(torch.zeros(1, 4, size, size), encode_latlon([37.0], [-76.0]), encode_time([2020]))
    return float(counter.get_total_flops())


def matmul_rate(dtype: torch.dtype, n: int = 4096, repeats: int = 3) -> float:
    """FLOP/s of an ``n``-cube matmul on the CPU in ``dtype`` (best of ``repeats``): the attainable peak."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        with Timer() as t:
            a @ b
        best = min(best, t.s)
    return 2 * n**3 / best


def median_rate(fn, chips: int, rounds: int) -> float:
    """Median chips/s of ``fn()`` (which embeds ``chips`` chips) over ``rounds`` runs."""
    times = []
    for _ in range(rounds):
        with Timer() as t:
            fn()
        times.append(t.s)
    return chips / statistics.median(times)


def cpu(args, model: LoadedModel, pixels, valid, lat, lon) -> dict:
    n, bs = args.chips, args.batch_size
    places = list(zip(lon, lat, strict=True))  # chip centres, (lon, lat) as the Embedder takes them

    def ours(emb: Embedder):
        def run():
            for i in range(0, n, bs):
                emb(pixels[i : i + bs], valid[i : i + bs], places[i : i + bs], 2020)

        return run

    auto, fp32 = Embedder(model, device="cpu"), Embedder(model, device="cpu", precision="float32")
    auto(pixels[:bs], valid[:bs], places[:bs], 2020)  # warm-up; "auto" decides its precision here
    fp32(pixels[:1], valid[:1], places[:1], 2020)
    result = {"precision_chosen": auto.precision, **{f"check_{k}": v for k, v in auto.check.items()}}
    result["seed_way_chips_per_s"] = median_rate(
        lambda: seed_way(model.encoder, pixels, lat, lon, 2020), n, args.rounds
    )
    result["ours_default_chips_per_s"] = median_rate(ours(auto), n, args.rounds)
    result["ours_float32_chips_per_s"] = median_rate(ours(fp32), n, args.rounds)
    result["ours_default_over_seed_way"] = result["ours_default_chips_per_s"] / result["seed_way_chips_per_s"]
    result["ours_float32_over_seed_way"] = result["ours_float32_chips_per_s"] / result["seed_way_chips_per_s"]
    flops = flops_per_chip(model.encoder)
    result["gflop_per_chip"] = flops / 1e9
    for name in dict.fromkeys(("float32", auto.precision)):  # bf16 only where chosen: emulated, it takes minutes
        result[f"matmul4096_{name}_gflop_per_s"] = matmul_rate(getattr(torch, name)) / 1e9
    peak = result[f"matmul4096_{auto.precision}_gflop_per_s"]
    result["ours_default_gflop_per_s"] = result["ours_default_chips_per_s"] * flops / 1e9
    result["ours_default_fraction_of_matmul_peak"] = result["ours_default_gflop_per_s"] / peak
    ref = torch.from_numpy(fp32(pixels, valid, places, 2020))
    result |= {
        f"default_vs_float32_{k}": v
        for k, v in PrecisionCheck()(ref, torch.from_numpy(auto(pixels, valid, places, 2020))).items()
    }
    return result


def cuda(args, model: LoadedModel) -> dict:
    result = {"gpu": torch.cuda.get_device_name()}
    for compiled in (False, True):
        for precision in ("bfloat16", "float32"):
            emb = Embedder(model, device="cuda", precision=precision)
            if compiled:
                emb.encoder = torch.compile(emb.encoder, mode="reduce-overhead")  # with CUDA graphs
            for bs in (32, 64, 128, 256):
                px = np.random.default_rng(bs).integers(1, 8000, size=(bs, 4, 512, 512)).astype(np.uint16)
                va, la, lo = np.ones((bs, 512, 512), bool), [37.5] * bs, [-75.5] * bs
                torch.cuda.reset_peak_memory_stats()
                emb(px, va, la, lo, 2020)  # warm-up (and compilation)
                torch.cuda.synchronize()
                rate = median_rate(functools.partial(emb, px, va, la, lo, 2020), bs, args.rounds)
                key = f"{precision}{'_compiled' if compiled else ''}_batch{bs}"
                result[f"{key}_chips_per_s"] = rate
                result[f"{key}_peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
    auto = Embedder(model, device="cuda")
    px = np.random.default_rng(0).integers(1, 8000, size=(16, 4, 512, 512)).astype(np.uint16)
    auto(px, np.ones((16, 512, 512), bool), [37.5] * 16, [-75.5] * 16, 2020)
    result |= {f"auto_check_{k}": v for k, v in auto.check.items()}
    return result


def original_v15_encoder(folder: Path):
    """The original code's Clay v1.5 ``Encoder`` class, from ``claymodel`` installed into ``folder`` (with
    ``--no-deps``, on first use). Its modules are top-level (``model``, ``backbone``, ...) and import each other
    as ``src.*``: ``src`` is made to name them."""
    if not (folder / "model.py").exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(folder),
                        "claymodel==1.5.0", "einops"], check=True)  # fmt: skip
    sys.path.insert(0, str(folder))
    for name in ("timm", "torchvision", "torchvision.transforms", "torchvision.transforms.v2"):
        sys.modules.setdefault(name, types.ModuleType(name))  # the training-only imports, unused by Encoder
    sys.modules["torchvision.transforms"].v2 = sys.modules["torchvision.transforms.v2"]
    src = sys.modules.setdefault("src", types.ModuleType("src"))
    for name in ("utils", "backbone", "factory"):
        sys.modules[f"src.{name}"] = module = importlib.import_module(name)
        setattr(src, name, module)
    return importlib.import_module("model").Encoder


def cpu_v15(args) -> dict:
    """Ours against the original code, the Clay v1.5 encoder at full size (see the module's description)."""
    config = ClayV15Config()
    original = original_v15_encoder(Path(args.original))(
        mask_ratio=0.0, patch_size=config.patch_size, shuffle=False, dim=config.dim, depth=config.depth,
        heads=config.heads, dim_head=config.dim_head, mlp_ratio=config.mlp_ratio,
    ).eval()  # fmt: skip
    encoder = CLAY_V15.build(config).eval()
    encoder.load_state_dict(original.state_dict(), strict=True)  # the same names: the checkpoint's
    model = LoadedModel(encoder, UNTRAINED, UNTRAINED, CLAY_V15)
    n, bs = args.chips, args.batch_size
    rng = np.random.default_rng(0)
    pixels = rng.integers(1, 8000, size=(n, 4, 512, 512)).astype(np.uint16)
    valid = np.ones((n, 512, 512), bool)
    lat, lon = list(37 + rng.random(n)), list(-76 + rng.random(n))
    ours = Embedder(model, device="cpu")
    recipe = ours.recipe
    waves = torch.tensor(CLAY_V15.waves_um)
    mean, std = (torch.tensor(v)[None, :, None, None] for v in (CLAY_V15.mean, CLAY_V15.std))

    def the_original(i: slice) -> np.ndarray:
        """The original Encoder over the chips' quarters, class tokens averaged."""
        x = (torch.from_numpy(pixels[i].astype(np.float32)) - mean) / std
        time, place = CLAY_V15.inputs(lat[i], lon[i], [2020] * len(x))
        cube = {"pixels": quarters(x), "time": time.repeat(4, 1), "latlon": place.repeat(4, 1),
                "gsd": torch.tensor(CLAY_V15.gsd), "waves": waves}  # fmt: skip
        with torch.inference_mode():
            cls = original(cube)[0][:, 0, :]
        return cls.view(4, len(x), -1).mean(dim=0).numpy()

    def run(fn):
        return lambda: [fn(slice(s, s + bs)) for s in range(0, n, bs)]

    theirs = np.concatenate(run(the_original)())  # a warm-up of each, and what each computes
    places = list(zip(lon, lat, strict=True))
    mine = np.concatenate(run(lambda i: ours(pixels[i], valid[i], places[i], 2020))())
    result = {"model": CLAY_V15.id, "recipe": recipe, "precision_chosen": ours.precision,
              "largest_difference_of_the_embeddings": float(np.abs(mine - theirs).max())}  # fmt: skip
    result["original_chips_per_s"] = median_rate(run(the_original), n, args.rounds)
    result["ours_default_chips_per_s"] = median_rate(run(lambda i: ours(pixels[i], valid[i], places[i], 2020)),
                                                     n, args.rounds)  # fmt: skip
    result["ours_over_original"] = result["ours_default_chips_per_s"] / result["original_chips_per_s"]
    result["seconds_per_chip_ours"] = 1 / result["ours_default_chips_per_s"]
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chips", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", choices=("clay-v0", "clay-v1.5"), default="clay-v0")
    ap.add_argument("--original", default=str(ROOT / ".cache" / "original-clay-v15"),
                    help="where the original Clay v1.5 code is installed (--model clay-v1.5)")  # fmt: skip
    args = ap.parse_args()
    if args.model == "clay-v1.5":
        torch.manual_seed(0)
        result = {"chips": args.chips, "batch_size": args.batch_size, "rounds": args.rounds, "device": args.device}
        return report("model_v15_cpu", result | cpu_v15(args))
    torch.manual_seed(0)
    model = LoadedModel(ClayEncoder(ClayConfig()).eval(), UNTRAINED, UNTRAINED)
    rng = np.random.default_rng(0)
    pixels = rng.integers(1, 8000, size=(args.chips, 4, 512, 512)).astype(np.uint16)
    valid = np.ones((args.chips, 512, 512), bool)
    lat, lon = list(37 + rng.random(args.chips)), list(-76 + rng.random(args.chips))
    result = {"chips": args.chips, "batch_size": args.batch_size, "rounds": args.rounds, "device": args.device}
    if args.device == "cpu":
        result |= cpu(args, model, pixels, valid, lat, lon)
    else:
        result |= cuda(args, model)
    report(f"model_{args.device}", result)


if __name__ == "__main__":
    main()
