"""The explorer at CONUS scale in a real browser: JupyterLab's Run All, the kernel's memory, what a click costs.

The database is built as ``bench_index.py`` builds it (synthetic vectors for every chip of the land-outline
grid of 2020 and 2021, 2 x 538,076 chips, written as the real column files and ingested with the product's
ANN index), once, under ``--workdir`` (a rerun reuses it). Then, as a user would: ``python -m wcembed lab`` on
it with the sample's local WMS, and headless Chromium (``benchmarks/lab_bench.cjs``) runs all cells of the
explore notebook and clicks the map, first with the similarity layer shown (as Run All leaves it), then with
the region set to "none". Timestamps are taken in the page: click -> the status line changed, click -> the
region layer's image changed. Reported beside them: the slowest cells (JupyterLab's recorded timings), the
kernel's peak resident memory (VmHWM), and the bytes the kernel sent per click (websocket frames) and of the
layer image. Then labelling rounds: Run All trains on a labels file of 42 chips, and four more rounds each
label two chips on the map and press "retrain" (50 labels at the fifth), timed from the press to the panel's
result.

``--db PATH`` opens a database built elsewhere (by ``wcembed index``, of any vectors) instead;
``--compare-set`` names another set of it that Run All compares (the agreement layer, or the neighbours of
another model's set). Each click's and round's figures are printed the moment the page measures them; the
console's warnings and errors are reported.

Targets on the 2-core machine: click -> status p50 <= 0.3 s, click -> layer p50 <= 0.5 s, Run All <= 30 s, a
retrain <= 3 s, kernel peak <= 4 GiB through all of it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from bench_index import DATA, write_files
from common import report, sample_root
from local_servers import interrupt, jupyterlab_settings, start_cli, wait_for_url
from wcembed import ROOT
from wcembed.core.grid import chip_at, chip_bounds
from wcembed.explore.data.index import ChipIndex
from wcembed.explore.data.ingest import ingest
from wcembed.tools.servers import free_port

CENTER, ZOOM = (37.675, -75.62), 12  # the explore notebook's starting point and zoom


def build(out: Path, db: Path, data: str, max_columns: int | None) -> None:
    write_files(out, DATA[data], 768, max_columns)
    ingest(out, db)  # with the ANN index the product builds at this size


LABELS_GIVEN = 42
"""Labels of the file the notebook trains on in Run All (the first round); four more rounds add two each (50)."""


def write_labels(db: Path, path: Path, n: int) -> tuple[Path, list]:
    """A labels file of ``n`` random chips of 2020 (half positive), and for four more rounds two chips in the
    map's view to label on the map (lon, lat of a positive and a negative)."""
    from wcembed.explore.compute.classify import Labels

    index = ChipIndex(db)
    rng = np.random.default_rng(0)
    ids = index.table.search().where("year = 2020").select(["chip_id"]).limit(None).to_arrow()["chip_id"]
    labels = Labels()
    for i, at in enumerate(rng.choice(len(ids), n, replace=False)):
        chip = ids[int(at)].as_py()
        labels.add(chip, "positive" if i % 2 else "negative", year=2020, bounds=index.footprint(chip).bounds)
    labels.save(path)
    lat, lon = CENTER
    col, row = chip_at(lon, lat)

    def centre(c: int, r: int) -> list[float]:
        w, s, e, n = chip_bounds(c, r)
        return [(w + e) / 2, (s + n) / 2]

    rounds = [[centre(col - 2 + i, row - 1), centre(col - 2 + i, row + 1)] for i in range(4)]
    return path, rounds


