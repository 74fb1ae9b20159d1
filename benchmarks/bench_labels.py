"""Labels at scale: a labels file of 100,000 chips loaded into the explorer, and a retrain on it.

A database of ``--chips`` synthetic 768-d chips of one year (one class leaning along a random direction, so that
the classifier has something to learn) is built with the product's ingest; ``--labels`` of them are labelled and
saved as the explorer saves labels. Timed, as the explorer runs them:

* load: ``session.labelling.load(path)`` (read in one pass by GDAL, checked, checked against the index),
  against Python's JSON parser alone on the file and the feature-by-feature reader (``Labels._read_features``,
  which names a problem);
* retrain: ``session.labelling.retrain()`` (vectors from the kept unit vectors, CV on whole blocks of up to
  ``CV_MAX_LABELS`` labels, the fit on all, every chip scored, suggestions and the review queue), against
  ``train`` with the labelled vectors looked up in the table and CV on every label.

Targets: load ≤ 3 s and retrain ≤ 5 s at 100,000 labels on a 2-core machine. Results in
outputs/benchmarks/bench_labels.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
from pathlib import Path

import numpy as np
from common import Timer, report  # puts tests/ on the path: the test builders write the column files
from wcembed.core.grid import chip_bounds
from wcembed.explore.compute import classify
from wcembed.explore.compute.classify import Labels, train
from wcembed.explore.data.index import ChipIndex
from wcembed.explore.data.ingest import ingest
from wcembed.explore.state.session import ExploreSession

YEAR = 2020
DIM = 768


class Leaning:
    """Random draws for a column's vectors (what ``write_column`` asks for), each chip leaning along
    ``direction`` or away from it; the chips' classes go to ``truth``."""

    def __init__(self, rng, direction: np.ndarray, column: int, truth: dict[str, bool]) -> None:
        self.rng, self.direction, self.column, self.truth = rng, direction, column, truth

    def normal(self, size):
        x = self.rng.normal(size=size).astype(np.float32)
        sign = self.rng.choice([-1.0, 1.0], size=size[0]).astype(np.float32)
        for r, s in enumerate(sign):
            self.truth[f"{YEAR}-{self.column:04d}-{r:04d}"] = bool(s > 0)
        return x + 0.15 * sign[:, None] * self.direction


def build(root: Path, chips: int, rows: int) -> tuple[ChipIndex, dict[str, bool]]:
    """``chips`` chips in columns of ``rows`` rows; each chip's class (True: positive) by its vector."""
    from builders import write_column  # tests/ is on the path once common is imported

    rng = np.random.default_rng(0)
    direction = rng.normal(size=DIM).astype(np.float32)
    truth: dict[str, bool] = {}
    for column in range(1000, 1000 + chips // rows):
        write_column(root / "emb", YEAR, column, Leaning(rng, direction, column, truth), rows=range(rows), dim=DIM)
    ingest(root / "emb", root / "db")
    return ChipIndex(root / "db"), truth


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chips", type=int, default=120_000)
    ap.add_argument("--rows", type=int, default=2_000)
    ap.add_argument("--labels", type=int, default=100_000)
    ap.add_argument("--block-deg", type=float, default=0.5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with Timer() as t:
            index, truth = build(root, args.chips, args.rows)
        print(f"built {len(index)} chips in {t.s:.0f} s", flush=True)
        picked = list(truth)[: args.labels]
        labels = Labels()
        for chip in picked:
            _, column, row = (int(v) for v in chip.split("-"))
            labels.add(chip, "positive" if truth[chip] else "negative", year=YEAR, bounds=chip_bounds(column, row))
        path = labels.save(root / "labels.geojson")
        session = ExploreSession(index, year=YEAR)
        session.scope.vectors(YEAR)  # the year's vectors, as the explorer holds them after its first layer
        with Timer() as parse:
            json.loads(path.read_text())
        with Timer() as by_feature:
            Labels._read_features(path)
        with Timer() as load:
            session.labelling.load(path)
        print(f"load {load.s:.2f} s (JSON alone {parse.s:.2f} s, feature by feature {by_feature.s:.2f} s)", flush=True)
        loop = session.labelling
        loop.block_deg = args.block_deg
        with Timer() as imported:  # a kernel's first retrain imports scikit-learn and SciPy's ndimage: timed apart
            import scipy.ndimage  # noqa: F401
            import sklearn.linear_model  # noqa: F401
        with Timer() as retrain:
            clf = loop.retrain()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # bytes: the process's peak so far
        print(f"retrain {retrain.s:.2f} s", flush=True)
        cap, classify.CV_MAX_LABELS = classify.CV_MAX_LABELS, len(labels) + 1
        with Timer() as from_table:
            table_fit = train(index, session.labels, block_deg=args.block_deg)
        classify.CV_MAX_LABELS = cap
        report(
            "bench_labels",
            {
                "chips": len(index),
                "labels": len(labels),
                "dimension": DIM,
                "block_deg": args.block_deg,
                "labels_file_mb": round(path.stat().st_size / 1e6, 1),
                "load_s": load.s,
                "json_parse_s": parse.s,
                "feature_by_feature_s": by_feature.s,
                "load_over_json_parse": load.s / parse.s,
                "retrain_s": retrain.s,
                "imports_s (scikit-learn, scipy.ndimage: first retrain only)": imported.s,
                "process_peak_gib_after_retrain": peak / 2**30,
                "cv_labels": clf.cv_labels,
                "cv_balanced_accuracy": clf.cv_balanced_accuracy,
                "train_from_the_table_cv_on_every_label_s": from_table.s,
                "train_from_the_table_cv_balanced_accuracy": table_fit.cv_balanced_accuracy,
                "retrain_speedup": from_table.s / retrain.s,
                "targets": "load <= 3 s, retrain <= 5 s",
            },
        )


if __name__ == "__main__":
    main()
