"""LanceDB index of chip embeddings: incremental ingest and similarity search.

Table ``chips`` (one row per (year, chip)): ``chip_id``, ``year``, ``column``,
``row``, ``lon``, ``lat`` (centre, degrees), ``valid_fraction``, ``geometry``
(WKB footprint, OGC:CRS84), ``xmin``, ``ymin``, ``xmax``, ``ymax`` (its bbox, for
filters) and ``vector`` (fixed-size list of float32). Table ``files`` records
every ingested GeoParquet file by name and size, so a rerun adds only new or
changed files; a changed file replaces the rows of its (year, column), so a
chip is never duplicated. Ingest moves whole Arrow tables: no per-row Python.

Search uses cosine distance. Small tables are searched exactly (brute force,
which LanceDB does quickly up to a few hundred thousand rows); at
:data:`ANN_MIN_ROWS` rows and more an IVF_HNSW_SQ index is built. Measured
on 1.6 million x 768 vectors (``benchmarks/bench_index.py``): see the README.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from wcembed import store
from wcembed.errors import UnknownChipError
from wcembed.product import CRS

log = logging.getLogger(__name__)

TABLE = "chips"
FILES = "files"
ANN_MIN_ROWS = 250_000
"""Tables with at least this many rows get an ANN index; smaller ones are searched exactly."""
KEEP = ["chip_id", "year", "column", "row", "lon", "lat", "valid_fraction", "geometry"]


@dataclass
class IngestReport:
    files_added: int
    files_replaced: int
    files_unchanged: int
    rows: int


def _connect(db: str | Path):
    import lancedb

    return lancedb.connect(str(db))


def _arrow_rows(path: str) -> pa.Table:
    table = pq.read_table(io.BytesIO(store.read_bytes(path)))
    bbox = table["bbox"].combine_chunks()
    out = table.select(KEEP)
    for name in ("xmin", "ymin", "xmax", "ymax"):
        out = out.append_column(name, bbox.field(name))
    return out.append_column("vector", table["embeddings"])


def ingest(source: str | Path, db: str | Path, *, ann_min_rows: int = ANN_MIN_ROWS) -> IngestReport:
    """Ingest every GeoParquet file under ``source`` (folder or ``s3://`` prefix, all years) into ``db``."""
    conn = _connect(db)
    names = set(conn.table_names())
    files = store.list_outputs(source)
    seen: dict[str, int] = {}
    if FILES in names:
        known = conn.open_table(FILES).to_arrow()
        seen = dict(zip(known["path"].to_pylist(), known["size"].to_pylist(), strict=True))
    added = replaced = 0
    chips = conn.open_table(TABLE) if TABLE in names else None
    for path, size in files.items():
        if seen.get(path) == size:
            continue
        rows = _arrow_rows(path)
        meta = store.file_metadata(path)["wcembed"]
        if chips is None:
            chips = conn.create_table(TABLE, rows)
        else:
            if path in seen:
                replaced += 1
            chips.delete(f"year = {int(meta['year'])} AND `column` = {int(meta['column'])}")
            if rows.num_rows:
                chips.add(rows)
        added += path not in seen
        seen[path] = size
        log.info("ingested %s (%d rows)", path, rows.num_rows)
    conn.create_table(
        FILES, pa.table({"path": list(seen), "size": pa.array(list(seen.values()), pa.int64())}), mode="overwrite"
    )
    n = chips.count_rows() if chips is not None else 0
    if chips is not None and n >= ann_min_rows and (added or replaced or not chips.list_indices()):
        build_ann_index(chips)
    return IngestReport(added, replaced, len(files) - added - replaced, n)


def partitions(n_rows: int) -> int:
    """IVF partitions of the ANN index for a table of ``n_rows``: sqrt(N) / 2."""
    return max(1, int(math.sqrt(n_rows) / 2))


def probes(n_rows: int) -> int:
    """Partitions searched per query: a quarter of them, at least 32 (recall over speed)."""
    return max(32, partitions(n_rows) // 4)


def build_ann_index(table) -> None:
    """Build an IVF_HNSW_SQ cosine index on ``vector`` with :func:`partitions` partitions."""
    from lancedb.index import IvfHnswSq

    table.create_index(
        "vector", config=IvfHnswSq(distance_type="cosine", num_partitions=partitions(table.count_rows())), replace=True
    )


class ChipIndex:
    """Search a LanceDB table of chip embeddings.

    Examples
    --------
    >>> idx = ChipIndex("outputs/lancedb")  # doctest: +SKIP
    >>> idx.by_point(-75.62, 37.67, k=5)  # doctest: +SKIP
    """

    def __init__(self, db: str | Path, table: str = TABLE) -> None:
        self.table = _connect(db).open_table(table)

    def __len__(self) -> int:
        return self.table.count_rows()

    def _rows(self, chip_ids: Sequence[str], columns: list[str]) -> pa.Table:
        """Rows of the given chips, in that order (:class:`UnknownChipError` for an unknown id)."""
        quoted = ", ".join("'" + c.replace("'", "''") + "'" for c in chip_ids)
        got = self.table.search().where(f"chip_id IN ({quoted})").select(columns).limit(len(chip_ids)).to_arrow()
        order = {c: i for i, c in enumerate(got["chip_id"].to_pylist())}
        missing = [c for c in chip_ids if c not in order]
        if missing:
            raise UnknownChipError(f"unknown chip ids: {missing}")
        return got.take([order[c] for c in chip_ids])

    def vectors(self, chip_ids: Sequence[str]) -> np.ndarray:
        """Vectors ``(N, D)`` of the given chips, in that order (:class:`UnknownChipError` for an unknown id)."""
        return store.vector_matrix(self._rows(chip_ids, ["chip_id", "vector"])["vector"])

    def batches(
        self, columns: Sequence[str], *, year: int | None = None, batch_rows: int = 65_536
    ) -> Iterator[pa.RecordBatch]:
        """Every chip (of one year, or all) as Arrow record batches of ``columns``, for whole-index passes
        (scoring, footprints) without loading the table at once. ``vector`` batches become matrices
        with :func:`wcembed.store.vector_matrix`."""
        query = self.table.search().select(list(columns)).limit(None)
        if year is not None:
            query = query.where(f"year = {int(year)}")
        yield from query.to_batches(batch_size=batch_rows)

    def footprints(self, year: int | None = None):
        """Every chip's footprint (``chip_id``, ``year``, geometry) as a GeoDataFrame, e.g. for a
        server-rendered chip layer (``gdf.to_file(path, driver="FlatGeobuf")``)."""
        import geopandas as gpd
        import shapely

        t = pa.Table.from_batches(list(self.batches(["chip_id", "year", "geometry"], year=year)))
        geometry = shapely.from_wkb(t["geometry"].to_numpy(zero_copy_only=False))
        return gpd.GeoDataFrame(t.drop(["geometry"]).to_pandas(), geometry=geometry, crs=CRS)

    def chips(self, chip_ids: Sequence[str]):
        """The given chips (id, year, column, row, centre, footprint) as a GeoDataFrame, in that order."""
        import geopandas as gpd
        import shapely

        t = self._rows(chip_ids, [*KEEP, "xmin", "ymin", "xmax", "ymax"])
        df = t.drop(["geometry"]).to_pandas()
        return gpd.GeoDataFrame(df, geometry=shapely.from_wkb(t["geometry"].to_numpy(zero_copy_only=False)), crs=CRS)

    def chip_at(self, lon: float, lat: float, year: int | None = None) -> str | None:
        """Id of the chip whose footprint holds the point (degrees), or None."""
        where = f"xmin <= {lon} AND {lon} < xmax AND ymin < {lat} AND {lat} <= ymax"
        if year is not None:
            where += f" AND year = {int(year)}"
        got = self.table.search().where(where).select(["chip_id"]).limit(1).to_arrow()
        return got["chip_id"][0].as_py() if got.num_rows else None

    def by_vector(
        self,
        vector: np.ndarray,
        k: int = 10,
        *,
        year: int | None = None,
        bbox: tuple[float, float, float, float] | None = None,
        exclude: Sequence[str] = (),
        exact: bool | None = None,
    ):
        """The ``k`` nearest chips (cosine distance) as a GeoDataFrame sorted by distance."""
        import geopandas as gpd
        import shapely

        filters = []
        if year is not None:
            filters.append(f"year = {int(year)}")
        if bbox is not None:
            w, s, e, n = bbox
            filters.append(f"xmax > {w} AND xmin < {e} AND ymax > {s} AND ymin < {n}")
        if exclude:
            filters.append("chip_id NOT IN (" + ", ".join("'" + c.replace("'", "''") + "'" for c in exclude) + ")")
        q = self.table.search(np.asarray(vector, np.float32)).distance_type("cosine").limit(k)
        if filters:
            q = q.where(" AND ".join(filters), prefilter=True)
        if exact or (exact is None and not self.table.list_indices()):
            q = q.bypass_vector_index()
        elif self.table.list_indices():
            q = q.nprobes(probes(len(self))).refine_factor(5)
        res = q.to_arrow().drop(["vector"])
        df = res.to_pandas().rename(columns={"_distance": "distance"})
        geom = shapely.from_wkb(df.pop("geometry").to_numpy())
        df.insert(0, "rank", np.arange(1, len(df) + 1))
        return gpd.GeoDataFrame(df, geometry=geom, crs=CRS)

    def by_chip(self, chip_id: str, k: int = 10, *, exclude_query: bool = True, **kw):
        """Nearest chips of a chip (by default without the chip itself)."""
        exclude = [*kw.pop("exclude", ()), *([chip_id] if exclude_query else [])]
        return self.by_vector(self.vectors([chip_id])[0], k, exclude=exclude, **kw)

    def by_point(self, lon: float, lat: float, k: int = 10, *, year: int | None = None, **kw):
        """Nearest chips of the chip holding a lon/lat point (degrees)."""
        chip = self.chip_at(lon, lat, year)
        if chip is None:
            raise UnknownChipError(f"no chip at lon {lon}, lat {lat}" + (f" in {year}" if year else ""))
        return self.by_chip(chip, k, year=year, **kw)

    def by_examples(self, positives: Sequence[str], negatives: Sequence[str] = (), k: int = 10, **kw):
        """Nearest chips of ``mean(positives)`` (minus ``mean(negatives)`` when given); examples excluded."""
        return self.by_vector(
            query_vector(self.vectors(positives), self.vectors(negatives) if negatives else None),
            k,
            exclude=[*positives, *negatives, *kw.pop("exclude", ())],
            **kw,
        )


def query_vector(positives: np.ndarray, negatives: np.ndarray | None = None) -> np.ndarray:
    """``mean(positives)``, or ``2 * mean(positives) - mean(negatives)`` with negative examples."""
    q = np.asarray(positives, np.float64).mean(axis=0)
    if negatives is not None and len(negatives):
        q = 2 * q - np.asarray(negatives, np.float64).mean(axis=0)
    return q.astype(np.float32)
