"""AWS Batch: one array job per year, one band of adjacent columns per array index.

Each array index runs :func:`entrypoint` in the container: it reads
``AWS_BATCH_JOB_ARRAY_INDEX`` and the job's environment, maps the index to a
band through the grid's bands (:meth:`wcembed.core.grid.Grid.band_starts` for the
job's ``BAND`` width; with the default width 1 a band is a column), or through
an explicit ``GRID_COLUMNS`` list of band starts (reruns), and executes
``notebooks/embed_column.ipynb`` with papermill. The band's columns each get
their own file; the executed notebook is stored next to them for debugging
(``{OUTPUT}/{YEAR}/notebooks/embed_{YEAR}_{column:04d}.ipynb``, with
``-{last:04d}`` for a band).

Exit codes tell AWS Batch's retry strategy what to do:

=================== ===== ==========================================================
outcome             code  retry strategy
=================== ===== ==========================================================
done (or was done)  0
transient failure   75    ``onExitCode: 75`` -> RETRY (HTTP 5xx, timeouts, ...)
bad input           65    EXIT (bad year/column/index, missing or corrupt tile, bad checkpoint)
anything else       1     EXIT (a bug: look at the stored notebook)
host lost           -     ``onStatusReason: Host EC2*`` -> RETRY (spot reclaim, host failure)
=================== ===== ==========================================================

Environment of a job: the parameters of :class:`~wcembed.pipeline.job.ColumnJob` under
their environment names (``YEAR``, ``OUTPUT``, ``TILES``, ``TILE_INDEX``,
``REGION``, ``CHECKPOINT``, ``BATCH_SIZE``, ``DEVICE``, ``PRECISION``,
``MIN_VALID_FRACTION``, ``ALLOW_UNTRAINED``, ``OVERWRITE``, ``MAX_ROWS``,
``WORKERS``, ``BAND``), and optionally ``GRID_COLUMNS`` (comma-separated first columns of
bands; index i runs the i-th) and ``NOTEBOOK`` (another notebook to run).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from wcembed import NOTEBOOKS, ROOT
from wcembed.core import errors, store
from wcembed.core.grid import Grid, bands_holding
from wcembed.core.product import check_year
from wcembed.pipeline.job import ColumnJob

log = logging.getLogger(__name__)

RETRY_ATTEMPTS = 3
DEFAULT_NOTEBOOK = NOTEBOOKS / "embed_column.ipynb"
JOB_DEFINITION = ROOT / "batch" / "job_definition.json"


def band_for_index(env: Mapping[str, str], job: ColumnJob, grid: Grid) -> int:
    """The first column of the band that array index ``AWS_BATCH_JOB_ARRAY_INDEX`` (default 0) runs: the
    index-th of ``GRID_COLUMNS`` if given, else of ``grid``'s bands of the width of ``job`` (its template)."""
    raw = env.get("AWS_BATCH_JOB_ARRAY_INDEX", "0")
    try:
        index = int(raw)
    except ValueError:
        raise errors.BadColumnError(f"AWS_BATCH_JOB_ARRAY_INDEX={raw!r} is not an integer") from None
    if not env.get("GRID_COLUMNS"):
        return grid.band_at_index(index, job.band)
    try:
        starts = [int(c) for c in env["GRID_COLUMNS"].split(",") if c.strip()]
    except ValueError:
        raise errors.BadColumnError(f"GRID_COLUMNS={env['GRID_COLUMNS']!r} is not a list of column numbers") from None
    if not 0 <= index < len(starts):
        raise errors.BadColumnError(f"array index {index} is outside the {len(starts)} entries of GRID_COLUMNS")
    grid.band(starts[index], job.band)  # a band off the grid is bad input here, before papermill starts
    return starts[index]


def job_template(env: Mapping[str, str]) -> ColumnJob:
    """The job of a Batch job's environment, without its column (a template)."""
    if "YEAR" not in env or "OUTPUT" not in env:
        raise errors.BadParameterError("the job needs YEAR and OUTPUT in its environment")
    return ColumnJob.from_env(env)


def job_for_index(env: Mapping[str, str], grid: Grid | None = None) -> tuple[ColumnJob, Grid]:
    """The column (or band) job that a Batch job's environment and array index describe, and its grid: the
    environment read once, the grid planned once (unless given)."""
    job = job_template(env)
    grid = grid or job.plan_grid()
    return dataclasses.replace(job, column=band_for_index(env, job, grid)), grid


