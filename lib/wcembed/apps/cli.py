"""Command line: ``python -m wcembed <command>`` (also installed as ``wcembed``).

Commands
--------
plan      plan the chip grid of a year and write it as GeoParquet
sample    build the sample region (real Sentinel-2 scene in WorldCover layout)
embed     embed one (year, column), or a band of columns, into a GeoParquet file per column
batch     the AWS Batch entrypoint: array index -> band of columns -> papermill
run-array run the entrypoint locally for a range of array indices
submit    build (and send, or print with --dry-run) the AWS Batch array job
resubmit-missing  submit only the bands that hold a column whose output is missing
index     ingest GeoParquet files (ours, or the original 2024 run's) into LanceDB
search    nearest chips of a chip id or a lon/lat point
compare   two embedding sets of a database, chip by chip
check-model  an encoder (clay-v0, clay-v1.5) against a reference case the original code computed
catalog   the STAC Catalog of a run's output folder
demo      the whole pipeline offline on the sample region
serve-wms serve a tile folder as a WMS on loopback (MapServer) until Ctrl-C
lab       JupyterLab on the explore notebook, with the local WMS of the demo's sample

Each command imports what it runs inside its function, after its arguments are checked: a bad argument is
answered in a second, before torch, GDAL, LanceDB or pandas load (``tests/test_cli.py`` checks it).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from wcembed.core.errors import BadParameterError
from wcembed.core.product import YEARS
from wcembed.pipeline.job import ColumnJob
from wcembed.pipeline.models import MODELS

log = logging.getLogger("wcembed")


class Parser(argparse.ArgumentParser):
    """An argument parser whose refusals are like every other bad input: one line, exit 65 (not argparse's
    usage block and exit 2)."""

    def error(self, message: str):
        from wcembed.core.errors import EXIT_BAD_INPUT

        self.exit(EXIT_BAD_INPUT, f"error: {message} (see {self.prog} --help)\n")


def port(text: str) -> int:
    """A TCP port number (1..65535), for ``--port`` and ``--lab-port``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is not within 1..65535")
    return value


def at_least_one(text: str) -> int:
    """A whole number of at least 1, for ``--parallel``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value


GRID_PARAMETERS = ("year", "tiles", "tile_index", "region")
"""The job parameters that decide the grid."""


def cmd_plan(args: argparse.Namespace) -> int:
    from wcembed.core.contract import write_geoparquet
    from wcembed.core.tileset import plan_grid

    grid = plan_grid(args.year, args.tiles, tile_index=args.tile_index, region=args.region, chip_size=args.chip_size)
    out = Path(args.out) / f"grid_{args.year}_{args.region.replace(',', '_')}.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_geoparquet(grid.to_geodataframe(args.year), out)
    print(f"tiles:   {len(grid.tiles)}")
    print(f"columns: {len(grid.columns)} ({grid.columns[0]}..{grid.columns[-1]})  <- AWS Batch array size")
    print(f"chips:   {grid.n_chips}")
    print(f"grid:    {out}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from wcembed.tools.sample import build_sample_region

    for p in build_sample_region(args.out, years=args.years):
        print(p)
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    job = ColumnJob.from_args(args)  # checked before torch and rasterio are imported (seconds)
    import pandas as pd

    from wcembed.pipeline.embed import run_job

    results = run_job(job)
    print(pd.DataFrame([r.summary() for r in results]).drop(columns="path").to_string(index=False))
    for r in results:
        print(r.path)
    return 0


def _wms(args: argparse.Namespace):
    from wcembed.explore.views.wms import LocalWMS

    footprints = args.footprints if args.footprints and Path(args.footprints).exists() else None
    return LocalWMS(args.tiles, args.workdir, footprints=footprints, port=args.port)


def _stop_on_signals() -> None:
    """Ctrl-C (SIGINT) and SIGTERM raise KeyboardInterrupt, also where the parent started us with SIGINT
    ignored (a background job of a shell script)."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, interrupt)


