"""Column files: size and read time as written now against pyarrow's default Parquet settings.

The files are what ``write_column`` writes for real CONUS columns (grid from the offline
land outline, 768-d float32 vectors from ``bench_index.lowrank``, a model of embeddings:
a low-dimensional manifold plus noise, full float entropy). Each column is written twice
in the same run: with :data:`wcembed.core.contract.PARQUET_OPTIONS` ("now") and with the original scripts'
settings (ZSTD, pyarrow's defaults otherwise: dictionary encoding tried on every column,
"before"). Reads: the whole file as the explorer's ingest and ``read_column`` read it, and
the vectors alone; bbox-filtered reads are not timed, since a column file is one row group.
"""

from __future__ import annotations

import argparse
import io
import statistics

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from bench_index import lowrank
from common import Timer, report
from wcembed.core import contract, store
from wcembed.core.contract import FileMetadata
from wcembed.core.product import ESA_HTTPS
from wcembed.core.tileset import plan_grid


def seed_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", row_group_size=max(len(table), 1))
    return buf.getvalue()


def read_time(data: bytes, columns: list[str] | None, repeat: int) -> float:
    """Median seconds to read ``columns`` (all when None) of a Parquet file held in memory."""
    times = []
    for _ in range(repeat):
        with Timer() as t:
            pq.read_table(io.BytesIO(data), columns=columns)
        times.append(t.s)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--columns", type=int, default=40, help="columns measured (spread over CONUS)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    grid = plan_grid(2020, ESA_HTTPS, tile_index="land")
    picked = grid.columns[:: max(1, len(grid.columns) // args.columns)][: args.columns]
    rng = np.random.default_rng(0)
    sizes = {"now": 0, "before": 0}
    reads = {k: [] for k in ("now_all", "before_all", "now_vectors", "before_vectors")}
    rows = 0
    for column in picked:
        r = grid.rows(int(column))
        vec = lowrank(len(r), 768, rng)
        meta = FileMetadata({"dimension": 768}, {"year": 2020, "column": int(column)})
        table = contract.embeddings_table(
            chip_ids=[f"2020-{int(column):04d}-{int(x):04d}" for x in r],
            year=2020,
            columns=np.full(len(r), column, np.int32),
            rows=np.asarray(r, np.int32),
            bounds=np.array([grid.chip_bounds(int(column), int(x)) for x in r]).reshape(-1, 4),
            valid_fraction=np.ones(len(r), np.float32),
            embeddings=vec,
            metadata=meta,
        )
        files = {"now": contract.parquet_bytes(table), "before": seed_bytes(table)}
        back = store.vector_matrix(pq.read_table(io.BytesIO(files["now"]), columns=["embeddings"])["embeddings"])
        assert np.array_equal(back, vec.astype(np.float32)), "the encoding changed the vectors"
        for way, data in files.items():
            sizes[way] += len(data)
            reads[f"{way}_all"].append(read_time(data, None, args.repeat))
            reads[f"{way}_vectors"].append(read_time(data, ["embeddings"], args.repeat))
        rows += len(r)
    raw = rows * 768 * 4
    report(
        "bench_store",
        {
            "columns": len(picked),
            "chips": rows,
            "chips_per_column_mean": rows / len(picked),
            "vector_bytes_raw_MB": raw / 1e6,
            "size_now_MB": sizes["now"] / 1e6,
            "size_before_MB": sizes["before"] / 1e6,
            "size_now_vs_raw": sizes["now"] / raw,
            "size_before_vs_raw": sizes["before"] / raw,
            "size_ratio_before_over_now": sizes["before"] / sizes["now"],
            "read_all_ms_per_file_now": 1e3 * statistics.mean(reads["now_all"]),
            "read_all_ms_per_file_before": 1e3 * statistics.mean(reads["before_all"]),
            "read_all_ratio_before_over_now": sum(reads["before_all"]) / sum(reads["now_all"]),
            "read_vectors_ratio_before_over_now": sum(reads["before_vectors"]) / sum(reads["now_vectors"]),
            "conus_year_GB_now_estimate": sizes["now"] / rows * 538_076 / 1e9,
            "conus_year_GB_before_estimate": sizes["before"] / rows * 538_076 / 1e9,
        },
    )


if __name__ == "__main__":
    main()
