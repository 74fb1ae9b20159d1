"""Embed one (year, column): read chips, run Clay v0, write one GeoParquet file.

The unit of work of the whole system. Reading overlaps inference: background
threads read and mask chips (each with its own :class:`~wcembed.tiles.ChipReader`,
so every tile is opened once per thread) into a bounded window of futures,
consumed strictly in row order, so batches, and therefore the file, are the
same on every run. The slower of reading and inference sets the pace.

With ``workers=1`` (the default) every COG block of the column is fetched
once; more workers help a fast GPU keep busy at the cost of some blocks fetched
by two threads.

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
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import wcembed
from wcembed import store
from wcembed.grid import VERSIONS, Grid, check_year, chip_id
from wcembed.model import MEAN, STD, Embedder, LoadedModel, load_model
from wcembed.tiles import Chip, ChipReader
from wcembed.tileset import Region, plan_grid

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
    """Reads chips in background threads, yielding them in the order given."""

    def __init__(self, grid: Grid, year: int, source: str, workers: int, depth: int) -> None:
        self.grid, self.year, self.source = grid, year, source
        self.depth = max(depth, workers)
        self._local = threading.local()
        self._readers: list[ChipReader] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chip-reader")

    def _read(self, column: int, row: int) -> Chip:
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = ChipReader(self.grid, self.year, self.source)
            with self._lock:
                self._readers.append(reader)
        return reader.read(column, row)

    def __call__(self, column: int, rows: list[int]):
        pending: collections.deque = collections.deque()
        todo = iter(rows)
        for row in todo:
            pending.append(self._pool.submit(self._read, column, row))
            if len(pending) >= self.depth:
                break
        while pending:
            chip = pending.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(self._pool.submit(self._read, column, nxt))
            yield chip

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        for r in self._readers:
            r.close()


def provenance(
    model: LoadedModel,
    embedder: Embedder,
    *,
    year: int,
    column: int,
    chip_size: int,
    tiles: str,
    min_valid_fraction: float,
) -> dict[str, dict]:
    """The ``embedding`` and ``wcembed`` metadata of a file."""
    untrained = model.untrained
    model_name = "Clay v0.1 encoder (UNTRAINED random weights, not Clay embeddings)" if untrained else "Clay v0.1"
    embedding = {
        "model": model_name,
        "model_version": "v0.1",
        "checkpoint": model.checkpoint,
        "checkpoint_sha256": model.sha256,
        "weights": "untrained" if untrained else "clay-v0.1",
        "providers": ["ESA WorldCover (imagery)", "Clay (model)", "wcembed (embeddings)"],
        "license": "CC-BY-4.0 (imagery: " + wcembed.attribution(year) + "); model weights OpenRAIL-M",
        "datetime_range": [f"{year}-01-01T00:00:00Z", f"{year}-12-31T23:59:59Z"],
        "source_dataset": "ESA WorldCover 10m S2 RGBNIR annual composite",
        "source_version": VERSIONS[year],
        "dimension": model.encoder.config.dim,
        "dtype": "float32",
        "column": "embeddings",
        "pooling": "mean of patch tokens (rgb and nir groups; latlon and time tokens excluded)",
    }
    prov = {
        "package": "wcembed",
        "package_version": wcembed.__version__,
        "format": store.FORMAT_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "year": year,
        "column": column,
        "chip_size_px": chip_size,
        "pixel_size_deg": "1/12000",
        "bands": ["B04", "B03", "B02", "B08"],
        "band_groups": {"rgb": [0, 1, 2], "nir": [3], "band_encoding_rows": {"rgb": 0, "nir": 2}},
        "normalisation": {"mean": list(MEAN), "std": list(STD), "order": "B04,B03,B02,B08", "nodata": "band mean"},
        "date_encoded": f"{year}-06-01",
        "min_valid_fraction": min_valid_fraction,
        "tiles": str(tiles),
        "precision": embedder.precision,
        "device": str(embedder.device),
        "attribution": wcembed.attribution(year),
    }
    return {"embedding": embedding, "wcembed": prov}


def stac_item(path: str, table, metadata: dict[str, dict], bounds: tuple[float, float, float, float]) -> dict:
    """A STAC Item (dict) describing one output file."""
    import pystac
    import shapely

    emb, prov = metadata["embedding"], metadata["wcembed"]
    year, column = prov["year"], prov["column"]
    item = pystac.Item(
        id=f"worldcover-embeddings-{year}-{column:04d}",
        geometry=shapely.geometry.mapping(shapely.box(*bounds)),
        bbox=list(bounds),
        datetime=None,
        start_datetime=dt.datetime(year, 1, 1, tzinfo=dt.timezone.utc),
        end_datetime=dt.datetime(year, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc),
        properties={f"embedding:{k}": v for k, v in emb.items() if k != "datetime_range"}
        | {"wcembed:column": column, "wcembed:rows": table.num_rows, "wcembed:format": prov["format"]},
    )
    item.add_asset(
        "data",
        pystac.Asset(
            href=f"./{Path(path).name}",
            media_type="application/vnd.apache.parquet",
            roles=["data"],
            title="Chip embeddings (GeoParquet 1.1)",
        ),
    )
    return item.to_dict(include_self_link=False)


def embed_column(
    year: int,
    column: int,
    *,
    output: str | Path,
    tiles: str | Path,
    checkpoint: str | None = None,
    tile_index: str | None = None,
    region: Region = "CONUS",
    batch_size: int = 8,
    device: str | None = None,
    precision: str = "auto",
    min_valid_fraction: float = 0.5,
    allow_untrained: bool = False,
    overwrite: bool = False,
    max_rows: int | None = None,
    workers: int = 1,
    grid: Grid | None = None,
    model: LoadedModel | None = None,
    progress: bool = True,
) -> ColumnResult:
    """Embed every chip of one column and write its GeoParquet file.

    Parameters
    ----------
    year, column : int
        What to embed (column numbers are grid columns, see :mod:`wcembed.grid`).
    output : str or Path
        Folder or ``s3://bucket/prefix``; the file goes to
        ``{output}/{year}/worldcover_embeddings_{year}_{column:04d}_v002.gpq``.
    tiles : str or Path
        Tile source (folder, http(s) or s3 prefix of the bucket).
    checkpoint : str, optional
        Clay v0.1 checkpoint (path, https or s3 URL).
    tile_index : str, optional
        Where the tile list comes from (see :func:`wcembed.tileset.load_tiles`).
    batch_size : int
        Chips per forward pass.
    device, precision : str
        See :class:`wcembed.model.Embedder`.
    min_valid_fraction : float
        Chips with a smaller share of valid pixels are skipped (0..1).
    allow_untrained : bool
        Run with random weights when no checkpoint is given (recorded in the file).
    overwrite : bool
        Redo a column whose file exists (else it is skipped as done).
    max_rows : int, optional
        Embed only the first ``max_rows`` chips of the column (quick runs).
    workers : int
        Reader threads.

    Returns
    -------
    ColumnResult
    """
    year = check_year(year)
    if not 0 <= min_valid_fraction <= 1:
        raise ValueError(f"min_valid_fraction must be within 0..1, got {min_valid_fraction}")
    grid = grid or plan_grid(year, tiles, tile_index=tile_index, region=region)
    column = grid.check_column(column)
    path = store.output_path(output, year, column)
    if store.exists(path) and not overwrite:
        log.info("%s exists: column %d of %d is done", path, column, year)
        return ColumnResult(year, column, path, "exists")

    model = model or load_model(checkpoint, allow_untrained=allow_untrained)
    embedder = Embedder(model, device=device, precision=precision)
    rows = [int(r) for r in grid.rows(column)][:max_rows]
    kept: list[tuple[int, int, float]] = []  # column, row, valid fraction of the embedded chips
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
        kept.extend((c.column, c.row, c.valid_fraction) for c in batch)  # pixels are not kept
        batch.clear()

    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    prefetch = _Prefetcher(grid, year, str(tiles), workers=max(1, workers), depth=2 * batch_size)
    bar = tqdm(total=len(rows), unit="chip", desc=f"{year} column {column}", disable=not progress)
    try:
        for chip in prefetch(column, rows):
            if chip.valid_fraction >= min_valid_fraction and chip.valid_fraction > 0:
                batch.append(chip)
                if len(batch) >= batch_size:
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

    meta = provenance(
        model,
        embedder,
        year=year,
        column=column,
        chip_size=grid.chip_size,
        tiles=str(tiles),
        min_valid_fraction=min_valid_fraction,
    )
    dim = model.encoder.config.dim
    table = store.embeddings_table(
        chip_ids=[chip_id(year, c, r) for c, r, _ in kept],
        year=year,
        columns=np.array([c for c, _, _ in kept], np.int32),
        rows=np.array([r for _, r, _ in kept], np.int32),
        bounds=np.array([grid.chip_bounds(c, r) for c, r, _ in kept]).reshape(-1, 4),
        valid_fraction=np.array([v for _, _, v in kept], np.float32),
        embeddings=np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32),
        metadata=meta,
    )
    w, _, e, _ = grid.chip_bounds(column, 0)
    r_all = grid.rows(column)
    col_bounds = (w, grid.chip_bounds(column, int(r_all[-1]))[1], e, grid.chip_bounds(column, int(r_all[0]))[3])
    item = stac_item(path, table, meta, col_bounds)
    store.write_bytes_atomic(store.stac_path(path), json.dumps(item, indent=1).encode(), "application/json")
    store.write_bytes_atomic(path, store.parquet_bytes(table), "application/vnd.apache.parquet")
    weights = meta["embedding"]["weights"]
    log.info("wrote %s: %d chips embedded, %d skipped, %.1fs (%s weights)", path, len(kept), skipped, seconds, weights)
    return ColumnResult(year, column, path, "written", len(rows), len(kept), skipped, seconds, weights)