def _wait_for_ctrl_c(text: str) -> int:
    import time

    _stop_on_signals()
    print(text, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping", flush=True)
    return 0


def cmd_serve_wms(args: argparse.Namespace) -> int:
    from wcembed.explore.views.wms import WMSClient

    with _wms(args) as wms:
        layers = ", ".join(WMSClient(wms.url, cache_dir=None).layers())
        return _wait_for_ctrl_c(f"WMS {wms.url}\nlayers: {layers}\nCtrl-C stops it")


def cmd_lab(args: argparse.Namespace) -> int:
    """Serve the WMS, write the explore notebook pointed at it and the database, run JupyterLab on it."""
    import shutil
    import subprocess

    import papermill

    from wcembed import NOTEBOOKS, ROOT
    from wcembed.tools.servers import check_port_free, die_with_parent, stop

    jupyter = shutil.which("jupyter-lab", path=str(Path(sys.executable).parent)) or shutil.which("jupyter-lab")
    if jupyter is None:
        raise BadParameterError("JupyterLab is not installed: make lab installs it (or pip install jupyterlab)")
    check_port_free(args.lab_port)  # else Jupyter would move to the next port, and the URL below be wrong
    _check_lab_inputs(args)
    with _wms(args) as wms:
        notebook = Path(args.notebook_out)
        notebook.parent.mkdir(parents=True, exist_ok=True)
        papermill.execute_notebook(  # parameters only: the notebook runs in JupyterLab
            NOTEBOOKS / "explore.ipynb",
            notebook,
            parameters={
                "db": str(Path(args.db).resolve()),
                "wms_url": wms.url,
                "year": args.year,
                "embedding_set": args.set,
                "labels": str(Path(args.labels).resolve()) if args.labels else None,
                "compare_set": args.compare_set,
                "tiles": str(Path(args.tiles).resolve()),  # for the explain button: chips read as the pipeline does
                "checkpoint": args.checkpoint,
                "allow_untrained": True if args.allow_untrained else None,
                "basemap": None if args.basemap.lower() == "none" else args.basemap,
            },
            prepare_only=True,
            progress_bar=False,
        )
        cmd = [jupyter, "--ip", "127.0.0.1", "--port", str(args.lab_port), "--no-browser" if args.no_browser else ""]
        cmd.append("--allow-root" if hasattr(os, "geteuid") and os.geteuid() == 0 else "")  # containers run as root
        path = notebook.resolve()
        root = ROOT.resolve() if path.is_relative_to(ROOT.resolve()) else path.parent
        cmd += [f"--ServerApp.root_dir={root}", str(path.relative_to(root))]
        _stop_on_signals()
        lab = subprocess.Popen([c for c in cmd if c], cwd=root, preexec_fn=die_with_parent)
        print(f"WMS {wms.url}; JupyterLab on http://127.0.0.1:{args.lab_port}/lab ({notebook}); Ctrl-C stops both")
        try:
            lab.wait()
        except KeyboardInterrupt:
            print("stopping", flush=True)
        finally:
            stop(lab)
    return 0


def _check_lab_inputs(args: argparse.Namespace) -> None:
    """What ``lab`` is given, checked before any server starts: a database folder holding sets, files that
    exist, and a set to compare with that the database holds."""
    from wcembed.explore.data.table import sets_in

    db = Path(args.db)
    if not db.is_dir():
        raise BadParameterError(
            f"--db {_shown(args.db)}: not a database folder (make demo or wcembed index writes one)"
        )
    for flag, value in (("--labels", args.labels), ("--checkpoint", args.checkpoint)):
        if value and "://" not in value and not Path(value).is_file():
            raise BadParameterError(f"{flag} {_shown(value)}: no such file")
    sets = sets_in(db)
    if not sets:
        raise BadParameterError(f"--db {_shown(args.db)}: no embedding set in it (wcembed index writes them)")
    for flag, name in (("--set", args.set), ("--compare-set", args.compare_set)):
        if name is not None and name not in sets:
            raise BadParameterError(f"{flag} {_shown(name)}: the database holds {', '.join(sets)}")


def _check_sets(db: str, names: list[str], flag: str) -> None:
    """:class:`BadParameterError` for a set name that is not one, or, in a local database, a set it does not
    hold: said before LanceDB is loaded (a database in an object store is asked when it is opened)."""
    from wcembed.explore.data.table import check_set, remote, sets_in

    for name in names:
        check_set(name)
    if remote(db) or not Path(db).is_dir():
        return  # opening it says what is wrong
    held = sets_in(db)
    unknown = [n for n in names if n not in held]
    if unknown:
        raise BadParameterError(f"{flag} {_shown(unknown[0])}: the database {db} holds {', '.join(held) or 'no set'}")


def _shown(value: str, limit: int = 200) -> str:
    """An input as an error message shows it: quoted, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _add_wms_arguments(p: argparse.ArgumentParser, tiles_default: str | None) -> None:
    if tiles_default is None:
        p.add_argument("tiles", help="tile folder in the bucket's layout (e.g. outputs/sample)")
    else:
        p.add_argument("--tiles", default=tiles_default, help="tile folder in the bucket's layout")
    p.add_argument(
        "--footprints", default="outputs/footprints.fgb", help="chip footprints for the CHIPS layer (FlatGeobuf)"
    )
    p.add_argument("--port", type=port, default=None, help="WMS port on 127.0.0.1 (default: a free one)")
    p.add_argument("--workdir", default="outputs/wms", help="where the mapfile is written (default outputs/wms)")


def _add_db_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default="outputs/lancedb", help="the LanceDB database (default outputs/lancedb)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="wcembed", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages too")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plan", help="plan the chip grid")
    ColumnJob.add_arguments(p, only=GRID_PARAMETERS)
    p.add_argument("--chip-size", type=int, default=512, help="chip side in pixels (default 512)")
    p.add_argument("--out", default="outputs/grid", help="folder of the grid's GeoParquet (default outputs/grid)")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("sample", help="build the sample region from the Virginia scene")
    p.add_argument("--out", default="outputs/sample", help="folder of the sample tiles (default outputs/sample)")
    p.add_argument("--years", type=int, nargs="+", default=list(YEARS), help="years to build (default 2020 2021)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("embed", help="embed one column (or a band of --band columns)")
    ColumnJob.add_arguments(p, required=("column",))
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("demo", help="the whole pipeline offline on the sample region (outputs/)")
    p.add_argument(
        "--checkpoint", default=None, help="Clay v0.1 checkpoint (default: cached/downloadable, else untrained)"
    )
    p.add_argument("--outputs", default="outputs", help="folder of everything the demo writes (default outputs)")
    p.add_argument("--parallel", type=at_least_one, default=2, help="columns embedded at once (default 2)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("serve-wms", help="serve a tile folder as a WMS on 127.0.0.1 until Ctrl-C")
    _add_wms_arguments(p, None)
    p.set_defaults(func=cmd_serve_wms)

    p = sub.add_parser("lab", help="JupyterLab on the explore notebook with a local WMS of the sample")
    _add_wms_arguments(p, "outputs/sample")
    _add_db_argument(p)
    p.add_argument("--year", type=int, default=YEARS[0], help="the year shown first (default 2020)")
    p.add_argument("--labels", default=None, help="GeoJSON of labelled chips: the notebook trains on them")
    p.add_argument("--set", default=None, help="the embedding set shown (default: wcembed, else the database's first)")
    p.add_argument("--compare-set", default=None, help="another embedding set of the database, shown beside")
    p.add_argument("--checkpoint", default=None, help="the weights the embeddings were made with (explain button)")
    p.add_argument(
        "--allow-untrained",
        action="store_true",
        help="explain matches with untrained weights when no checkpoint is given (the mechanism, not what Clay "
        "sees); by default only a database of untrained embeddings is explained so",
    )
    p.add_argument(
        "--notebook-out",
        default="outputs/notebooks/explore_live.ipynb",
        help="where the explore notebook with these parameters is written (default outputs/notebooks/)",
    )
    p.add_argument("--lab-port", type=port, default=8888, help="JupyterLab's port on 127.0.0.1 (default 8888)")
    p.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    p.add_argument(
        "--basemap",
        default="OpenStreetMap",
        help="leafmap basemap under the imagery, fetched from the internet (default OpenStreetMap); "
        "'none' for no basemap, so that the map asks nothing of any host but the local WMS",
    )
    p.set_defaults(func=cmd_lab)

    p = sub.add_parser("index", help="ingest GeoParquet files (folder or s3:// prefix) into LanceDB")
    p.add_argument(
        "source", help="folder or s3:// prefix of the column files, ours or the original 2024 run's (all years)"
    )
    _add_db_argument(p)
    p.add_argument(
        "--replace",
        action="store_true",
        help="replace the columns the set holds from other files with these files' (default: refuse them)",
    )
    p.add_argument(
        "--set",
        default=None,
        help="the embedding set the files go to (default: wcembed for ours, original-2024 for the original run's)",
    )
    p.add_argument(
        "--original-weights",
        default="clay-v0.1 (original 2024 run)",
        help="the weights recorded for the original run's files, which record none (default: the published run's; "
        "'untrained' for files made with untrained weights)",
    )
    p.set_defaults(func=cmd_index)

    p = sub.add_parser(
        "check-model",
        help="check an encoder against a reference case the original code computed (exit 1 above 1e-5)",
    )
    p.add_argument("model", choices=list(MODELS), help="the encoder checked")
    p.add_argument("--reference", required=True, help="folder of config.json and one .safetensors file")
    p.set_defaults(func=cmd_check_model)

    p = sub.add_parser("compare", help="compare two embedding sets of a database chip by chip")
    _add_db_argument(p)
    p.add_argument(
        "--sets", nargs=2, default=["wcembed", "original-2024"], metavar=("A", "B"),
        help="the two sets (default: wcembed original-2024)",
    )  # fmt: skip
    p.add_argument("--year", type=int, default=YEARS[0], help="the year compared (default 2020)")
    p.add_argument("--sample", type=int, default=200, help="chips whose neighbours are compared (default 200)")
    p.add_argument("-k", type=int, default=10, help="neighbours compared per chip (default 10)")
    p.add_argument(
        "--cog", default=None,
        help="write the agreement layer here as a Cloud-Optimized GeoTIFF (two models' sets: the neighbour agreement)",
    )  # fmt: skip
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("catalog", help="write the STAC Collection of each year and the run's Catalog")
    p.add_argument("output", help="the run's output folder or s3:// prefix")
    p.set_defaults(func=cmd_catalog)

    p = sub.add_parser("search", help="nearest chips of a chip id or a lon/lat point")
    _add_db_argument(p)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--chip", default=None, help="the query chip's id, e.g. 2020-1156-0288")
    where.add_argument(
        "--point", type=float, nargs=2, metavar=("LON", "LAT"), default=None, help="the query place (degrees)"
    )
    p.add_argument("--year", type=int, default=None, help="search this year's chips only (default: every year)")
    p.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--set", default="wcembed", help="the embedding set searched (default wcembed)")
    p.set_defaults(func=cmd_search)

    from wcembed.pipeline.batch import environment_help

    p = sub.add_parser(
        "batch",
        help="AWS Batch entrypoint (reads AWS_BATCH_JOB_ARRAY_INDEX, YEAR, OUTPUT, ...)",
        description="Run one AWS Batch array index: index -> band of columns -> papermill. Exit 0 done, "
        "65 bad input, 75 transient (retry), 1 a bug.",
        epilog=environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=lambda args: __import__("wcembed.pipeline.batch").pipeline.batch.entrypoint())

    p = sub.add_parser("run-array", help="run the Batch entrypoint locally for a range of indices")
    ColumnJob.add_arguments(p, exclude=("column",))
    p.add_argument("--indices", default=None, help="e.g. 0-9 or 3,5 (default: every band)")
    p.add_argument("--parallel", type=at_least_one, default=2, help="indices run at once (default 2)")
    p.set_defaults(func=cmd_run_array)

    for name, text in (
        ("submit", "submit a year as an AWS Batch array job"),
        ("resubmit-missing", "submit only the bands that hold a column whose output is missing"),
    ):
        p = sub.add_parser(name, help=text)
        ColumnJob.add_arguments(p, exclude=("column",), required=("output",))
        p.add_argument("--columns", default=None, help="explicit columns, e.g. 12,40,41: their bands run (reruns)")
        p.add_argument("--gpu", action="store_true", help="request one GPU per job (DEVICE=cuda)")
        p.add_argument("--dry-run", action="store_true", help="print the request as JSON, send nothing")
        p.add_argument("--job-queue", default="wcembed", help="AWS Batch job queue (default wcembed)")
        p.add_argument(
            "--job-definition", default="wcembed-column", help="AWS Batch job definition (default wcembed-column)"
        )
        p.set_defaults(func=cmd_submit, missing=name == "resubmit-missing", band=None)
    return parser


def _parse_indices(text: str | None, n: int) -> list[int]:
    """``0-9,12`` as a list of numbers (every index below ``n`` when ``text`` is empty)."""
    if not text:
        return list(range(n))
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        try:
            first, last = int(a), int(b or a)
        except ValueError:
            raise BadParameterError(f"{text!r} is not a list of numbers: use e.g. 0-9 or 3,5") from None
        if last < first:
            raise BadParameterError(f"{part!r} is an empty range: write the smaller number first, e.g. 2-5")
        out.extend(range(first, last + 1))
    return out


def cmd_search(args: argparse.Namespace) -> int:
    from wcembed.core.checks import check_k, check_point
    from wcembed.core.product import check_year

    check_k(args.k)  # the arguments first, before the database is opened
    if args.point:
        check_point(*args.point)
    if args.year is not None:
        check_year(args.year)
    _check_sets(args.db, [args.set], "--set")
    from wcembed.explore.data.index import ChipIndex  # after the checks: LanceDB and geopandas take seconds

    idx = ChipIndex(args.db, set=args.set)
    if args.chip:
        res = idx.by_chip(args.chip, args.k, year=args.year)
    else:
        res = idx.by_point(*args.point, k=args.k, year=args.year)
    print(res.drop(columns="geometry").to_string(index=False))
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from wcembed.explore.data.ingest import ingest

    print(ingest(args.source, args.db, set=args.set, original_weights=args.original_weights, replace=args.replace))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole pipeline offline on the sample region (:func:`wcembed.apps.demo.run`)."""
    from wcembed.apps.demo import run  # the demo imports every layer: loaded only for it

    return run(args.checkpoint or None, args.outputs, args.parallel)


def cmd_check_model(args: argparse.Namespace) -> int:
    """Build the encoder from the case's configuration, load its tensors, run its inputs, say the largest errors."""
    from wcembed.pipeline.reference import check_reference  # imports torch: after the arguments are checked

    check = check_reference(args.model, args.reference)
    print(check)
    return 0 if check.passed else 1


def cmd_catalog(args: argparse.Namespace) -> int:
    """Write the STAC Catalog of a run's output folder; print what was written."""
    from wcembed.core.store import write_catalog

    print("\n".join(write_catalog(args.output)))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from wcembed.core.checks import check_k
    from wcembed.core.product import check_year

    check_k(args.k)
    check_year(args.year)
    if args.sample < 1:
        raise BadParameterError(f"--sample {args.sample}: the chips whose neighbours are compared, at least 1")
    if args.cog and not Path(args.cog).parent.is_dir():
        raise BadParameterError(f"--cog {args.cog}: {Path(args.cog).parent} is not a folder")
    if args.sets[0] == args.sets[1]:
        raise BadParameterError(f"{args.sets[0]} compared with itself: name two sets")
    _check_sets(args.db, args.sets, "--sets")
    import numpy as np

    from wcembed.explore.compute.compare import (  # after the checks
        agreement,
        neighbour_agreement,
        overlap_summary,
        summary,
        two_models,
    )
    from wcembed.explore.compute.vectors import YearVectors
    from wcembed.explore.data.index import ChipIndex

    a, b = (ChipIndex(args.db, set=name) for name in args.sets)
    if two_models(a, b):  # two spaces, compared by their neighbours
        overlap = overlap_summary(a, b, args.year, sample=args.sample, k=args.k)
        print(f"{a.set} ({a.dim}-d) and {b.set} ({b.dim}-d) hold two models' vectors: two spaces, no cosine between "
              "them; compared by their neighbours")  # fmt: skip
        _print_overlap(overlap)
        if args.cog:
            va, vb = YearVectors.load(a, args.year), YearVectors.load(b, args.year)
            agreed = neighbour_agreement(va, vb, (a.set, b.set), k=args.k)
            print(f"neighbour agreement of {len(agreed)} chips ({args.k} nearest, searched among {agreed.among}): "
                  f"median {np.median(agreed.overlap):.2f}, mean {agreed.overlap.mean():.2f}")  # fmt: skip
            print("written:", agreed.layer().to_cog(args.cog))
        return 0
    agr = agreement(a, b, args.year)
    table = summary(agr, a, b, sample=args.sample, k=args.k)
    print(f"agreement of {len(agr)} chips of {args.year}, {a.set} against {b.set} ({agr.note})")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    _print_overlap(table.attrs["neighbour_overlap"])
    if args.cog:
        print("written:", agr.layer().to_cog(args.cog))
    return 0


def _print_overlap(overlap: dict) -> None:
    print(f"{overlap['k']} nearest neighbours in common, among the {overlap['in_both']} chips both sets hold, over "
          f"{overlap['chips']} random chips: median {overlap['median']:.2f}, mean {overlap['mean']:.2f}")  # fmt: skip


def cmd_run_array(args: argparse.Namespace) -> int:
    from wcembed.core import store
    from wcembed.pipeline.batch import run_array

    job = ColumnJob.from_args(args)
    indices = _parse_indices(args.indices, len(job.plan_grid().band_starts(job.band)))
    codes = run_array(indices, job.to_env(), parallel=args.parallel)
    failed = {i: c for i, c in codes.items() if c}
    if len(failed) < len(codes):
        store.write_catalog(job.output)  # the Collections and Catalog of what is there now
    print(f"{len(codes) - len(failed)} of {len(codes)} indices succeeded" + (f"; failed: {failed}" if failed else ""))
    return max(failed.values(), default=0)


def cmd_submit(args: argparse.Namespace) -> int:
    import json

    from wcembed.pipeline.batch import definition_environment, missing_bands, submit_request, validate

    # the array is cut into bands of the width the jobs will run: --band, else the job definition's
    band = args.band or int(definition_environment(gpu=args.gpu).get("BAND", 1))
    job = ColumnJob.from_args(args, band=band)
    grid = job.plan_grid()
    starts = None
    if args.columns:
        wanted = {grid.check_column(c) // job.band * job.band for c in _parse_indices(args.columns, 0)}
        starts = sorted(wanted)
    if args.missing:
        missing = missing_bands(grid, args.output, args.year, job.band)
        starts = [s for s in missing if starts is None or s in starts]
        n_bands = len(grid.band_starts(job.band))
        print(f"{len(starts)} of {n_bands} bands of {job.band} columns have a column without output", file=sys.stderr)
        if not starts:
            return 0
    req = submit_request(
        args.year,
        len(grid.band_starts(job.band)),
        job_queue=args.job_queue,
        job_definition=args.job_definition,
        environment={k: v for k, v in job.changed_env().items() if k != "YEAR"} | {"BAND": str(band)},
        columns=starts,
        gpu=args.gpu,
    )
    validate("SubmitJob", req)
    if args.dry_run:
        print(json.dumps(req, indent=2))
        return 0
    import boto3

    resp = boto3.client("batch").submit_job(**req)
    print(json.dumps({k: resp[k] for k in ("jobId", "jobName", "jobArn") if k in resp}, indent=2))
    return 0


NEGATIVE_VALUED = ("--region",)
"""Options whose value may start with a minus sign (``--region -76,37,-75,38``: every CONUS longitude is
negative), which argparse would take for an option."""


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--region -76,37,-75,38`` as ``--region=-76,37,-75,38``."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in NEGATIVE_VALUED and arg.startswith("-") and arg[1:2].isdigit():
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_join_negative_values(sys.argv[1:] if argv is None else list(argv)))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    from wcembed.core.errors import EXIT_BAD_INPUT, WcEmbedError, exit_code, one_line

    try:
        return int(args.func(args) or 0)
    except WcEmbedError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return exit_code(exc)
    except Exception as exc:
        if type(exc).__name__ not in ("NoCredentialsError", "PartialCredentialsError"):
            raise
        print(f"error: {exc}: an s3:// path needs AWS credentials, from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
              "AWS_PROFILE (aws configure), or the machine's role", file=sys.stderr)  # fmt: skip
        return EXIT_BAD_INPUT
