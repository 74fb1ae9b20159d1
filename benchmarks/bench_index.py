"""The explorer at CONUS scale: ingest, index build, and the exact queries a click runs.

Built through the real path: synthetic vectors for every chip of the land-outline
grid of 2020 and 2021 (2 x 538,076 chips, 2 x 1,383 columns) are written as the
real per-column GeoParquet files (:func:`wcembed.core.store.write_column`), then
:func:`wcembed.explore.data.index.ingest` loads them. The timed calls are the product's own:
``ChipIndex.by_point(lon, lat, k=10, year=2020)`` (one click: grid arithmetic, one
lookup by id, a filtered ANN search without the query chip) and
``ChipIndex.by_examples(3 positives, 2 negatives, k=10, year=2020)``. Recall@10 is
measured against an exact NumPy search with the same filters (year, query excluded);
the baseline of the ratio is the same query searched exactly by LanceDB.

No real Clay embeddings can be made offline: ``--data lowrank`` models them as a
curved 16-dimensional manifold plus noise; ``--data clusters`` is a hard case of
1000 tight isotropic clusters. Queries are drawn from the data, as a click draws them.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from common import Timer, report
from wcembed.core import contract, store
from wcembed.core.contract import FileMetadata
from wcembed.core.product import ESA_HTTPS, YEARS
from wcembed.core.tileset import plan_grid
from wcembed.explore.data.index import DIVERSE_CHIPS, ChipIndex, query_vector
from wcembed.explore.data.ingest import ingest
from wcembed.explore.data.table import ANN_INDEX, ANN_MIN_ROWS, partitions


def clustered(n: int, dim: int, rng, centres: int = 1000) -> np.ndarray:
    """Hard case: 1000 tight clusters with isotropic noise in all dimensions (near-equidistant neighbours)."""
    c = np.random.default_rng(1).normal(size=(centres, dim)).astype(np.float32)
    return c[rng.integers(0, centres, n)] + 0.35 * rng.normal(size=(n, dim)).astype(np.float32)


def lowrank(n: int, dim: int, rng, rank: int = 16) -> np.ndarray:
    """Vectors on a curved 16-dimensional manifold plus noise: a model of embeddings (low intrinsic dimension)."""
    w = np.random.default_rng(1).normal(size=(rank, dim)).astype(np.float32)
    x = np.tanh(rng.normal(size=(n, rank)).astype(np.float32)) @ w
    return x + 0.3 * rng.normal(size=(n, dim)).astype(np.float32)


DATA = {"lowrank": lowrank, "clusters": clustered}


def write_files(out: Path, make, dim: int, max_columns: int | None) -> tuple[int, int]:
    """Every column file of both years; 2021 is 2020 plus a little change. Returns (files, rows)."""
    files = rows = 0
    rng = np.random.default_rng(0)
    for year in YEARS:
        grid = plan_grid(year, ESA_HTTPS, tile_index="land")
        base = np.random.default_rng(7)  # the same places get related vectors in both years
        for column in grid.columns[:max_columns]:
            r = grid.rows(int(column))
            vec = make(len(r), dim, base) + 0.05 * rng.normal(size=(len(r), dim)).astype(np.float32) * (year - YEARS[0])
            meta = FileMetadata(
                {"dimension": dim, "weights": "synthetic (benchmark)", "model": "none"},
                {"year": year, "column": int(column), "format": store.FORMAT_VERSION, "complete": True},
            )
            path = store.output_path(out, year, int(column))
            table = contract.column_table(grid, year, int(column), [(int(x), 1.0) for x in r], vec, meta)
            store.write_column(path, table, meta, contract.column_extent(grid, int(column)))
            files += 1
            rows += len(r)
    return files, rows


def build_index_in_child(db: Path, kind: str) -> tuple[float, float]:
    """Build the ANN index in a child process: (seconds, peak resident memory of that process in GB)."""
    code = (
        "import sys, time; from wcembed.explore.data.index import ChipIndex; "
        "from wcembed.explore.data.table import build_ann_index; "
        "t = ChipIndex(sys.argv[1]).table; t0 = time.perf_counter(); build_ann_index(t, kind=sys.argv[2]); "
        "t.optimize(); print(time.perf_counter() - t0)"
    )
    done = subprocess.run([sys.executable, "-c", code, str(db), kind], capture_output=True, text=True, check=True)
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return float(done.stdout.strip().splitlines()[-1]), peak_kb / 2**20


def year_matrix(idx: ChipIndex, year: int):
    ids, lon, lat, parts = [], [], [], []
    for b in idx.batches(["chip_id", "lon", "lat", "vector"], year=year):
        ids += b.column("chip_id").to_pylist()
        lon.append(b.column("lon").to_numpy())
        lat.append(b.column("lat").to_numpy())
        parts.append(store.vector_matrix(b.column("vector")))
    x = np.concatenate(parts)
    return np.array(ids), np.concatenate(lon), np.concatenate(lat), x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_top(xn: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int, exclude: set[str]) -> set[str]:
    """The ``k`` nearest ids by cosine (``xn`` rows are unit vectors), ``exclude`` left out."""
    sims = xn @ (q / np.linalg.norm(q))
    top = np.argpartition(-sims, k + len(exclude))[: k + len(exclude)]
    top = top[np.argsort(-sims[top])]
    return set([c for c in ids[top] if c not in exclude][:k])


def pct(v: list[float], p: float) -> float:
    return 1000 * float(np.percentile(v, p))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", choices=sorted(DATA), default="lowrank")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--index", choices=["ivf_pq", "ivf_sq", "ivf_rq", "ivf_hnsw_sq"], default=ANN_INDEX)
    ap.add_argument("--max-columns", type=int, default=None, help="per year (default: all 1383, CONUS)")
    ap.add_argument("--rounds", type=int, default=0, help="re-ingest rounds of 70 rewritten files before re-timing")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--sweep-nprobes", type=lambda t: [int(v) for v in t.split(",")], default=[])
    ap.add_argument("--sweep-refine", type=lambda t: [int(v) for v in t.split(",")], default=[])
    args = ap.parse_args()
    make = DATA[args.data]
    year = YEARS[0]
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        out, db = Path(tmp) / "emb", Path(tmp) / "db"
        with Timer() as t:
            n_files, n_rows = write_files(out, make, args.dim, args.max_columns)
        result = {"data": args.data, "files": n_files, "rows": n_rows, "dim": args.dim, "write_files_s": t.s}
        with Timer() as t:
            ingest(out, db, ann_min_rows=10**12)  # the index is built below, timed on its own
        result |= {"ingest_s": t.s, "ingest_rows_per_s": n_rows / t.s}
        with Timer() as t:
            ingest(out, db)  # nothing new: lists the files, compares names and sizes
        result["reingest_nothing_new_s"] = t.s
        seconds, peak_gb = build_index_in_child(db, args.index)
        result |= {"index": args.index, "index_build_s": seconds, "index_build_peak_rss_gb": peak_gb}
        idx = ChipIndex(db)
        result |= {"partitions": partitions(idx.rows), "nprobes": idx.nprobes, "refine_factor": idx.refine_factor}
        ids, lon, lat, xn = year_matrix(idx, year)
        rng = np.random.default_rng(1)
        picks = rng.choice(len(ids), size=args.queries, replace=False)

        def clicks(label: str, diverse: int = 0) -> None:
            lat_ms, hits = [], 0
            for i in picks:
                t0 = time.perf_counter()
                res = idx.by_point(float(lon[i]), float(lat[i]), k=10, year=year, diverse=diverse)
                lat_ms.append(time.perf_counter() - t0)
                hits += len(set(res["chip_id"]) & exact_top(xn, ids, xn[i], 10, {ids[i]}))
            result[f"{label}by_point_p50_ms"] = pct(lat_ms, 50)
            result[f"{label}by_point_p95_ms"] = pct(lat_ms, 95)
            if not diverse:  # diverse results are not the nearest ten by design
                result[f"{label}by_point_recall_at_10"] = hits / (10 * len(picks))

        for i in rng.choice(len(ids), size=10, replace=False):  # warm-up (untimed): open files, caches
            idx.by_point(float(lon[i]), float(lat[i]), k=10, year=year)
        clicks("")
        clicks(f"diverse_{DIVERSE_CHIPS}_chips_", diverse=DIVERSE_CHIPS)  # the same clicks, results spread out
        result["diverse_over_plain_p50"] = (
            result[f"diverse_{DIVERSE_CHIPS}_chips_by_point_p50_ms"] / result["by_point_p50_ms"]
        )
        for v in args.sweep_nprobes:  # the same clicks at other parameters, to show the trade-offs
            idx.nprobes = v
            clicks(f"nprobes_{v}_")
        idx.refresh()
        for v in args.sweep_refine:
            idx.refine_factor = v
            clicks(f"refine_{v}_")
        idx.refresh()
        at = []
        for i in picks[:50]:
            t0 = time.perf_counter()
            idx.chip_at(float(lon[i]), float(lat[i]), year)
            at.append(time.perf_counter() - t0)
        result["chip_at_p50_ms"] = pct(at, 50)
        ex_ms, hits, n_ex = [], 0, 30
        for _ in range(n_ex):
            pos, neg = list(ids[rng.choice(len(ids), 3)]), list(ids[rng.choice(len(ids), 2)])
            t0 = time.perf_counter()
            res = idx.by_examples(pos, neg, k=10, year=year)
            ex_ms.append(time.perf_counter() - t0)
            q = query_vector(idx.vectors(pos), idx.vectors(neg))
            hits += len(set(res["chip_id"]) & exact_top(xn, ids, q, 10, set(pos + neg)))
        result |= {"by_examples_p50_ms": pct(ex_ms, 50), "by_examples_recall_at_10": hits / (10 * n_ex)}
        exact_ms = []
        for i in picks[:10]:  # the baseline: the same query, searched exactly by LanceDB
            t0 = time.perf_counter()
            idx.by_vector(idx.vectors([ids[i]])[0], 10, year=year, exclude=[ids[i]], exact=True)
            exact_ms.append(time.perf_counter() - t0)
        result["exact_same_query_p50_ms"] = pct(exact_ms, 50)
        result["speedup_exact_over_by_point_p50"] = result["exact_same_query_p50_ms"] / result["by_point_p50_ms"]
        if args.rounds:
            paths = sorted(store.list_outputs(out, year))
            for k in range(args.rounds):
                for p in paths[70 * k : 70 * (k + 1)]:  # rewrite 70 files, one chip fewer: new sizes
                    t = pq.read_table(p)
                    store.write_bytes_atomic(p, contract.parquet_bytes(t.slice(0, max(t.num_rows - 1, 0))))
                ingest(out, db)
            idx = ChipIndex(db)
            result["rounds"] = args.rounds
            clicks(f"after_{args.rounds}_rounds_")
    result["ann_min_rows"] = ANN_MIN_ROWS
    report(f"index_{args.data}_{n_rows}", result)


if __name__ == "__main__":
    main()
