"""``make demo``: the whole pipeline, offline, on the bundled sample region.

plan -> embed every column of 2020 and 2021 in bands of 4, the two years' arrays side by side
(local AWS Batch array runner, papermill, the real ``embed_column.ipynb``) -> LanceDB -> explore notebook with
a sample query and the whole-region layers (similarity, change, embedding
colours) -> map screenshot. The sample holds one scene placed as both years, so
its real change is zero. Everything lands under ``outputs/``. A rerun reuses what is
done (finished columns are skipped, and the original set's files of the same weights).
Servers it starts are stopped, also on failure.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import papermill

from wcembed import NOTEBOOKS, ROOT
from wcembed.core import original, store
from wcembed.core.errors import OutputError
from wcembed.core.grid import bands_holding
from wcembed.core.tileset import plan_grid
from wcembed.explore.data.index import ChipIndex
from wcembed.explore.data.ingest import ingest
from wcembed.explore.views.wms import LocalWMS
from wcembed.pipeline.batch import missing_bands, run_array
from wcembed.pipeline.job import ColumnJob
from wcembed.pipeline.models import CLAY_V0
from wcembed.pipeline.original import write_original_column
from wcembed.pipeline.weights import default_cache_dir, fetch_checkpoint, load_model
from wcembed.tools.sample import build_sample_region

log = logging.getLogger(__name__)
YEAR = 2020
YEARS = (2020, 2021)
START = (-75.62, 37.675)  # lon, lat: farmland near Accomac, Virginia
BAND = 4
"""Columns per array job: the sample's 24 columns are 6 jobs a year, each reading its COG blocks once."""


def banner(text: str) -> None:
    print(f"\n{'=' * 78}\n{text}\n{'=' * 78}", flush=True)


def choose_weights(checkpoint: str | None) -> str | None:
    """The user's checkpoint, else the cached or downloadable Clay v0.1, else None (untrained)."""
    if checkpoint:
        return checkpoint
    cached = default_cache_dir() / "checkpoints" / CLAY_V0.filename
    if cached.exists():
        return str(cached)
    try:
        return str(fetch_checkpoint(CLAY_V0.url, sha256=CLAY_V0.sha256))
    except Exception as exc:  # offline: no Hugging Face
        log.info("Clay v0.1 checkpoint not available: %s", exc)
        return None


def original_set(out: Path, sample: Path, weights: str | None, bands: list[int] | None = None):
    """The sample's columns of :data:`YEAR` (those of the array indices ``bands``, default all) embedded the way
    the original scripts did and written in their layout (:func:`wcembed.pipeline.original.write_original_column`)
    under ``out/original``, then ingested beside ours as the set ``original-2024``, recorded with the weights
    used (``untrained`` without a checkpoint: then the comparison shows the mechanism only)."""

    model = load_model(weights, allow_untrained=not weights)
    grid = plan_grid(YEAR, str(sample))  # planned once for every column
    starts = grid.band_starts(BAND)
    columns = grid.columns if bands is None else [c for i in bands for c in grid.band(int(starts[i]), BAND)]
    recorded = "untrained" if model.untrained else "clay-v0.1 (run here as the original scripts ran it)"
    done = original_columns_done(out / "original", f"{recorded}\n{weights or ''}")
    for column in columns:
        if int(column) not in done:
            write_original_column(out / "original", YEAR, int(column), str(sample), model, grid=grid)
    return ingest(out / "original", out / "lancedb", original_weights=recorded)


ORIGINAL_WEIGHTS = ".weights"
"""The file of the demo's original-layout folder that names the weights its files were embedded with (the
original layout records none)."""


def original_columns_done(folder: Path, weights: str) -> set[int]:
    """The columns of :data:`YEAR` whose original-layout files under ``folder`` a run with ``weights`` (any text
    naming them) wrote whole, so that a rerun skips them. The original scripts' statement writes a file in place
    (a killed run can leave half of one): a file that does not read as the original layout is not done. Where
    the folder's files were embedded with other weights they are removed, before the new weights are named."""
    marker = folder / ORIGINAL_WEIGHTS
    files = [Path(p) for p in store.list_outputs(folder, YEAR, version="v002")]
    if not marker.exists() or marker.read_text() != weights:
        for path in files:
            path.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        marker.write_text(weights)
        return set()
    done = set()
    for path in files:
        try:
            original.read_as_ours(str(path), path.read_bytes())
        except (OutputError, OSError, ValueError):  # pyarrow's ArrowInvalid for a cut file is a ValueError
            continue
        done.add(original.parse_name(str(path))[1])
    return done


