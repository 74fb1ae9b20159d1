"""Does active learning pay? Labels needed with ``suggest_next`` against labelling random chips.

The sample region cut into 128 px chips, embedded by a small **untrained** encoder
and labelled by NDWI (water when the chip's mean NDWI is above 0; a rule
independent of the embeddings: ``tests/labelled_sample.py``). A simulated labeller
answers with those labels. The chips are split into spatial blocks of
``--block-deg`` degrees; a third of the blocks are held out for evaluation, and
labels come only from the rest. Each run starts from 2 positive and 2 negative
random labels, then adds ``--batch`` labels per round: the chips ``suggest_next``
proposes, or random unlabelled chips (the baseline). After every round the
product's classifier (``train``'s model) is fitted on the labels and scored on the
held-out blocks (balanced accuracy). Reported: labels needed to reach each of
``--targets`` for each strategy and seed, their medians, the ratio, and the mean curves.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from common import report, sample_root  # puts tests/ (labelled_sample) on the path


def run(
    index, truth, ids, y, held_out, *, strategy: str, seed: int, batch: int, rounds: int
) -> list[tuple[int, float]]:
    """The learning curve of one strategy and seed: (labels, held-out balanced accuracy) per round."""
    from sklearn.metrics import balanced_accuracy_score
    from wcembed.explore.compute.classify import Labels, score_index, suggest_next, train

    rng = np.random.default_rng(seed)
    pool = [i for i in range(len(ids)) if not held_out[i]]
    start = [
        *rng.choice([i for i in pool if y[i]], 2, replace=False),
        *rng.choice([i for i in pool if not y[i]], 2, replace=False),
    ]
    labels = Labels()
    for i in start:
        labels.items[ids[i]] = truth.items[ids[i]]
    curve = []
    test = np.flatnonzero(held_out)
    for _ in range(rounds):
        model = train(index, labels, block_deg=0.02).model
        scores = score_index(index, model, year=2020).set_index("chip_id").loc[ids]
        pred = scores["score"].to_numpy() >= 0.5
        curve.append((len(labels), float(balanced_accuracy_score(y[test], pred[test]))))
        if strategy == "suggest":
            candidates = scores.reset_index()
            candidates = candidates[~np.isin(candidates["chip_id"], ids[test])]
            picks = list(suggest_next(index, candidates, labels, n=batch)["chip_id"])
        else:
            free = [ids[i] for i in pool if ids[i] not in labels.items]
            picks = list(rng.choice(free, min(batch, len(free)), replace=False))
        for chip in picks:
            labels.items[chip] = truth.items[chip]
    return curve


def needed(curve: list[tuple[int, float]], target: float) -> float:
    """Labels at the first round that reaches ``target`` (inf if none does)."""
    return next((n for n, acc in curve if acc >= target), float("inf"))


def main() -> None:
    from labelled_sample import labelled_sample
    from wcembed.explore.compute.classify import spatial_blocks

    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--targets", type=lambda t: [float(v) for v in t.split(",")], default=[0.95, 0.98])
    ap.add_argument("--block-deg", type=float, default=0.02)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        index, truth = labelled_sample(sample_root(), Path(tmp))
        ids = np.array(list(truth.items))
        y = np.array([truth.items[c]["label"] == "positive" for c in ids])
        blocks = spatial_blocks(*truth.centres(list(ids)), args.block_deg)
        unique = np.unique(blocks)
        held = set(np.random.default_rng(99).choice(unique, len(unique) // 3, replace=False))
        held_out = np.isin(blocks, list(held))
        result = {
            "chips": len(ids),
            "positives": int(y.sum()),
            "held_out_chips": int(held_out.sum()),
            "batch": args.batch,
            "targets": args.targets,
            "seeds": args.seeds,
            "encoder": "small UNTRAINED encoder (64-d); labels from NDWI",
        }
        curves: dict[str, list] = {"suggest": [], "random": []}
        for strategy, runs in curves.items():
            for seed in range(args.seeds):
                curve = run(
                    index, truth, ids, y, held_out, strategy=strategy, seed=seed, batch=args.batch, rounds=args.rounds
                )
                runs.append(curve)
                result[f"{strategy}_seed{seed}_curve"] = " ".join(f"{n}:{acc:.3f}" for n, acc in curve)
        for target in args.targets:
            for strategy, runs in curves.items():
                counts = [needed(c, target) for c in runs]
                result[f"{strategy}_labels_for_{target}"] = counts
                result[f"{strategy}_labels_for_{target}_median"] = float(np.median(counts))
            result[f"ratio_random_over_suggest_for_{target}"] = (
                result[f"random_labels_for_{target}_median"] / result[f"suggest_labels_for_{target}_median"]
            )
        for strategy, runs in curves.items():  # the mean curve, round by round
            result[f"{strategy}_mean_curve"] = " ".join(
                f"{runs[0][k][0]}:{np.mean([c[k][1] for c in runs]):.3f}" for k in range(len(runs[0]))
            )
    report("active_learning", result)


if __name__ == "__main__":
    main()
