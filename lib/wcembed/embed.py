"""Embed one (year, column): read chips, run Clay v0, write one GeoParquet file.

The unit of work of the whole system. Reading overlaps inference: background
threads read and mask chips (each with its own :class:`~wcembed.tiles.ChipReader`,
so every tile is opened once per thread) into a bounded window of futures,
consumed strictly in row order, so batches, and therefore the file, are the
same on every run. The slower of reading and inference sets the pace.

On a CPU one reader thread is the default: the encoder needs the cores, and
every COG block of the column is fetched once. On a GPU the default is one
reader per core (:func:`reader_workers`): decoding DEFLATE blocks, not the
model, is then the bottleneck, at the cost of some blocks fetched by two threads.

The parameters of a run are a :class:`~wcembed.job.ColumnJob`; the file, its
metadata and the STAC Item beside it are written by :func:`wcembed.store.write_column`.

Example
-------
>>> result = embed_column(2020, 1410, output="outputs/embeddings", tiles="outputs/sample",
...                       allow_untrained=True)  # doctest: +SKIP
>>> result.path  # doctest: +SKIP
'outputs/embeddings/2020/worldcover_embeddings_2020_1410_v002.gpq'
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import torch

import wcembed
from wcembed import store
from wcembed.grid import Grid
from wcembed.inference import COMPOSITE_DATE, Embedder
from wcembed.job import ColumnJob
from wcembed.product import VERSIONS, attribution
from wcembed.tiles import Chip, ChipReader
from wcembed.weights import LoadedModel, load_model

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


class _Prefetcher:
    """Reads chips in background threads, yielding them in the order given.

    A thread reads ``group`` consecutive rows of a column in one task: their chips
    share COG block rows (1024 px blocks, 512 px chips), which the thread's reader
    then decodes once instead of once per thread.
    """

    GROUP = 4

    def __init__(self, grid: Grid, year: int, source: str, workers: int, depth: int) -> None:
        self.grid, self.year, self.source = grid, year, source
        self.group = self.GROUP if workers > 1 else 1
        self.in_flight = max(depth // self.group, workers)
        self._local = threading.local()
        self._readers: list[ChipReader] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chip-reader")

    def _read(self, column: int, rows: list[int]) -> list[Chip]:
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = ChipReader(self.grid, self.year, self.source)
            with self._lock:
                self._readers.append(reader)
        return [reader.read(column, row) for row in rows]

    def __call__(self, column: int, rows: list[int]):
        pending: collections.deque = collections.deque()
        todo = (rows[i : i + self.group] for i in range(0, len(rows), self.group))
        for group in todo:
            pending.append(self._pool.submit(self._read, column, group))
            if len(pending) >= self.in_flight:
                break
        while pending:
            chips = pending.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(self._pool.submit(self._read, column, nxt))
            yield from chips

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        for r in self._readers:
            r.close()


def reader_workers(device: str | torch.device) -> int:
    """Default chip reader threads for a device: one per core this process may use on a GPU, else one."""
    if torch.device(device).type != "cuda":
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def provenance(model: LoadedModel, embedder: Embedder, job: ColumnJob, chip_size: int) -> dict[str, dict]:
    """The ``embedding`` and ``wcembed`` metadata of a column's file."""
    untrained, weights, year = model.untrained, model.weights, job.year
    model_name = weights.name
    if untrained:
        model_name += " encoder (UNTRAINED random weights, not Clay embeddings)"
    embedding = {
        "model": model_name,
        "model_version": weights.version,
        "checkpoint": model.checkpoint,
        "model_url": weights.url,
        "checkpoint_sha256": model.sha256,
        "weights": "untrained" if untrained else f"clay-{weights.version}",
        "providers": ["ESA WorldCover (imagery)", "Clay (model)", "wcembed (embeddings)"],
        "license": f"CC-BY-4.0 (imagery: {attribution(year)}); model weights {weights.license}",
        "datetime_range": [f"{year}-01-01T00:00:00Z", f"{year}-12-31T23:59:59Z"],
        "source_dataset": "ESA WorldCover 10m S2 RGBNIR annual composite",
        "source_version": VERSIONS[year],
        "dimension": model.encoder.config.dim,
        "dtype": "float32",
        "column": "embeddings",
        "pooling": "mean of patch tokens (rgb and nir groups; latlon and time tokens excluded)",
    }
    month, day = COMPOSITE_DATE
    prov = {
        "package": "wcembed",
        "package_version": wcembed.__version__,
        "format": store.FORMAT_VERSION,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "year": year,
        "column": job.column,
        "chip_size_px": chip_size,
        "pixel_size_deg": "1/12000",
        **weights.describe(),
        "date_encoded": f"{year}-{month:02d}-{day:02d}",
        "min_valid_fraction": job.min_valid_fraction,
        "tiles": str(job.tiles),
        "precision": embedder.precision,
        "precision_check": embedder.check,
        "device": str(embedder.device),
        "reader_workers": job.workers or reader_workers(embedder.device),
        "attribution": attribution(year),
    }
    return {"embedding": embedding, "wcembed": prov}


