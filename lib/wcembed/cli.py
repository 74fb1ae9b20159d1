"""Command line: ``python -m wcembed <command>`` (also installed as ``wcembed``).

Commands
--------
plan      plan the chip grid of a year and write it as GeoParquet
sample    build the sample region (real Sentinel-2 scene in WorldCover layout)
embed     embed one (year, column) into its GeoParquet file
batch     the AWS Batch entrypoint: array index -> column -> papermill
run-array run the entrypoint locally for a range of array indices
submit    build (and send, or print with --dry-run) the AWS Batch array job
resubmit-missing  submit only the columns whose output is missing
index     ingest GeoParquet files into LanceDB
search    nearest chips of a chip id or a lon/lat point
demo      the whole pipeline offline on the sample region
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from wcembed.errors import BadParameterError
from wcembed.job import ColumnJob
from wcembed.product import YEARS

log = logging.getLogger("wcembed")
GRID_PARAMETERS = ("year", "tiles", "tile_index", "region")
"""The job parameters that decide the grid."""


def cmd_plan(args: argparse.Namespace) -> int:
    from wcembed.tileset import plan_grid

    grid = plan_grid(args.year, args.tiles, tile_index=args.tile_index, region=args.region, chip_size=args.chip_size)
    out = Path(args.out) / f"grid_{args.year}_{args.region.replace(',', '_')}.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    gdf = grid.to_geodataframe(args.year)
    gdf.to_parquet(out, compression="zstd", schema_version="1.1.0", write_covering_bbox=True)
    print(f"tiles:   {len(grid.tiles)}")
    print(f"columns: {len(grid.columns)} ({grid.columns[0]}..{grid.columns[-1]})  <- AWS Batch array size")
    print(f"chips:   {grid.n_chips}")
    print(f"grid:    {out}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from wcembed.sample import build_sample_region

    for p in build_sample_region(args.out, years=args.years):
        print(p)
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from wcembed.embed import run_job

    result = run_job(ColumnJob.from_args(args))
    for k, v in result.summary().items():
        print(f"{k:>14}: {v}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wcembed", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plan", help="plan the chip grid")
    ColumnJob.add_arguments(p, only=GRID_PARAMETERS)
    p.add_argument("--chip-size", type=int, default=512)
    p.add_argument("--out", default="outputs/grid")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("sample", help="build the sample region from the Virginia scene")
    p.add_argument("--out", default="outputs/sample")
    p.add_argument("--years", type=int, nargs="+", default=list(YEARS))
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("embed", help="embed one column")
    ColumnJob.add_arguments(p, required=("column",))
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("demo", help="the whole pipeline offline on the sample region (outputs/)")
    p.add_argument(
        "--checkpoint", default=None, help="Clay v0.1 checkpoint (default: cached/downloadable, else untrained)"
    )
    p.add_argument("--outputs", default="outputs")
    p.add_argument("--parallel", type=int, default=2)
    p.set_defaults(func=lambda a: __import__("wcembed.demo").demo.run(a.checkpoint or None, a.outputs, a.parallel))

    p = sub.add_parser("index", help="ingest GeoParquet files (folder or s3:// prefix) into LanceDB")
    p.add_argument("source")
    p.add_argument("--db", default="outputs/lancedb")
    p.set_defaults(func=lambda a: print(__import__("wcembed.index").index.ingest(a.source, a.db)))

    p = sub.add_parser("search", help="nearest chips of a chip id or a lon/lat point")
    p.add_argument("--db", default="outputs/lancedb")
    p.add_argument("--chip", default=None)
    p.add_argument("--point", type=float, nargs=2, metavar=("LON", "LAT"), default=None)
    p.add_argument("--year", type=int, default=None)
    p.add_argument("-k", type=int, default=10)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("batch", help="AWS Batch entrypoint (reads AWS_BATCH_JOB_ARRAY_INDEX, YEAR, OUTPUT, ...)")
    p.set_defaults(func=lambda args: __import__("wcembed.batch").batch.entrypoint())

    p = sub.add_parser("run-array", help="run the Batch entrypoint locally for a range of indices")
    ColumnJob.add_arguments(p, exclude=("column",))
    p.add_argument("--indices", default=None, help="e.g. 0-9 or 3,5 (default: every column)")
    p.add_argument("--parallel", type=int, default=2)
    p.set_defaults(func=cmd_run_array)

    for name, text in (
        ("submit", "submit a year as an AWS Batch array job"),
        ("resubmit-missing", "submit only the columns whose output is missing"),
    ):
        p = sub.add_parser(name, help=text)
        ColumnJob.add_arguments(p, exclude=("column",), required=("output",))
        p.add_argument("--columns", default=None, help="explicit columns, e.g. 12,40,41 (reruns)")
        p.add_argument("--gpu", action="store_true", help="request one GPU per job (DEVICE=cuda)")
        p.add_argument("--dry-run", action="store_true", help="print the request as JSON, send nothing")
        p.add_argument("--job-queue", default="wcembed")
        p.add_argument("--job-definition", default="wcembed-column")
        p.set_defaults(func=cmd_submit, missing=name == "resubmit-missing")
    return parser


def _parse_indices(text: str | None, n: int) -> list[int]:
    if not text:
        return list(range(n))
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        try:
            out.extend(range(int(a), int(b or a) + 1))
        except ValueError:
            raise BadParameterError(f"{text!r} is not a list of numbers: use e.g. 0-9 or 3,5") from None
    return out


def cmd_search(args: argparse.Namespace) -> int:
    from wcembed.index import ChipIndex

    idx = ChipIndex(args.db)
    if args.chip:
        res = idx.by_chip(args.chip, args.k, year=args.year)
    elif args.point:
        res = idx.by_point(*args.point, k=args.k, year=args.year)
    else:
        raise SystemExit("give --chip or --point")
    print(res.drop(columns="geometry").to_string(index=False))
    return 0


def cmd_run_array(args: argparse.Namespace) -> int:
    from wcembed.batch import run_array

    job = ColumnJob.from_args(args)
    indices = _parse_indices(args.indices, len(job.plan_grid().columns))
    codes = run_array(indices, job.to_env(), parallel=args.parallel)
    failed = {i: c for i, c in codes.items() if c}
    print(f"{len(codes) - len(failed)} of {len(codes)} indices succeeded" + (f"; failed: {failed}" if failed else ""))
    return max(failed.values(), default=0)


def cmd_submit(args: argparse.Namespace) -> int:
    import json

    from wcembed.batch import missing_columns, submit_request, validate

    job = ColumnJob.from_args(args)
    grid = job.plan_grid()
    columns = [grid.check_column(c) for c in _parse_indices(args.columns, 0)] if args.columns else None
    if args.missing:
        columns = [c for c in missing_columns(grid, args.output, args.year) if columns is None or c in columns]
        print(f"{len(columns)} of {len(grid.columns)} columns have no output yet", file=sys.stderr)
        if not columns:
            return 0
    req = submit_request(
        args.year,
        len(grid.columns),
        job_queue=args.job_queue,
        job_definition=args.job_definition,
        environment={k: v for k, v in job.to_env().items() if k != "YEAR"},
        columns=columns,
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    from wcembed.errors import WcEmbedError

    try:
        return int(args.func(args) or 0)
    except WcEmbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        from wcembed.batch import exit_code_for

        return exit_code_for(exc)