ENTRYPOINT_ENV = {
    "AWS_BATCH_JOB_ARRAY_INDEX": "the array index (set by AWS Batch; default 0)",
    "GRID_COLUMNS": "comma-separated first columns of the bands to run: index i runs the i-th (reruns)",
    "NOTEBOOK": "the notebook papermill executes (default notebooks/embed_column.ipynb)",
    "WORKDIR": "the notebook's working folder (default: the current one)",
}
"""What the entrypoint reads of its environment besides the job's parameters."""


def environment_help() -> str:
    """The environment variables a Batch job reads, one per line, with what each means (``batch --help``)."""

    lines = [f"  {f.metadata['env']:<26} {f.metadata['help']}" for f in ColumnJob.fields() if f.metadata["env"]]
    lines += [f"  {name:<26} {text}" for name, text in ENTRYPOINT_ENV.items()]
    return "environment variables:\n" + "\n".join(lines)


def entrypoint(env: Mapping[str, str] | None = None) -> int:
    """Run one array index: index -> band of columns -> papermill. Returns the process exit code."""
    import papermill  # deferred: only to run a notebook

    env = dict(os.environ if env is None else env)
    try:
        job, grid = job_for_index(env)
        columns = job.columns(grid)
        workdir = env.get("WORKDIR") or os.getcwd()
        if not Path(workdir).is_dir():
            raise errors.BadParameterError(f"WORKDIR={workdir}: no such folder (the notebook's working folder)")
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return errors.exit_code(exc)
    year, column = job.year, job.column
    if not job.overwrite and all(store.done(job.output_path(c)) for c in columns):
        verb = "is" if len(columns) == 1 else "are"
        print(f"{_columns_text(columns)} of {year} {verb} done: {job.output_path(columns[0])}")
        return errors.EXIT_OK
    name = f"{column:04d}" + (f"-{column + job.band - 1:04d}" if job.band > 1 else "")
    notebook_key = f"{job.output.rstrip('/')}/{year}/notebooks/embed_{year}_{name}.ipynb"
    index = env.get("AWS_BATCH_JOB_ARRAY_INDEX", "0")
    print(f"array index {index} -> {_columns_text(columns)} -> {notebook_key}")
    code = errors.EXIT_OK
    with tempfile.TemporaryDirectory() as tmp:
        executed = Path(tmp) / "executed.ipynb"
        try:
            papermill.execute_notebook(
                env.get("NOTEBOOK", str(DEFAULT_NOTEBOOK)),
                str(executed),
                parameters=job.parameters(),
                progress_bar=False,
                cwd=workdir,
            )
        except Exception as exc:
            code = errors.exit_code(exc)
            print(f"error: {_columns_text(columns)} failed ({type(exc).__name__}): {exc}", file=sys.stderr)
        if executed.exists():
            store.write_bytes_atomic(notebook_key, executed.read_bytes(), "application/x-ipynb+json")
    return code


def _columns_text(columns: Sequence[int]) -> str:
    return f"column {columns[0]}" if len(columns) == 1 else f"columns {columns[0]}..{columns[-1]}"


def run_array(indices: Sequence[int], env: Mapping[str, str], parallel: int = 2) -> dict[int, int]:
    """Run the entrypoint locally for array ``indices``, ``parallel`` at a time, as separate processes.

    Each process gets ``env`` plus ``AWS_BATCH_JOB_ARRAY_INDEX``, exactly like a
    Batch child job. Returns ``{index: exit code}``.
    """

    def one(index: int) -> int:
        child = {**os.environ, **env, "AWS_BATCH_JOB_ARRAY_INDEX": str(index)}
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "wcembed", "batch"], env=child, capture_output=True, text=True)
        log.info("index %d exited %d in %.1fs", index, done.returncode, time.perf_counter() - t0)
        if done.returncode:
            log.warning("index %d: %s", index, done.stderr.strip().splitlines()[-1:] or "")
        return done.returncode

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return dict(zip(indices, pool.map(one, indices), strict=True))


# --------------------------------------------------------------------------- requests


def retry_strategy(attempts: int = RETRY_ATTEMPTS) -> dict:
    """Retry lost hosts and transient failures; exit on anything else."""
    return {
        "attempts": attempts,
        "evaluateOnExit": [
            {"onStatusReason": "Host EC2*", "action": "RETRY"},
            {"onExitCode": str(errors.EXIT_TRANSIENT), "action": "RETRY"},
            {"onReason": "*", "action": "EXIT"},
        ],
    }


