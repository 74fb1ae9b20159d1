"""Embed one (year, column), or a band of adjacent columns: read chips, run a model (Clay v0 or Clay v1.5,
:mod:`wcembed.pipeline.models`), write one GeoParquet file per column.

The unit of work of the whole system. A job reads its columns as one band
(:mod:`wcembed.pipeline.bands`): reader threads fetch and decode each COG block under
the band once and write the chips straight into a ring of batch buffers
(pinned memory on CUDA), while the model embeds the batch before. Batches are
per column and cut on absolute row numbers, so the files are the same on
every run, whatever the band width or the number of readers. The slower of
reading and inference sets the pace. A column's file is written as soon as its
last batch is embedded; a rerun skips finished columns and reads only what the
others need.

On a CPU one reader thread is the default: the encoder needs the cores. On a
GPU the default is one reader per core (:func:`reader_workers`): decoding
DEFLATE blocks, not the model, is then the bottleneck.

The parameters of a run are a :class:`~wcembed.pipeline.job.ColumnJob`; the file, its
metadata and the STAC Item beside it are made by :mod:`wcembed.core.contract` and written by
:func:`wcembed.core.store.write_column`.

Example
-------
>>> result = embed_column(2020, 1410, output="outputs/embeddings", tiles="outputs/sample",
...                       allow_untrained=True)  # doctest: +SKIP
>>> result.path  # doctest: +SKIP
'outputs/embeddings/2020/worldcover_embeddings_2020_1410_v003.gpq'
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from wcembed import __version__
from wcembed.core import store
from wcembed.core.contract import FORMAT_VERSION, FileMetadata, column_extent, column_table
from wcembed.core.errors import OutputError
from wcembed.core.grid import Grid
from wcembed.core.product import VERSIONS, attribution
from wcembed.pipeline.bands import BandFeed, BandPlan
from wcembed.pipeline.inference import Embedder, pick_device
from wcembed.pipeline.job import ColumnJob
from wcembed.pipeline.models import COMPOSITE_DATE, get_model
from wcembed.pipeline.weights import LoadedModel, load_model

log = logging.getLogger(__name__)


@dataclass
class ColumnResult:
    """What one column run did. ``status`` is ``"written"`` or ``"exists"`` (skipped, already done)."""

    year: int
    column: int
    path: str
    status: str
    chips: int = 0
    embedded: int = 0
    skipped: int = 0
    seconds: float = 0.0
    weights: str = ""

    @property
    def chips_per_s(self) -> float:
        return self.chips / self.seconds if self.seconds else 0.0

    def summary(self) -> dict:
        """A flat dict for a table: chips read, embedded, skipped, seconds, chips/s, file."""
        return {**asdict(self), "chips_per_s": round(self.chips_per_s, 3)}


def reader_workers(device: str | torch.device) -> int:
    """Default chip reader threads for a device: one per core this process may use on a GPU, else one."""
    if torch.device(device).type != "cuda":
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def provenance(
    model: LoadedModel, embedder: Embedder, job: ColumnJob, column: int, chip_size: int, rows: dict
) -> FileMetadata:
    """The metadata record of a column's file (:class:`wcembed.core.contract.FileMetadata`); ``rows``: the chips
    of the column in the grid (``rows_planned``), those read (``rows_read``), the job's ``max_rows`` and
    whether the file is ``complete``."""
    untrained, spec, year = model.untrained, model.model, job.year
    model_name = spec.name
    if untrained:
        model_name += " encoder (UNTRAINED random weights, not Clay embeddings)"
    embedding = {
        "model": model_name,
        "model_id": spec.id,
        "model_version": spec.version,
        "checkpoint": model.checkpoint,
        "model_url": spec.url,
        "checkpoint_sha256": model.sha256,
        "weights": "untrained" if untrained else spec.weights_id,
        "providers": ["ESA WorldCover (imagery)", "Clay (model)", "wcembed (embeddings)"],
        "license": f"CC-BY-4.0 (imagery: {attribution(year)}); model weights {spec.license}",
        "datetime_range": [f"{year}-01-01T00:00:00Z", f"{year}-12-31T23:59:59Z"],
        "source_dataset": "ESA WorldCover 10m S2 RGBNIR annual composite",
        "source_version": VERSIONS[year],
        "dimension": model.encoder.config.dim,
        "dtype": "float32",
        "column": "embeddings",
        "recipe": embedder.recipe,
        "pooling": spec.recipes[embedder.recipe],
    }
    month, day = COMPOSITE_DATE
    prov = {
        "package": "wcembed",
        "package_version": __version__,
        "format": FORMAT_VERSION,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "year": year,
        "column": column,
        "chip_size_px": chip_size,
        "pixel_size_deg": "1/12000",
        **spec.describe(embedder.recipe),
        "date_encoded": f"{year}-{month:02d}-{day:02d}",
        "min_valid_fraction": job.min_valid_fraction,
        "tiles": str(job.tiles),
        "precision": embedder.precision,
        "precision_check": embedder.check,
        "device": str(embedder.device),
        "reader_workers": job.workers or reader_workers(embedder.device),
        "attribution": attribution(year),
        **rows,
    }
    return FileMetadata(embedding, prov)


def embed_column(
    year: int,
    column: int,
    *,
    grid: Grid | None = None,
    model: LoadedModel | str | None = None,
    progress: bool = True,
    **params,
) -> ColumnResult:
    """Embed every chip of one column and write its GeoParquet file.

    Parameters
    ----------
    year, column : int
        What to embed (column numbers are grid columns, see :mod:`wcembed.core.grid`).
    grid : Grid, optional
        The grid, if already planned (else planned from the tile source).
    model : LoadedModel or str, optional
        The encoder, if already loaded; else the id of the model to load from ``checkpoint`` (``clay-v0``, the
        default, or ``clay-v1.5``).
    progress : bool
        Show a progress bar.
    **params
        Any other parameter of :class:`~wcembed.pipeline.job.ColumnJob`: ``output``, ``tiles``,
        ``checkpoint``, ``batch_size``, ``min_valid_fraction``, ``allow_untrained``, ...

    Returns
    -------
    ColumnResult
    """
    if isinstance(model, str):
        params, model = {**params, "model": model}, None
    (result,) = run_job(ColumnJob(year=year, column=column, **params), grid=grid, model=model, progress=progress)
    return result


def run_job(
    job: ColumnJob, *, grid: Grid | None = None, model: LoadedModel | None = None, progress: bool = True
) -> list[ColumnResult]:
    """Run a :class:`~wcembed.pipeline.job.ColumnJob`: read, embed and write each of its columns (one file per
    column, see :func:`embed_column`). Finished columns are skipped (unless ``overwrite``) and not read.

    Returns one :class:`ColumnResult` per column of the job, west to east.
    """
    if model is not None and model.model.id != job.model:  # the model given is the one that runs
        job = dataclasses.replace(job, model=model.model.id)
    grid = grid or job.plan_grid()
    columns = job.columns(grid)  # a job template (no column) or a band off the grid is refused here
    pick_device(job.device)  # as is a device this torch cannot run, before a checkpoint loads
    results: dict[int, ColumnResult] = {}
    for column in columns:
        path = job.output_path(column)
        if store.exists(path) and not job.overwrite:
            record = None
            with contextlib.suppress(OutputError):  # a record that cannot be read: the column is embedded again
                record = store.read_metadata(path)
            if record is not None:  # a file of another model stops the job, whole or partial
                _same_kind_of_weights(job, path, record)
            if record is None or not record.complete:
                log.warning("%s is partial (or its record cannot be read): column %d of %d is embedded again",
                            path, column, job.year)  # fmt: skip
                continue
            log.info("%s exists: column %d of %d is done", path, column, job.year)
            if store.restore_item(path, column_extent(grid, column)):
                log.warning("%s had no STAC Item (a writer killed between the two): written now", path)
            results[column] = ColumnResult(job.year, column, path, "exists")
    todo = [c for c in columns if c not in results]
    if todo:
        model = model or load_model(job.checkpoint, model=job.model, allow_untrained=job.allow_untrained)
        results |= _embed_band(job, grid, model, todo, progress)
    return [results[c] for c in columns]


def _same_kind_of_weights(job: ColumnJob, path: str, record: FileMetadata) -> None:
    """:class:`OutputError` when a finished file was embedded with another model or recipe than ``job``'s, or
    with untrained weights and ``job`` has a checkpoint, or the other way round: one output folder holds one
    model's embeddings. Decided before any checkpoint is loaded; a job with neither a checkpoint nor
    ``allow_untrained`` embeds nothing and is not asked."""
    spec = get_model(job.model)
    recipe = spec.check_recipe(job.recipe)
    if (record.model_id, record.recipe or spec.recipe) != (spec.id, recipe):
        raise OutputError(
            f"{path} holds embeddings of {record.model_id} ({record.recipe or 'its'} recipe), this job embeds with "
            f"{spec.id} ({recipe} recipe): one output folder holds one model's embeddings (write elsewhere)"
        )
    if job.checkpoint is None and not job.allow_untrained:
        return
    if record.untrained != (job.checkpoint is None):
        raise OutputError(
            f"{path} holds embeddings of {record.weights} weights, this job embeds with "
            f"{job.checkpoint or 'untrained weights'}: one output folder holds one model's embeddings "
            "(write elsewhere, or OVERWRITE=1 to embed its columns again)"
        )


@dataclass
class _ColumnRun:
    """What a band job gathers of one of its columns until the column's file is written."""

    column: int
    embedder: Embedder  # its own: an "auto" precision decides on the column's own first batch
    rows_read: int  # chips of the column in the plan (all of them, or the first max_rows)
    batches_left: int
    kept: list[tuple[int, float]] = field(default_factory=list)  # row and valid fraction of the embedded chips
    vectors: list[np.ndarray] = field(default_factory=list)
    skipped: int = 0


