"""The chaos run at the sample's full size: every column of both years, faults at 10 % and 30 %.

Every column of the sample region (2 x 24 array jobs) runs through the real
Batch entrypoint (papermill, ``embed_column.ipynb``) with 2 processes at a time,
reading over HTTP from the fault-injecting range server (500, 503, 429 with
Retry-After, connections reset, bodies cut short, responses slower than the 2 s
GDAL timeout of the run), with random SIGKILLs of running attempts, under the job
definition's retry policy (exit 75 or a lost host: retry, up to 3 attempts), then
one ``resubmit-missing`` round. Each run is compared with a clean run's files
(embeddings, geometry, ids; leftovers). The baseline of the ratio is the clean run's wall time.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import report, sample_root  # puts tests/ (chaos, local_servers) on the path


def main() -> None:
    from chaos import chaos_run, compare

    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", type=lambda t: [float(v) for v in t.split(",")], default=[0.1, 0.3])
    ap.add_argument("--kill-rate", type=float, default=0.2)
    ap.add_argument("--parallel", type=int, default=2)
    args = ap.parse_args()
    root = sample_root()
    years = {2020: list(range(24)), 2021: list(range(24))}
    result: dict = {"jobs": 48, "parallel": args.parallel, "kill_rate": args.kill_rate}
    with tempfile.TemporaryDirectory() as tmp:
        clean = Path(tmp) / "clean"
        base = chaos_run(root, clean, years, fault_rate=0.0, kill_rate=0.0, parallel=args.parallel)
        result["clean_wall_s"] = base["wall_s"]
        for rate in args.rates:
            out = Path(tmp) / f"rate_{rate}"
            run = chaos_run(root, out, years, fault_rate=rate, kill_rate=args.kill_rate, parallel=args.parallel, seed=7)
            check = compare(out, clean)
            key = f"faults_{round(rate * 100)}pct"
            result |= {f"{key}_{k}": v for k, v in run.items() if k not in ("jobs", "fault_rate", "kill_rate", "tls")}
            result |= {f"{key}_{k}": v for k, v in check.items()}
            result[f"{key}_data_lost_files"] = len(check["missing"]) + len(check["differing"])
            result[f"{key}_wall_over_clean"] = run["wall_s"] / base["wall_s"]
    report("chaos", result)


if __name__ == "__main__":
    main()
