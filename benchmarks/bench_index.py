"""LanceDB: ingest rate (Arrow batches vs a dict per row), and ANN vs exact search at scale."""

from __future__ import annotations

import argparse
import tempfile
import time

import lancedb
import numpy as np
import pyarrow as pa
from common import Timer, report
from wcembed.index import build_ann_index, probes


def clustered(n: int, dim: int, rng, centres: int = 1000) -> np.ndarray:
    """Hard case: 1000 tight clusters with isotropic noise in all dimensions (near-equidistant neighbours)."""
    c = np.random.default_rng(1).normal(size=(centres, dim)).astype(np.float32)
    return c[rng.integers(0, centres, n)] + 0.35 * rng.normal(size=(n, dim)).astype(np.float32)


def lowrank(n: int, dim: int, rng, rank: int = 16) -> np.ndarray:
    """Vectors on a curved 16-dimensional manifold plus noise: a model of embeddings (low intrinsic dimension)."""
    w = np.random.default_rng(1).normal(size=(rank, dim)).astype(np.float32)
    return np.tanh(rng.normal(size=(n, rank)).astype(np.float32)) @ w + 0.3 * rng.normal(size=(n, dim)).astype(
        np.float32
    )


DATA = {"lowrank": lowrank, "clusters": clustered}


def table(vectors: np.ndarray, start: int) -> pa.Table:
    n, dim = vectors.shape
    ids = np.arange(start, start + n)
    return pa.table(
        {
            "chip_id": pa.array([f"2020-{i // 1000:04d}-{i % 1000:04d}" for i in ids]),
            "year": pa.array(np.full(n, 2020, np.int16)),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim),
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_600_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--ingest-rows", type=int, default=20_000)
    ap.add_argument("--data", choices=sorted(DATA), default="lowrank")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    make = DATA[args.data]
    result = {"rows": args.rows, "dim": args.dim, "data": args.data}
    with tempfile.TemporaryDirectory() as tmp:
        db = lancedb.connect(tmp)
        small = make(args.ingest_rows, args.dim, rng)
        with Timer() as t:
            db.create_table("arrow", table(small, 0))
        result["ingest_arrow_rows_per_s"] = args.ingest_rows / t.s
        with Timer() as t:
            rows = [
                {"chip_id": f"2020-{i // 1000:04d}-{i % 1000:04d}", "year": 2020, "vector": small[i].tolist()}
                for i in range(args.ingest_rows)
            ]  # the seed's way: a Python dict per row
            db.create_table("dicts", rows)
        result["ingest_dict_rows_per_s"] = args.ingest_rows / t.s
        result["ingest_ratio_arrow_over_dict"] = result["ingest_arrow_rows_per_s"] / result["ingest_dict_rows_per_s"]

        big = db.create_table("big", table(make(min(args.rows, 100_000), args.dim, rng), 0))
        for start in range(100_000, args.rows, 100_000):
            big.add(table(make(min(100_000, args.rows - start), args.dim, rng), start))
        with Timer() as t:
            build_ann_index(big)
        result["index_build_s"] = t.s
        queries = make(args.queries, args.dim, rng)
        lat = {"ann": [], "exact": []}
        hits = 0
        for q in queries:
            t0 = time.perf_counter()
            ann = (
                big.search(q)
                .distance_type("cosine")
                .limit(10)
                .nprobes(32)
                .refine_factor(4)
                .select(["chip_id"])
                .to_arrow()
            )
            lat["ann"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            exact = big.search(q).distance_type("cosine").limit(10).bypass_vector_index().select(["chip_id"]).to_arrow()
            lat["exact"].append(time.perf_counter() - t0)
            hits += len(set(ann["chip_id"].to_pylist()) & set(exact["chip_id"].to_pylist()))
        for k, v in lat.items():
            result[f"{k}_p50_ms"] = 1000 * float(np.percentile(v, 50))
            result[f"{k}_p95_ms"] = 1000 * float(np.percentile(v, 95))
        result["nprobes"] = probes(args.rows)
        result["recall_at_10"] = hits / (10 * args.queries)
        result["latency_ratio_exact_over_ann_p50"] = result["exact_p50_ms"] / result["ann_p50_ms"]
    report(f"index_{args.data}_{args.rows}", result)


if __name__ == "__main__":
    main()