def _embed_band(
    job: ColumnJob, grid: Grid, model: LoadedModel, columns: list[int], progress: bool
) -> dict[int, ColumnResult]:
    """Read the columns' chips as one band (each COG block once), embed them column by column in batches,
    and write each column's file as soon as its last batch is embedded."""
    from tqdm.auto import tqdm  # deferred: only for a progress bar

    year, cs = job.year, grid.chip_size
    plan = BandPlan(grid, {c: [int(r) for r in grid.rows(c)][: job.max_rows] for c in columns}, job.batch_size)
    runs = [
        _ColumnRun(
            column,
            Embedder(model, device=job.device, precision=job.precision, recipe=job.recipe),
            rows_read=sum(len(group[at]) for group in plan.groups),
            batches_left=sum(1 for group in plan.groups if group[at]),
        )
        for at, column in enumerate(columns)
    ]
    device = runs[0].embedder.device
    results: dict[int, ColumnResult] = {}

    def write(run: _ColumnRun) -> None:
        planned = len(grid.rows(run.column))
        rows = {"rows_planned": planned, "rows_read": run.rows_read, "max_rows": job.max_rows,
                "complete": run.rows_read == planned}  # fmt: skip
        meta = provenance(model, run.embedder, job, run.column, cs, rows)
        dim = run.embedder.encoder.config.dim
        emb = np.concatenate(run.vectors) if run.vectors else np.zeros((0, dim), np.float32)
        path = job.output_path(run.column)
        table = column_table(grid, year, run.column, run.kept, emb, meta)
        store.write_column(path, table, meta, column_extent(grid, run.column))
        seconds = time.perf_counter() - t0
        log.info("wrote %s: %d chips embedded, %d skipped, %.1fs (%s weights)", path, len(run.kept), run.skipped,
                 seconds, meta.weights)  # fmt: skip
        results[run.column] = ColumnResult(
            year, run.column, path, "written", run.rows_read, len(run.kept), run.skipped, seconds, meta.weights
        )
        run.vectors.clear()

    workers = job.workers or reader_workers(device)
    label = f"{year} column {columns[0]}" + (f"..{columns[-1]}" if len(columns) > 1 else "")
    t0 = time.perf_counter()
    with (
        BandFeed(plan, year, str(job.tiles), workers=workers, pin=device.type == "cuda") as feed,
        tqdm(total=plan.n_chips, unit="chip", desc=label, disable=not progress) as bar,
    ):
        for group in feed:
            for at, (run, rows) in enumerate(zip(runs, group.rows, strict=True)):
                if not rows:
                    continue
                fractions = group.valid[at, : len(rows)] / cs**2
                keep = np.flatnonzero((fractions >= job.min_valid_fraction) & (fractions > 0))
                run.skipped += len(rows) - len(keep)
                if len(keep):
                    pixels = run.embedder.to_device(group.pixels[at, : len(rows)])  # no copy on the host
                    if len(keep) < len(rows):  # selected on the device; as int16 (same bits: every device has it)
                        picked = pixels.view(torch.int16)[torch.as_tensor(keep, device=pixels.device)]
                        pixels = picked.view(torch.uint16)
                    places = [grid.chip_center(run.column, rows[i]) for i in keep]  # (lon, lat), as the grid gives
                    run.vectors.append(run.embedder(pixels, None, places, year))
                    run.kept.extend((rows[i], float(fractions[i])) for i in keep)
                bar.update(len(rows))
                bar.set_postfix(skipped=sum(r.skipped for r in runs), refresh=False)
                run.batches_left -= 1
                if run.batches_left == 0:
                    write(run)
    for run in runs:  # columns without a chip to read (max_rows=0)
        if run.column not in results:
            write(run)
    return results