def embed_column(
    year: int,
    column: int,
    *,
    grid: Grid | None = None,
    model: LoadedModel | None = None,
    progress: bool = True,
    **params,
) -> ColumnResult:
    """Embed every chip of one column and write its GeoParquet file.

    Parameters
    ----------
    year, column : int
        What to embed (column numbers are grid columns, see :mod:`wcembed.grid`).
    grid : Grid, optional
        The grid, if already planned (else planned from the tile source).
    model : LoadedModel, optional
        The encoder, if already loaded (else loaded from ``checkpoint``).
    progress : bool
        Show a progress bar.
    **params
        Any other parameter of :class:`~wcembed.job.ColumnJob`: ``output``, ``tiles``,
        ``checkpoint``, ``batch_size``, ``min_valid_fraction``, ``allow_untrained``, ...

    Returns
    -------
    ColumnResult
    """
    return run_job(ColumnJob(year=year, column=column, **params), grid=grid, model=model, progress=progress)


def run_job(
    job: ColumnJob, *, grid: Grid | None = None, model: LoadedModel | None = None, progress: bool = True
) -> ColumnResult:
    """Run a :class:`~wcembed.job.ColumnJob`: read, embed and write one column (see :func:`embed_column`)."""
    path = job.output_path  # a job template (no column) is refused here, before any work
    grid = grid or job.plan_grid()
    year, column = job.year, grid.check_column(job.column)
    if store.exists(path) and not job.overwrite:
        log.info("%s exists: column %d of %d is done", path, column, year)
        return ColumnResult(year, column, path, "exists")

    model = model or load_model(job.checkpoint, allow_untrained=job.allow_untrained)
    embedder = Embedder(model, device=job.device, precision=job.precision)
    rows = [int(r) for r in grid.rows(column)][: job.max_rows]
    kept: list[tuple[int, float]] = []  # row and valid fraction of the embedded chips
    vectors: list[np.ndarray] = []
    batch: list[Chip] = []
    skipped = 0

    def flush() -> None:
        if not batch:
            return
        lon_lat = [grid.chip_center(c.column, c.row) for c in batch]
        vectors.append(
            embedder(
                np.stack([c.pixels for c in batch]),
                np.stack([c.valid for c in batch]),
                [ll[1] for ll in lon_lat],
                [ll[0] for ll in lon_lat],
                year,
            )
        )
        kept.extend((c.row, c.valid_fraction) for c in batch)  # pixels are not kept
        batch.clear()

    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    workers = job.workers or reader_workers(embedder.device)
    prefetch = _Prefetcher(grid, year, str(job.tiles), workers=workers, depth=2 * job.batch_size)
    bar = tqdm(total=len(rows), unit="chip", desc=f"{year} column {column}", disable=not progress)
    try:
        for chip in prefetch(column, rows):
            if chip.valid_fraction >= job.min_valid_fraction and chip.valid_fraction > 0:
                batch.append(chip)
                if len(batch) >= job.batch_size:
                    flush()
            else:
                skipped += 1
            bar.update(1)
            bar.set_postfix(skipped=skipped, refresh=False)
        flush()
    finally:
        bar.close()
        prefetch.close()
    seconds = time.perf_counter() - t0

    meta = provenance(model, embedder, job, grid.chip_size)
    dim = model.encoder.config.dim
    embeddings = np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32)
    store.write_column(path, grid, year, column, kept, embeddings, meta)
    weights = meta["embedding"]["weights"]
    log.info("wrote %s: %d chips embedded, %d skipped, %.1fs (%s weights)", path, len(kept), skipped, seconds, weights)
    return ColumnResult(year, column, path, "written", len(rows), len(kept), skipped, seconds, weights)
