"""Two embedding sets at CONUS scale: ingest of the original run's file layout against ours, the agreement
layer of a year, and a click with a second set beside the first.

The files are synthetic vectors for every chip of the land-outline grid (538,076 chips a year, as
``bench_index.py`` makes them): the set shown, ``wcembed``, in our layout (``wcembed.core.store.write_column``)
for 2020 and 2021 (1,076,152 chips); beside it 2020 in the original 2024 run's layout
(``wcembed.pipeline.original.write_original``: the original writer's statement, the float-pixel-size boxes),
its vectors a little perturbed. Timed in the same run: ``ingest`` of 2020 of each layout into a new database
(the same rows; the ANN index built at this size). Then as the explorer runs it: a session on the database of
both sets, a click, the change layer (the set's two years held), the set beside chosen, and the agreement layer
of the year the first time (``show_region``: the other set's year read, paired, drawn), with the process's peak
memory (every ingest runs in a child process: the peak is the explorer's); then the click
(``ExploreSession.click``) alone and with the set beside. Targets: ingest of the original layout within 1.5x of
ours; the agreement layer of a year <= 2 s; the peak within the explorer's 4 GiB; a click with two sets <= 2x
one.

``--models``: two models' sets instead, as Clay v0 and Clay v1.5 fill them: ours (768-d, the set ``wcembed``)
and a Clay v1.5 folder (1024-d vectors, files recording ``clay-v1.5``; ``ingest`` puts it into
``wcembed-clay-v1-5``). Timed: a click alone and with the v1.5 set beside (its neighbours compared, no cosine),
the similarity layer of each set, the neighbour agreement layer of the year the first time (``show_region``: the
v1.5 year read, every chip's 10 nearest searched in both sets), the neighbour comparison of the year
(``overlap_summary``, as ``wcembed compare`` runs it); the process's peak memory through all of it (the ingests
in child processes). Targets: a
click with both <= 2x one; the peak within the explorer's 4 GiB.
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
from bench_index import lowrank
from common import report
from wcembed import ROOT
from wcembed.core import contract, original, store
from wcembed.core.contract import FileMetadata
from wcembed.core.grid import chip_bounds
from wcembed.core.product import ESA_HTTPS
from wcembed.core.tileset import plan_grid
from wcembed.explore.compute.compare import overlap_summary
from wcembed.explore.data.index import ChipIndex
from wcembed.explore.data.ingest import ingest
from wcembed.explore.state.session import ExploreSession
from wcembed.pipeline.original import write_original

YEAR, LATER, DIM = 2020, 2021, 768
START = (-75.62, 37.675)  # lon, lat: the explore notebook's starting point


def write_both(ours: Path, theirs: Path, max_columns: int | None) -> int:
    """Every column of the year in both layouts; returns the rows."""
    grid = plan_grid(YEAR, ESA_HTTPS, tile_index="land")
    base, noise = np.random.default_rng(7), np.random.default_rng(1)
    rows = 0
    for column in (int(c) for c in grid.columns[:max_columns]):
        r = [int(x) for x in grid.rows(column)]
        vec = lowrank(len(r), DIM, base)
        record = {"year": YEAR, "column": column, "format": store.FORMAT_VERSION, "complete": True}
        meta = FileMetadata({"dimension": DIM, "weights": "synthetic (benchmark)", "model": "none"}, record)
        table = contract.column_table(grid, YEAR, column, [(x, 1.0) for x in r], vec, meta)
        store.write_column(store.output_path(ours, YEAR, column), table, meta, contract.column_extent(grid, column))
        write_original(theirs, YEAR, column, r, vec + 0.05 * noise.normal(size=vec.shape).astype(np.float32))
        rows += len(r)
    return rows


def write_v15(folder: Path, max_columns: int | None) -> int:
    """Every column of the year in our layout with 1024-d vectors recorded as Clay v1.5's; returns the rows."""
    grid = plan_grid(YEAR, ESA_HTTPS, tile_index="land")
    base, rows = np.random.default_rng(11), 0
    for column in (int(c) for c in grid.columns[:max_columns]):
        r = [int(x) for x in grid.rows(column)]
        record = {"year": YEAR, "column": column, "format": store.FORMAT_VERSION, "complete": True}
        meta = FileMetadata({"dimension": 1024, "weights": "clay-v1.5", "model_id": "clay-v1.5",
                             "recipe": "quarters", "model": "synthetic (benchmark)"}, record)  # fmt: skip
        table = contract.column_table(grid, YEAR, column, [(x, 1.0) for x in r], lowrank(len(r), 1024, base), meta)
        store.write_column(store.output_path(folder, YEAR, column), table, meta, contract.column_extent(grid, column))
        rows += len(r)
    return rows


