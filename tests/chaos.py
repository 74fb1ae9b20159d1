"""Chaos runs: columns through the real Batch entrypoint while faults are everywhere at once.

:func:`chaos_run` serves the sample region from the fault-injecting range server
(:class:`local_servers.RangeServer`, HTTP or HTTPS), runs array jobs with several
processes at once under a retry policy like the job definition's (exit 75 or a
lost host -> retry, up to ``attempts``), kills random attempts with SIGKILL,
then submits the missing columns once more (``resubmit-missing``). :func:`compare`
holds the result to a clean run's files. Used by ``tests/test_chaos.py`` (small)
and ``benchmarks/bench_chaos.py`` (every column of both years).
"""

from __future__ import annotations

import collections
import os
import random
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
from local_servers import RangeServer
from wcembed import ROOT
from wcembed.core import store
from wcembed.core.errors import EXIT_TRANSIENT
from wcembed.pipeline.batch import RETRY_ATTEMPTS, missing_columns
from wcembed.pipeline.job import ColumnJob

KILLED = -9
COMPARED = ("chip_id", "column", "row", "embeddings", "geometry", "bbox", "valid_fraction")


def job_env(year: int, output: Path, tiles: str, tile_index: str, extra: dict[str, str]) -> dict[str, str]:
    """The environment of a year's array job (as ``submit`` would send it) plus ``extra``."""
    job = ColumnJob(
        year=year,
        output=str(output),
        tiles=tiles,
        tile_index=tile_index,
        batch_size=4,
        precision="float32",
        allow_untrained=True,
    )
    return {**job.to_env(), "WORKDIR": str(ROOT), "OMP_NUM_THREADS": "1", **extra}


def run_jobs(jobs, envs, *, parallel: int, attempts: int, kill_rate: float, seed: int) -> dict:
    """Run ``jobs`` ((year, array index) pairs) as entrypoint processes, ``parallel`` at a time.

    An attempt that exits 75 or is killed is retried while attempts are left (the
    job definition's policy: transient exits and lost hosts retry, anything else
    is final). With probability ``kill_rate`` an attempt gets SIGKILL after 1–6 s.
    """
    lock = threading.Lock()
    stats = collections.Counter()
    final: dict[tuple[int, int], int] = {}

    def one(job: tuple[int, int]) -> None:
        year, index = job
        for attempt in range(1, attempts + 1):
            draw = random.Random(f"{seed}-{year}-{index}-{attempt}")
            env = {**os.environ, **envs[year], "AWS_BATCH_JOB_ARRAY_INDEX": str(index)}
            proc = subprocess.Popen(
                [sys.executable, "-m", "wcembed", "batch"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            timer = None
            if draw.random() < kill_rate:
                timer = threading.Timer(draw.uniform(1.0, 6.0), proc.kill)
                timer.start()
            code = proc.wait()
            if timer is not None:
                timer.cancel()
            with lock:
                stats["attempts"] += 1
                stats["kills"] += code == KILLED
                stats["exit_75"] += code == EXIT_TRANSIENT
            if code not in (EXIT_TRANSIENT, KILLED) or attempt == attempts:
                final[job] = code
                return
            with lock:
                stats["retries"] += 1

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(one, jobs))
    return {**stats, "final": final}


def chaos_run(
    sample_root: str,
    out: Path,
    years_indices: dict[int, list[int]],
    *,
    fault_rate: float,
    kill_rate: float,
    tls: bool = False,
    parallel: int = 2,
    attempts: int = RETRY_ATTEMPTS,
    seed: int = 0,
    first: tuple[str, ...] = (),
) -> dict:
    """Run the jobs against the fault server, then once more for the columns still missing. Returns a report.

    ``first``: fault kinds given to the first requests, one each in this order, before the random ones."""
    t0 = time.perf_counter()
    schedule = [("/", kind, 1) for kind in first]
    with RangeServer(sample_root, faults=schedule, fault_rate=fault_rate, seed=seed, tls=tls) as srv:
        extra = {"GDAL_HTTP_TIMEOUT": "2"}  # the "delay:3" fault is slower than this
        if tls:
            # rasterio's wheels read GDAL_CURL_CA_BUNDLE (a system GDAL: CURL_CA_BUNDLE); Python's ssl: SSL_CERT_FILE
            extra |= {k: str(srv.ca_file) for k in ("GDAL_CURL_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")}
        envs = {y: job_env(y, out, srv.url, sample_root, extra) for y in years_indices}
        jobs = [(y, i) for y, indices in years_indices.items() for i in indices]
        tried = run_jobs(jobs, envs, parallel=parallel, attempts=attempts, kill_rate=kill_rate, seed=seed)
        rerun = []
        for year, indices in years_indices.items():
            grid = ColumnJob.from_env(envs[year]).plan_grid()
            missing = set(missing_columns(grid, out, year))
            rerun += [(year, i) for i in indices if int(grid.columns[i]) in missing]
        second = run_jobs(rerun, envs, parallel=parallel, attempts=attempts, kill_rate=0.0, seed=seed + 1)
        requests = srv.requests()
    kinds = collections.Counter(str(r["status"]) for r in requests if r["status"] not in (200, 206))
    return {
        "jobs": len(jobs),
        "fault_rate": fault_rate,
        "kill_rate": kill_rate,
        "tls": tls,
        "requests": len(requests),
        "faults": dict(sorted(kinds.items())),
        "attempts": tried.get("attempts", 0) + second.get("attempts", 0),
        "retries": tried.get("retries", 0),
        "kills": tried.get("kills", 0),
        "exit_75": tried.get("exit_75", 0) + second.get("exit_75", 0),
        "columns_rerun": len(rerun),
        "failed_after_rerun": {f"{y}/{i}": c for (y, i), c in second["final"].items() if c},
        "wall_s": time.perf_counter() - t0,
    }


def compare(run: Path, clean: Path) -> dict:
    """Files of ``run`` against ``clean``: missing, extra, differing (in ``COMPARED`` columns), leftovers."""
    got = {Path(p).relative_to(run): p for p in store.list_outputs(str(run))}
    want = {Path(p).relative_to(clean): p for p in store.list_outputs(str(clean))}
    differing = [
        str(name)
        for name in sorted(set(got) & set(want))
        if not all(pq.read_table(got[name])[c].equals(pq.read_table(want[name])[c]) for c in COMPARED)
    ]
    leftovers = [str(p) for p in run.rglob("*") if p.is_file() and p.name.startswith(".")]
    return {
        "missing": sorted(str(n) for n in set(want) - set(got)),
        "extra": sorted(str(n) for n in set(got) - set(want)),
        "differing": differing,
        "leftovers": leftovers,
        "files": len(got),
    }