def definition_environment(*, gpu: bool = False, path: str | Path = JOB_DEFINITION) -> dict[str, str]:
    """The environment of the job definition (``batch/job_definition.json``): the CPU one, or with the
    GPU variant's laid over it."""
    spec = json.loads(Path(path).read_text())
    env = {e["name"]: e["value"] for e in spec["containerProperties"].get("environment", [])}
    return env | (spec["_gpu"]["environment"] if gpu else {})


def job_definition_request(image: str, *, gpu: bool = False, path: str | Path = JOB_DEFINITION) -> dict:
    """``register_job_definition`` parameters from ``batch/job_definition.json`` for an image."""
    spec = json.loads(Path(path).read_text())
    req = {k: v for k, v in spec.items() if not k.startswith("_")}
    props = dict(req["containerProperties"])
    props["image"] = image
    if gpu:  # the GPU variant's resources replace the CPU ones
        props["resourceRequirements"] = spec["_gpu"]["resourceRequirements"]
    props["environment"] = [{"name": k, "value": v} for k, v in definition_environment(gpu=gpu, path=path).items()]
    req["containerProperties"] = props
    req["jobDefinitionName"] = req["jobDefinitionName"] + ("-gpu" if gpu else "")
    req["retryStrategy"] = retry_strategy()
    return req


def submit_request(
    year: int,
    n_jobs: int,
    *,
    job_queue: str,
    job_definition: str,
    environment: Mapping[str, str],
    columns: Sequence[int] | None = None,
    gpu: bool = False,
    timeout_s: int = 4 * 3600,
) -> dict:
    """``submit_job`` parameters of a year's array job (``n_jobs`` children; one band each, or one per
    entry of ``columns``, the first columns of the bands to run)."""
    env = {"YEAR": str(check_year(year)), **environment}
    if columns is not None:
        env["GRID_COLUMNS"] = ",".join(str(c) for c in columns)
        n_jobs = len(columns)
    if n_jobs < 1:
        raise errors.BadInputError("nothing to submit: no band")
    overrides: dict = {"environment": [{"name": k, "value": str(v)} for k, v in sorted(env.items())]}
    if gpu:
        overrides["resourceRequirements"] = [{"type": "GPU", "value": "1"}]
    req: dict = {
        "jobName": f"wcembed-{year}" + ("-rerun" if columns is not None else ""),
        "jobQueue": job_queue,
        "jobDefinition": job_definition,
        "containerOverrides": overrides,
        "retryStrategy": retry_strategy(),
        "timeout": {"attemptDurationSeconds": int(timeout_s)},
        "tags": {"project": "wcembed", "year": str(year)},
    }
    if n_jobs >= 2:  # AWS Batch array size is 2..10000; a single column is a plain job (index defaults to 0)
        if n_jobs > 10_000:
            raise errors.BadInputError(f"{n_jobs} bands exceed AWS Batch's array limit of 10000")
        req["arrayProperties"] = {"size": n_jobs}
    return req


def missing_bands(grid: Grid, output: str, year: int, width: int = 1) -> list[int]:
    """First columns of the bands of ``width`` (:meth:`Grid.band_starts`) that hold a column with no output file:
    what ``resubmit-missing`` sends (a band job then skips its finished columns)."""
    missing = missing_columns(grid, output, year)
    return bands_holding(missing, width).tolist()


def missing_columns(grid: Grid, output: str, year: int) -> list[int]:
    """Columns of ``grid`` whose output file for ``year`` under ``output`` does not exist or is partial
    (:func:`wcembed.core.store.done`; the footers are read a few at a time)."""

    listed = set(store.list_outputs(output, year))
    paths = {int(c): store.output_path(output, year, int(c)) for c in grid.columns}
    with ThreadPoolExecutor(8) as pool:
        done = dict(zip(paths, pool.map(lambda p: p in listed and store.done(p), paths.values()), strict=True))
    return [c for c, ok in done.items() if not ok]


def validate(operation: str, params: dict) -> None:
    """Validate request parameters against botocore's AWS Batch service model (no network)."""
    import botocore.session  # deferred: only for s3:// paths and Batch requests
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("batch")
    report = ParamValidator().validate(params, model.operation_model(operation).input_shape)
    if report.has_errors():
        raise errors.BadInputError(f"invalid {operation} request: {report.generate_report()}")