def peak_gib() -> float:
    """The process's peak resident memory (VmHWM), GiB."""
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text())[1]) / 2**20


def click_places(count: int, max_columns: int | None) -> list[tuple[float, float]]:
    """``count`` chip centres (lon, lat) of random columns of the year's grid, mid-column (the grid planned in a
    child process: planning CONUS peaks at 2.3 GB, which is not the explorer's)."""
    with multiprocessing.get_context("fork").Pool(1) as pool:
        return pool.apply(_click_places, (count, max_columns))


def _click_places(count: int, max_columns: int | None) -> list[tuple[float, float]]:
    grid = plan_grid(YEAR, ESA_HTTPS, tile_index="land")
    rng = np.random.default_rng(3)
    places = []
    for column in rng.choice([int(c) for c in grid.columns[:max_columns]], count):
        r = grid.rows(int(column))
        w, s, e, n = chip_bounds(int(column), int(r[len(r) // 2]))
        places.append(((w + e) / 2, (s + n) / 2))
    return places


def median_click(session: ExploreSession, places) -> float:
    """The median seconds of a click at each place (after a warm pass)."""
    for lon, lat in places:
        session.click(lon, lat)
    seconds = []
    for lon, lat in places:
        t = time.perf_counter()
        session.click(lon, lat)
        seconds.append(time.perf_counter() - t)
    return statistics.median(seconds)


def two_models(args, work: Path) -> None:
    """The ``--models`` run (see the module's description)."""
    ours, v15 = work / "ours", work / "clay-v1.5"
    if not (work / "written-v15").exists():
        if not (work / "written").exists():
            shutil.rmtree(work, ignore_errors=True)
            (work / "written").write_text(str(write_both(ours, work / "original", args.max_columns)))
        shutil.rmtree(v15, ignore_errors=True)
        (work / "written-v15").write_text(str(write_v15(v15, args.max_columns)))
    db = work / "db-models"
    if not args.clicks_only:
        shutil.rmtree(db, ignore_errors=True)
        ingest_apart(ours_first(work, ours), db)
        ingest_apart(v15, db)
    result = {"year": YEAR, "chips per set": int((work / "written").read_text()), "sets": "768-d wcembed, 1024-d "
              "wcembed-clay-v1-5", "clicks": args.clicks}  # fmt: skip
    session = ExploreSession(ChipIndex(db), year=YEAR, k=10)
    places = click_places(args.clicks, args.max_columns)
    one = median_click(session, places)
    session.set(compare_set="wcembed-clay-v1-5")
    two = median_click(session, places)
    result["click p50, one set (ms)"] = round(one * 1000, 1)
    result["click p50, the v1.5 set beside (ms)"] = round(two * 1000, 1)
    result["click ratio two / one (target <= 2)"] = round(two / one, 2)
    result["the compare line"] = session.search.compare_line
    for name in ("wcembed", "wcembed-clay-v1-5"):
        session.set(embedding_set=name)
        t0 = time.perf_counter()
        session.show_region("similarity")
        result[f"similarity layer of {name}, first (s)"] = round(time.perf_counter() - t0, 2)
        session.show_region("none")
    session.set(embedding_set="wcembed", compare_set="wcembed-clay-v1-5")
    t0 = time.perf_counter()
    shown = session.show_region("neighbour agreement")  # the product's call: the v1.5 year read, both searched
    result["neighbour agreement layer of the year, first (s)"] = round(time.perf_counter() - t0, 2)
    result["neighbour agreement layer"] = f"{shown.raster.description} Vectors held: {session.scope.held}"
    session.show_region("none")
    t0 = time.perf_counter()
    overlap = overlap_summary(session.scope.index_of("wcembed"), session.scope.index_of("wcembed-clay-v1-5"), YEAR)
    result["neighbour comparison, 200 chips, k 10 (s)"] = round(time.perf_counter() - t0, 1)
    result["neighbour overlap median"] = overlap["median"]
    result["peak memory of the process (GiB, target <= 4)"] = round(peak_gib(), 2)
    report("bench_sets_models", result)


def write_later_year(ours: Path, max_columns: int | None) -> int:
    """The set shown's 2021: every column of that year, 2020's vectors (as :func:`write_both` makes them) plus a
    little change; returns the rows."""
    grid = plan_grid(LATER, ESA_HTTPS, tile_index="land")
    base, change, rows = np.random.default_rng(7), np.random.default_rng(2), 0
    for column in (int(c) for c in grid.columns[:max_columns]):
        r = [int(x) for x in grid.rows(column)]
        vec = lowrank(len(r), DIM, base) + 0.05 * change.normal(size=(len(r), DIM)).astype(np.float32)
        record = {"year": LATER, "column": column, "format": store.FORMAT_VERSION, "complete": True}
        meta = FileMetadata({"dimension": DIM, "weights": "synthetic (benchmark)", "model": "none"}, record)
        table = contract.column_table(grid, LATER, column, [(x, 1.0) for x in r], vec, meta)
        store.write_column(store.output_path(ours, LATER, column), table, meta, contract.column_extent(grid, column))
        rows += len(r)
    return rows


def ours_first(work: Path, ours: Path) -> Path:
    """A folder of our files of :data:`YEAR` only (a link to that year's folder): the rows the original layout
    holds."""
    folder = work / f"ours-{YEAR}"
    if not folder.exists():
        folder.mkdir()
        (folder / str(YEAR)).symlink_to(ours / str(YEAR))
    return folder


def ingest_apart(folder: Path, db: Path) -> float:
    """``ingest`` of ``folder`` into ``db`` in a child process, so that the peak memory measured here is the
    explorer's; its seconds."""
    t0 = time.perf_counter()
    child = multiprocessing.get_context("fork").Process(target=ingest, args=(folder, db))
    child.start()
    child.join()
    if child.exitcode:
        raise SystemExit(f"ingest of {folder} failed (exit {child.exitcode})")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workdir", default=str(ROOT / ".cache" / "bench_sets"), help="the files are kept here")
    ap.add_argument("--max-columns", type=int, default=None, help="columns of the year (default: all 1383)")
    ap.add_argument("--clicks", type=int, default=20)
    ap.add_argument("--clicks-only", action="store_true", help="reuse the database of both sets: the layer and clicks")
    ap.add_argument("--models", action="store_true", help="two models' sets (768-d and 1024-d), see above")
    args = ap.parse_args()
    work = Path(args.workdir) / f"{args.max_columns or 'all'}"
    if args.models:
        return two_models(args, work)
    ours, theirs = work / "ours", work / "original"
    if not (work / "written").exists():
        shutil.rmtree(work, ignore_errors=True)
        rows = write_both(ours, theirs, args.max_columns)
        (work / "written").write_text(str(rows))
    if not (work / "written-later").exists():
        shutil.rmtree(ours / str(LATER), ignore_errors=True)
        (work / "written-later").write_text(str(write_later_year(ours, args.max_columns)))
    rows = int((work / "written").read_text())
    result = {"chips per set and year": rows, "dimension": DIM,
              "sets": f"wcembed ({YEAR} and {LATER}), {original.SET} ({YEAR}, the original layout)"}  # fmt: skip
    db = work / "db-both"
    if not args.clicks_only:
        alone = work / "db-alone"
        for name, folder in (("original layout", theirs), ("ours", ours_first(work, ours))):  # each into a new database
            shutil.rmtree(alone, ignore_errors=True)
            result[f"ingest of {YEAR}, {name} (s)"] = round(ingest_apart(folder, alone), 1)
        shutil.rmtree(alone, ignore_errors=True)
        ratio = result[f"ingest of {YEAR}, original layout (s)"] / result[f"ingest of {YEAR}, ours (s)"]
        result["ingest ratio original / ours (target <= 1.5)"] = round(ratio, 2)
        shutil.rmtree(db, ignore_errors=True)
        ingest_apart(ours, db)
        ingest_apart(theirs, db)
    session = ExploreSession(ChipIndex(db), year=YEAR, k=10)
    result["chips in the database"] = sum(ChipIndex(db, set=name).rows for name in session.scope.sets)
    session.click(*START)  # as Run All: a click, the change layer (both years of the set shown), then the set beside
    session.show_region("change")
    session.set(compare_set=original.SET)
    t0 = time.perf_counter()
    shown = session.show_region("agreement")  # the product's call: the other set's year read, paired, drawn
    result["agreement layer of the year, first (s, target <= 2)"] = round(time.perf_counter() - t0, 2)
    result["agreement layer"] = f"{shown.count_line}; vectors held: {session.scope.held}"
    result["peak memory of the process (GiB, target <= 4)"] = round(peak_gib(), 2)

    places = click_places(args.clicks, args.max_columns)
    session.set(compare_set="")
    one = median_click(session, places)
    session.set(compare_set=original.SET)
    two = median_click(session, places)
    result["click p50, one set (ms)"] = round(one * 1000, 1)
    result["click p50, two sets side by side (ms)"] = round(two * 1000, 1)
    result["click ratio two / one (target <= 2)"] = round(two / one, 2)
    result["peak memory after the clicks (GiB, target <= 4)"] = round(peak_gib(), 2)
    report("bench_sets", result)


if __name__ == "__main__":
    main()
