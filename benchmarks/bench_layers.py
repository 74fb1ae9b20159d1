"""Whole-region layers at CONUS scale: load a year's vectors, compute each layer, render it for the map.

The table is built as in ``bench_index.py``: synthetic vectors for every chip of
the land-outline grid of 2020 and 2021 (2 x 538,076 chips) written as the real
per-column GeoParquet files, then ``ingest``. Timed are the product's calls, as
the explorer makes them: ``YearVectors.load`` (once per year: from the table, then from the float16
unit vectors ingest keeps beside it), ``similarity``
(per click), the classifier scores of every chip (``score_index`` with a
logistic regression, then ``ChipRaster.from_ids``), ``change`` (both years),
"changed like this" (``ChangePairs.like`` of one chip, per click, after a set-up once per
pair of years), ``pca_rgb``, and for each layer the map image (Web Mercator palette PNG, what
the browser is sent) and the COG export. The baseline of the ratio is drawing
the same similarity as the explorer drew scores before: a GeoJSON polygon per
chip above the threshold (``to_json`` of the GeoDataFrame). Beside the times, the error of the layers'
float16 unit vectors: the similarity layer of one query and the change distance of 2,000 chips against
float32 from the table's vectors.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
from pathlib import Path

import numpy as np
from bench_index import DATA, write_files
from common import Timer, report
from wcembed.core import store
from wcembed.explore.compute.classify import score_index
from wcembed.explore.compute.layers import ChipRaster
from wcembed.explore.compute.vectors import ChangePairs, YearVectors, change
from wcembed.explore.data.index import ChipIndex
from wcembed.explore.data.ingest import ingest
from wcembed.explore.data.kept import UNIT_VECTORS


def build(out: Path, db: Path, args) -> None:
    write_files(out, DATA[args.data], args.dim, args.max_columns)
    ingest(out, db, ann_min_rows=10**12)  # layers read whole years: no ANN index needed


def float32_similarity(index: ChipIndex, year: int, q: np.ndarray, like: ChipRaster) -> np.ndarray:
    """The similarity layer's values computed in float32 from the table's vectors, on ``like``'s raster."""
    q = q / np.linalg.norm(q)
    out = np.full(like.shape, np.nan, np.float32)
    for b in index.batches(["column", "row", "vector"], year=year):
        m = store.vector_matrix(b.column("vector"))
        sims = (m @ q) / np.linalg.norm(m, axis=1)
        out[b.column("row").to_numpy() - like.row0, b.column("column").to_numpy() - like.column0] = sims
    return out