def kernel_peak_gib(lab_pid: int) -> float:
    """The peak resident memory of the notebook's kernel (a child of JupyterLab), GiB."""
    import psutil

    kernels = [p for p in psutil.Process(lab_pid).children(recursive=True) if "ipykernel" in " ".join(p.cmdline())]
    peaks = []
    for k in kernels:
        for line in Path(f"/proc/{k.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 2**20)
    return max(peaks, default=float("nan"))


def cell_seconds(notebook: Path) -> list[tuple[float, str]]:
    """(seconds, first line) of each executed cell, slowest first (JupyterLab's recordTiming metadata)."""
    import datetime as dt

    out = []
    for cell in json.loads(notebook.read_text())["cells"]:
        timing = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in timing and "shell.execute_reply" in timing:
            t0, t1 = (dt.datetime.fromisoformat(timing[k].replace("Z", "+00:00"))
                      for k in ("iopub.execute_input", "shell.execute_reply"))  # fmt: skip
            out.append(((t1 - t0).total_seconds(), "".join(cell["source"]).splitlines()[0][:60]))
    return sorted(out, reverse=True)


def drive(cfg: Path) -> tuple[dict | None, str]:
    """Run ``lab_bench.cjs`` on ``cfg``, printing each figure the moment the page measured it (so a failure
    later loses none); what the browser saw at the end, and the failure's message ("" if none)."""
    with tempfile.TemporaryFile("w+") as err:  # a file, so that a chatty stderr never blocks the stdout read
        node = subprocess.Popen(["node", str(ROOT / "benchmarks/lab_bench.cjs"), str(cfg)], stdout=subprocess.PIPE,
                                stderr=err, text=True)  # fmt: skip
        last = None
        for line in node.stdout:
            if line.startswith(('{"click"', '{"round"')):
                print(line.rstrip(), flush=True)
            elif line.strip():
                last = line
        if node.wait(timeout=1800):
            err.seek(0)
            return None, f"the browser run failed: {err.read()[-3000:]}"
    return json.loads(last), ""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default=str(ROOT / ".cache" / "bench_lab"), help="the database is kept here")
    ap.add_argument("--data", choices=sorted(DATA), default="lowrank")
    ap.add_argument("--max-columns", type=int, default=None, help="per year (default: all 1383, CONUS)")
    ap.add_argument("--clicks", type=int, default=5)
    ap.add_argument("--db", help="a database built elsewhere (e.g. by wcembed index) to open instead of building one")
    ap.add_argument("--compare-set", help="another set of the database, compared in Run All (its agreement layer)")
    args = ap.parse_args()
    work = Path(args.workdir) / (f"{args.data}_{args.max_columns or 'all'}" if not args.db else "given")
    db = Path(args.db) if args.db else work / "db"
    if args.db:
        work.mkdir(parents=True, exist_ok=True)
        ChipIndex(db)  # a database that cannot be opened stops here, in one line
    elif not (db / "chips.lance").exists():
        shutil.rmtree(work, ignore_errors=True)
        child = multiprocessing.get_context("fork").Process(
            target=build, args=(work / "emb", db, args.data, args.max_columns)
        )
        child.start()
        child.join()
    lat, lon = CENTER
    col, row = chip_at(lon, lat)
    clicks = []
    for i in range(args.clicks):  # chips around the starting point, within the map's view
        w, s, e, n = chip_bounds(col + (i % 3) - 1, row + (i // 3) - 1)
        clicks.append([(w + e) / 2, (s + n) / 2])
    labels_path, rounds = write_labels(db, work / "labels.geojson", LABELS_GIVEN)
    port, token = free_port(), secrets.token_hex(16)
    nb = Path(tempfile.mkdtemp(prefix="bench_lab_")) / "explore_live.ipynb"  # outside the repository: its own root
    cli = ["lab", "--tiles", sample_root(), "--db", str(db), "--workdir", str(work / "ms"), "--notebook-out", str(nb)]
    cli += ["--lab-port", str(port), "--no-browser", "--port", str(free_port()), "--basemap", "none"]
    cli += ["--labels", str(labels_path)]  # Run All trains on them: the first round
    cli += ["--compare-set", args.compare_set] if args.compare_set else []
    env = {**os.environ, "JUPYTER_TOKEN": token, **jupyterlab_settings(work / "lab-settings", recordTiming=True)}
    proc, _ = start_cli(cli, "Ctrl-C stops both", env=env)
    shot = ROOT / "outputs" / "benchmarks" / "bench_lab.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    try:
        wait_for_url(f"http://127.0.0.1:{port}/api?token={token}")
        cfg = work / "browser.json"
        cfg.write_text(json.dumps({
            "url": f"http://127.0.0.1:{port}/lab/workspaces/bench/tree/{nb.name}?reset&token={token}",
            "playwright": str(ROOT / ".cache/js/node_modules/playwright-core"),
            "chromium": shutil.which("chromium") or "/usr/bin/chromium",
            "screenshot": str(shot), "center": list(CENTER), "zoom": ZOOM, "clicks": clicks, "rounds": rounds,
        }))  # fmt: skip
        seen, failed = drive(cfg)
        peak = kernel_peak_gib(proc.pid)
        if failed:
            raise SystemExit(f"{failed}\nkernel peak so far: {peak:.2f} GiB")
    finally:
        interrupt(proc)
    if seen["offHost"]:
        raise SystemExit(f"the browser asked hosts other than 127.0.0.1: {seen['offHost'][:5]}")
    with_layer = [c for c in seen["clicks"] if c["region"] != "none"]
    without = [c for c in seen["clicks"] if c["region"] == "none"]
    p50 = lambda rows, key: float(np.median([r[key] for r in rows]))  # noqa: E731
    slowest = cell_seconds(nb)[:4]
    report(
        "bench_lab",
        {
            "database": str(db) if args.db else f"built here ({args.data} vectors)",
            "chips": ChipIndex(db).rows,
            "set beside (Run All compares it)": args.compare_set or "none",
            "console warnings and errors": seen["console"] or "none",
            "clicks": args.clicks,
            "run_all_s": seen["run_all_s"],
            "slowest_cells": "; ".join(f"{s:.1f} s {src!r}" for s, src in slowest),
            "kernel_peak_gib": peak,
            "click_status_p50_s (no layer)": p50(without, "status_s"),
            "click_status_p50_s (similarity layer)": p50(with_layer, "status_s"),
            "click_layer_p50_s": p50(with_layer, "layer_s"),
            "click_layer_max_s": max(c["layer_s"] for c in with_layer),
            "kernel_kb_per_click (no layer)": p50(without, "kernel_bytes") / 1000,
            "kernel_kb_per_click (similarity layer)": p50(with_layer, "kernel_bytes") / 1000,
            "layer_png_kb": p50(with_layer, "layer_png_bytes") / 1000,
            "thresholds_seen": sorted({c["region_line"].rsplit("≥ ", 1)[-1] for c in with_layer if c["region_line"]}),
            "labelling rounds (labels: seconds from retrain to the panel's result)": ", ".join(
                f"{r['labels']}: {r['retrain_s']:.2f} s" for r in seen["rounds"]
            ),
            "retrain_p50_s": p50(seen["rounds"], "retrain_s"),
            "last round, while it trains": "{status} (pictured while training: {pictured})".format(
                **seen["rounds"][-1]["during"]
            ),
            "pictures": f"{shot.parent}/bench_lab_*.png (the panel before, during and after a retrain: _panel_*)",
            "targets": "status p50 <= 0.3 s, layer p50 <= 0.5 s, Run All <= 30 s, retrain <= 3 s, kernel peak <= 4 GiB",
        },
    )


if __name__ == "__main__":
    main()