def _of_other_weights(output: str, year: int, untrained: bool) -> dict[int, str]:
    """The columns of ``year`` under ``output`` whose finished files were embedded with untrained weights when
    ``untrained`` is False, or with trained ones when it is True, and those files' weights."""
    other = {}
    for path in store.list_outputs(output, year):
        record = store.finished(path)
        if record is not None and record.untrained != untrained:
            other[record.column] = record.weights
    return other


def commands(out: Path) -> tuple[str, str]:
    """The commands that run the demo with real weights and open its results in JupyterLab, as they work where
    it runs: ``make`` targets in a checkout, the ``wcembed`` command of an installed package elsewhere."""
    if (ROOT / "Makefile").exists():
        return "make demo CHECKPOINT=/path/to/Clay_v0.1.ckpt", "make lab"
    db, tiles = out / "lancedb", out / "sample"
    return (
        "wcembed demo --checkpoint /path/to/Clay_v0.1.ckpt",
        f"wcembed lab --db {db} --tiles {tiles} --notebook-out {out / 'notebooks' / 'explore_live.ipynb'}",
    )


def run(
    checkpoint: str | None = None,
    outputs: str | Path = "outputs",
    parallel: int = 2,
    indices: list[int] | None = None,
) -> int:
    """Run the demo into ``outputs``; ``indices`` limits the array indices (bands of :data:`BAND` columns)
    embedded (default: all)."""
    t0 = time.perf_counter()
    out = Path(outputs).resolve()
    weights = choose_weights(checkpoint)
    with_weights, lab = commands(out)
    weights_note = (
        f"weights: Clay v0.1 checkpoint {weights}"
        if weights
        else "weights: UNTRAINED (no Clay checkpoint given, cached or downloadable). The embeddings are NOT Clay\n"
        f"embeddings; every file records 'untrained'. Use real weights: {with_weights}"
    )
    banner(weights_note)

    sample = out / "sample"
    if not all(list(sample.glob(f"rgbnir/{y}/*/*.tif")) for y in YEARS):
        banner("1/6 building the sample region (Virginia Sentinel-2 scene -> WorldCover layout, as 2020 and 2021)")
        build_sample_region(sample, years=YEARS)
    nb_out = out / "notebooks"
    nb_out.mkdir(parents=True, exist_ok=True)

    banner("2/6 planning the grid of the sample region (plan_grid.ipynb)")
    papermill.execute_notebook(
        NOTEBOOKS / "plan_grid.ipynb",
        nb_out / "plan_grid.ipynb",
        cwd=ROOT,
        parameters={"year": YEAR, "tiles": str(sample), "tile_index": str(sample), "output": str(out / "grid")},
        progress_bar=False,
    )
    runs = {}  # year -> (array indices to run, the year's job environment)
    for year in YEARS:
        job = ColumnJob(
            year=year,
            output=str(out / "embeddings"),
            tiles=str(sample),
            batch_size=4,
            band=BAND,
            checkpoint=weights,
            allow_untrained=not weights,
        )
        grid = job.plan_grid()
        starts = grid.band_starts(BAND)
        print(f"{year}: {len(grid.columns)} columns in {len(starts)} bands of {BAND}, {grid.n_chips} chips")
        chosen = list(range(len(starts))) if indices is None else indices
        todo = set(missing_bands(grid, job.output, year, BAND))
        other = _of_other_weights(job.output, year, untrained=not weights)
        if other:  # e.g. an offline run's untrained files, and now a checkpoint: those bands are embedded again
            print(f"{year}: {len(other)} column files of other weights ({', '.join(sorted(other.values()))}): "
                  "their bands are embedded again")  # fmt: skip
            todo |= set(bands_holding(list(other), BAND).tolist())
            job = dataclasses.replace(job, overwrite=True)
        done = [i for i in chosen if int(starts[i]) not in todo]
        chosen = [i for i in chosen if int(starts[i]) in todo]
        print(f"{year}: {len(chosen)} bands to embed, {len(done)} done already")
        if chosen:
            runs[year] = (chosen, job.to_env() | {"WORKDIR": str(ROOT)})
    jobs = [(year, i) for year, (chosen, _) in runs.items() for i in chosen]
    at_once = min(parallel, len(jobs))
    banner(
        f"3/6 embedding {len(jobs)} bands of {BAND} columns of {' and '.join(map(str, runs)) or 'no year'} with the "
        f"local array runner ({parallel} at a time, the years side by side)"
    )
    threads = {"OMP_NUM_THREADS": "1"} if at_once > 1 else {}  # jobs sharing the cores: one torch thread each

    def one(year_index: tuple[int, int]) -> int:
        year, index = year_index
        return run_array([index], runs[year][1] | threads, parallel=1)[index]

    with ThreadPoolExecutor(max_workers=max(1, at_once)) as pool:
        failed = {f"{y}/{i}": c for (y, i), c in zip(jobs, pool.map(one, jobs), strict=True) if c}
    if failed:
        print(f"failed array indices (year/index: exit code): {failed}", file=sys.stderr)
        return 1

    print("STAC:", ", ".join(Path(p).relative_to(out).as_posix() for p in store.write_catalog(out / "embeddings")))
    banner("4/6 ingesting into LanceDB")
    print(ingest(out / "embeddings", out / "lancedb"))
    banner(f"4/6 the sample's {YEAR} embedded as the original 2024 scripts did, ingested as the set original-2024")
    print(original_set(out, sample, weights, indices))
    footprints = out / "footprints.fgb"
    ChipIndex(out / "lancedb").footprints().to_file(footprints, driver="FlatGeobuf")

    banner("5/6 explore.ipynb with a sample query, served by a local MapServer WMS")
    node_modules = ROOT / ".cache/js/node_modules"
    with LocalWMS(sample, out / "wms", footprints=footprints) as wms:
        papermill.execute_notebook(
            NOTEBOOKS / "explore.ipynb",
            nb_out / "explore.ipynb",
            cwd=ROOT,
            progress_bar=False,
            parameters={
                "db": str(out / "lancedb"),
                "wms_url": wms.url,
                "year": YEAR,
                "lon": START[0],
                "lat": START[1],
                "html": str(out / "map.html"),
                "screenshot_png": str(out / "map.png"),
                "node_modules": str(node_modules),
                "layers_out": str(out / "layers"),
                "tiles": str(sample),  # the explain button reads chips with the pipeline's reader and model
                "checkpoint": weights,
                "compare_set": original.SET,
            },
        )

    banner("6/6 done")
    places = {
        "grid": out / "grid",
        "GeoParquet files": out / "embeddings",
        "the original way": out / "original",
        "whole-region layers (COG)": out / "layers",
        "LanceDB": out / "lancedb",
        "executed notebooks": nb_out,
        "map screenshot": out / "map.png",
        "map page": out / "map.html",
    }
    for name, path in places.items():
        print(f"{name:>20}: {path}")
    print(f"{'time':>20}: {time.perf_counter() - t0:.0f} s")
    print(f"Explore them live in JupyterLab, with a local WMS of the sample:  {lab}")
    v15 = out / "embeddings-clay-v1.5"  # one folder, one model
    print(f"Clay v1.5 beside Clay v0 (slow on a CPU, see the docs' models page): python -m wcembed embed --year {YEAR} "
          f"--column {grid.chip_at(*START)[0]} --band {BAND} --tiles {out / 'sample'} --output {v15} --model clay-v1.5 "
          f"--checkpoint /path/to/clay-v1.5.ckpt, then python -m wcembed index {v15} --db {out / 'lancedb'} "
          "(the set wcembed-clay-v1-5), and lab --compare-set wcembed-clay-v1-5")  # fmt: skip
    banner(weights_note)
    return 0


if __name__ == "__main__":  # pragma: no cover
    logging.basicConfig(level=logging.INFO)
    raise SystemExit(run(os.environ.get("CHECKPOINT") or None))