def peak_gb() -> float:
    """Peak resident memory of this process (GB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", choices=sorted(DATA), default="lowrank")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--max-columns", type=int, default=None, help="per year (default: all 1383, CONUS)")
    ap.add_argument("--queries", type=int, default=5)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        out, db = Path(tmp) / "emb", Path(tmp) / "db"
        # built in a child process, so that this process's peak memory is the explorer's alone
        child = multiprocessing.get_context("fork").Process(target=build, args=(out, db, args))
        child.start()
        child.join()
        index = ChipIndex(db)
        n_rows = len(index)
        result = {"data": args.data, "files": len(list(out.rglob("*.gpq"))), "rows": n_rows, "dim": args.dim}
        for kept in (db / UNIT_VECTORS).glob("2020-*"):  # kept by ingest: first read as without them
            kept.unlink()
        with Timer() as t:
            YearVectors.load(index, 2020)
        result["load_year_from_table_s"] = t.s
        with Timer() as t:
            a = YearVectors.load(index, 2020)
        result |= {"chips_per_year": len(a), "load_year_s": t.s, "peak_rss_gb_after_load": peak_gb()}

        rng = np.random.default_rng(0)
        sim_s, png_s, png_mb = [], [], []
        for i in rng.choice(len(a), args.queries, replace=False):
            query = index.vectors([a.chip_ids[i]])[0]  # as a click gets it: from the table, float32
            with Timer() as t:
                layer = a.similarity(query, label=a.chip_ids[i])
            sim_s.append(t.s)
            with Timer() as t:
                png, _ = layer.png()
            png_s.append(t.s)
            png_mb.append(len(png) / 2**20)
        exact = float32_similarity(index, 2020, query, layer)
        result["similarity_max_abs_error_vs_float32"] = float(np.nanmax(np.abs(layer.values - exact)))
        result |= {
            "similarity_s_median": float(np.median(sim_s)),
            "similarity_png_s_median": float(np.median(png_s)),
            "similarity_png_mb": float(np.median(png_mb)),
            "similarity_click_total_s": float(np.median(np.add(sim_s, png_s))),
            "raster_shape": f"{layer.shape[0]} x {layer.shape[1]}",
            "map_px_per_chip": layer.map_supersample(),
        }
        with Timer() as t:
            layer.masked(float(np.nanpercentile(layer.values, 90))).png()
        result["threshold_redraw_s"] = t.s
        with Timer() as t:
            layer.to_cog(Path(tmp) / "similarity.tif")
        result["similarity_cog_s"] = t.s
        result["similarity_cog_mb"] = (Path(tmp) / "similarity.tif").stat().st_size / 2**20

        from sklearn.linear_model import LogisticRegression

        labelled = rng.choice(len(a), 200, replace=False)
        model = LogisticRegression(max_iter=500).fit(index.vectors(list(a.chip_ids[labelled])), np.arange(200) % 2)
        with Timer() as t:
            scores = score_index(index, model, year=2020)
        result["score_index_s"] = t.s
        with Timer() as t:
            scored = ChipRaster.from_ids(list(scores["chip_id"]), scores["score"].to_numpy(), name="scores")
            scored.png()
        result["scores_layer_and_png_s"] = t.s
        keep = scores[scores["score"] >= 0.5]
        with Timer() as t:
            geojson = keep[["chip_id", "score", "geometry"]].to_json()
        result |= {
            "baseline_geojson_chips": len(keep),
            "baseline_geojson_s": t.s,
            "baseline_geojson_mb": len(geojson) / 2**20,
        }
        result["speed_ratio_png_over_geojson"] = t.s / result["similarity_png_s_median"]
        with Timer() as t:
            b = YearVectors.load(index, 2021)
        result["load_second_year_s"] = t.s
        with Timer() as t:
            pairs = ChangePairs(a, b)
            changed, table = change(a, b, pairs)
        result |= {"change_s": t.s, "change_chips": len(table)}
        at = rng.choice(len(pairs), 2000, replace=False)
        va, vb = (index.vectors(list(y.chip_ids[ix[at]])) for y, ix in ((a, pairs.ia), (b, pairs.ib)))
        cos = np.einsum("ij,ij->i", va, vb) / np.linalg.norm(va, axis=1) / np.linalg.norm(vb, axis=1)
        err = np.abs(pairs.distance()[at] - (1 - cos))
        result |= {
            "change_distance_median_of_2000": float(np.median(1 - cos)),
            "change_distance_max_abs_error_vs_float32": float(err.max()),
            "change_distance_max_rel_error_vs_float32": float((err / np.maximum(1 - cos, 1e-12)).max()),
        }
        with Timer() as t:
            changed.png()
        result["change_png_s"] = t.s
        with Timer() as t:  # once per pair of years: the shared change and each chip's change size
            result["changed_like_chips"] = len(pairs.norms)
        result["changed_like_setup_s"] = t.s
        like_s, like_png_s = [], []
        for i in rng.choice(len(pairs), 5, replace=False):  # queries: chips of both years, as a click gives
            with Timer() as t:
                like, _ = pairs.like([str(a.chip_ids[pairs.ia[i]])], k=10)
            like_s.append(t.s)
            with Timer() as t:
                like.png()
            like_png_s.append(t.s)
        result |= {
            "changed_like_queries": 5,
            "changed_like_s_median": float(np.median(like_s)),
            "changed_like_png_s_median": float(np.median(like_png_s)),
        }
        with Timer() as t:
            colours = a.pca_rgb()
        result["pca_rgb_s"] = t.s
        with Timer() as t:
            colours.png()
        result["pca_png_s"] = t.s
        result["peak_rss_gb"] = peak_gb()
    report(f"layers_{args.data}_{n_rows}", result)


if __name__ == "__main__":
    main()
