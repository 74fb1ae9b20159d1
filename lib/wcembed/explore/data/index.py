"""Similarity search over the LanceDB chips table (:class:`ChipIndex`), and results spread out in space.

A click costs one lookup and one search: the chip under a point comes from grid
arithmetic (:func:`wcembed.core.grid.chip_at`) and its vector from one lookup through
the BTREE index on ``chip_id``; the year filter uses a BITMAP index. Search uses
cosine distance, exactly on small tables and, from
:data:`~wcembed.explore.data.table.ANN_MIN_ROWS` rows, with an IVF index probed at
:func:`~wcembed.explore.data.table.probes` partitions whose candidates are re-ranked with
the full vectors (:data:`~wcembed.explore.data.table.REFINE_FACTOR`). The table's layout
is in :mod:`wcembed.explore.data.table`, ingest in :mod:`wcembed.explore.data.ingest`, the
year's unit vectors of the region layers in :mod:`wcembed.explore.compute.vectors`. Figures
at CONUS scale: ``benchmarks/bench_index.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from wcembed.core import store
from wcembed.core.checks import (
    MAX_K,
    check_bbox,
    check_chip_ids,
    check_k,
    check_point,
    check_spacing,
    check_vector,
)
from wcembed.core.errors import (
    BadParameterError,
    IngestError,
    UnknownChipError,
)
from wcembed.core.grid import CHIP_PX, CONUS_ORIGIN, chip_id, parse_chip_ids
from wcembed.core.product import CRS, PX_PER_DEGREE, YEARS, check_year
from wcembed.explore.data.places import GridPlaces
from wcembed.explore.data.record import SetRecord
from wcembed.explore.data.table import (
    DEFAULT_SET,
    REFINE_FACTOR,
    RESULT_COLUMNS,
    SCALAR_COLUMNS,
    check_set,
    connect,
    probes,
    remote,
    set_tables,
    sets_in,
    table_names,
)
from wcembed.explore.data.version import OpenedVersion

log = logging.getLogger(__name__)


LOOKUP_MOST = 20_000
"""The most chip ids :meth:`ChipIndex.missing` looks up through the ``chip_id`` index; more are found by one pass
over the chip ids of their years."""

DIVERSE_CHIPS = 3
"""Default spacing of diverse results, in chips (about 4.3 km of 512 px chips at 10 m)."""
DIVERSE_CANDIDATES = 5
"""Candidates asked of the index per result of a diverse search (more are asked while too few remain)."""


def _spread(columns: np.ndarray, rows: np.ndarray, spacing: int, k: int) -> list[int]:
    """Positions of up to ``k`` candidates, in rank order, each at least ``spacing`` chips (in column or row)
    from every one kept before it."""
    keep: list[int] = []
    for i in range(len(columns)):
        if all(max(abs(columns[i] - columns[j]), abs(rows[i] - rows[j])) >= spacing for j in keep):
            keep.append(i)
            if len(keep) == k:
                break
    return keep


def _sql_strings(values: Sequence[str]) -> str:
    """Strings as a SQL list body: ``'a', 'b'`` (quotes doubled)."""
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


class ChipIndex:
    """Search a LanceDB table of chip embeddings.

    Parameters
    ----------
    db : str or Path
        The LanceDB database (a folder, or an object-store URL).
    set : str
        The embedding set searched (:data:`~wcembed.explore.data.table.DEFAULT_SET`: our files; e.g.
        ``original-2024``: the original run's). Nothing mixes the vectors of two sets.

    Examples
    --------
    >>> idx = ChipIndex("outputs/lancedb")  # doctest: +SKIP
    >>> idx.by_point(-75.62, 37.67, k=5)  # doctest: +SKIP
    """

    def __init__(
        self,
        db: str | Path,
        *,
        set: str = DEFAULT_SET,
        chip_size: int | None = None,
        origin: tuple[float, float] = CONUS_ORIGIN,
    ) -> None:
        self.db = db
        if not remote(db) and not Path(db).is_dir():
            raise IngestError(f"no LanceDB database at {db}: ingest output files first (python -m wcembed index)")
        self.set = check_set(set)
        table, self.files_table = set_tables(self.set)
        conn = connect(db)
        if table not in table_names(conn):
            held = ", ".join(sets_in(db)) or "none"
            raise IngestError(f"the database {db} has no embedding set {self.set!r} (it holds: {held})")
        self.table = conn.open_table(table)
        self._opened = OpenedVersion(db, self.table, self.set)
        self.record = SetRecord(db, self.files_table)
        """What the set's files table records of its files (:class:`~wcembed.explore.data.record.SetRecord`)."""
        self.origin = origin
        self.chip_size = chip_size or self._chip_size()
        """Chip size of the table's grid in pixels (read off its first chip's footprint unless given)."""
        self.places = GridPlaces(self.chip_size, origin)
        """The chips as places on the set's grid (:class:`~wcembed.explore.data.places.GridPlaces`)."""
        self.refresh()

    def _chip_size(self) -> int:
        first = self.table.search().select(["xmin", "xmax"]).limit(1).to_arrow()
        if not first.num_rows:
            return CHIP_PX
        return round((first["xmax"][0].as_py() - first["xmin"][0].as_py()) * PX_PER_DEGREE)

    def refresh(self) -> None:
        """Re-read the table's size and whether it has an ANN index (after an ingest in this process)."""
        self.rows = self.table.count_rows()
        self.ann = any(i.columns == ["vector"] for i in self.table.list_indices())
        """Whether searches use the ANN index (else they are exact)."""
        self.nprobes = probes(self.rows)
        self.refine_factor = REFINE_FACTOR

    def __len__(self) -> int:
        return self.rows

    @property
    def years(self) -> list[int]:
        """The years that have chips in the table (counted through the ``year`` index)."""
        return [y for y in YEARS if self.table.count_rows(f"year = {y}")]

    @property
    def weights(self) -> set[str]:
        """The weights the ingested files were embedded with (``clay-v0.1``, ``untrained``; ``{"unknown"}`` for a
        database without the set's files table), as its :attr:`record` says."""
        return self.record.weights

    @property
    def dim(self) -> int:
        """The length of the set's vectors (768 for Clay v0)."""
        return self.table.schema.field("vector").type.list_size

    @property
    def about(self) -> dict[str, str]:
        """Where this index's embeddings come from, for files made from them
        (:func:`~wcembed.explore.compute.classify.export`): ``embedding_set`` (its name) and ``weights`` (those of
        its files, ``; ``-separated)."""
        return {"embedding_set": self.set, "weights": "; ".join(sorted(self.weights))}

    @property
    def partial_files(self) -> list[str]:
        """Ingested files that hold only part of their column (embedded with ``max_rows``)."""
        return self.record.partial_files

    @property
    def untrained(self) -> bool:
        """Whether any ingested file holds embeddings of untrained weights (layers and legends say so)."""
        return "untrained" in self.weights

    def check_current(self) -> None:
        """:class:`~wcembed.core.errors.DatabaseChangedError` when the set's table is no longer at the version
        it was opened at: what this index would answer is no longer the database's. Every read checks it first
        (:meth:`OpenedVersion.check <wcembed.explore.data.version.OpenedVersion.check>`)."""
        self._opened.check()

    def _lookup(self, chip_ids: Sequence[str], columns: list[str]) -> pa.Table:
        """The rows of those of the given chips that exist (one query through the ``chip_id`` index)."""
        self.check_current()
        query = self.table.search().where(f"chip_id IN ({_sql_strings(chip_ids)})")
        return query.select(columns).limit(len(chip_ids)).to_arrow()

    def _rows(self, chip_ids: Sequence[str], columns: list[str]) -> pa.Table:
        """Rows of the given chips, in that order (:class:`UnknownChipError` for an unknown id)."""
        chip_ids = check_chip_ids(chip_ids)
        got = self._lookup(chip_ids, columns)
        order = {c: i for i, c in enumerate(got["chip_id"].to_pylist())}
        missing = [c for c in chip_ids if c not in order]
        if missing:
            raise UnknownChipError(f"unknown chip ids: {missing}")
        return got.take([order[c] for c in chip_ids])

    def missing(self, chip_ids: Sequence[str]) -> list[str]:
        """Those of the given chip ids that are not in the table: lookups of 2,000 ids at a time, or, beyond
        :data:`LOOKUP_MOST` ids, one pass over the chip ids of their years (at 100,000 ids the lookups took
        1.5 s, the pass a fraction of it)."""
        chip_ids = check_chip_ids(chip_ids)
        if len(chip_ids) <= LOOKUP_MOST:
            found: set[str] = set()
            for i in range(0, len(chip_ids), 2000):
                found |= set(self._lookup(chip_ids[i : i + 2000], ["chip_id"])["chip_id"].to_pylist())
            return [c for c in chip_ids if c not in found]
        wanted = pa.array(chip_ids, pa.string())
        seen = np.zeros(len(chip_ids), bool)
        try:
            years = [int(y) for y in np.unique(parse_chip_ids(wanted)[:, 0])]
        except BadParameterError:  # a string that is no chip id is missing: look at every year
            years = [None]
        for year in years:
            for batch in self.batches(["chip_id"], year=year):
                seen |= pc.is_in(wanted, value_set=batch.column("chip_id")).to_numpy(zero_copy_only=False)
        return [chip_ids[i] for i in np.flatnonzero(~seen)]

    def vectors(self, chip_ids: Sequence[str]) -> np.ndarray:
        """Vectors ``(N, D)`` of the given chips, in that order (:class:`UnknownChipError` for an unknown id)."""
        return store.vector_matrix(self._rows(chip_ids, ["chip_id", "vector"])["vector"])

    def batches(
        self, columns: Sequence[str], *, year: int | None = None, batch_rows: int = 65_536
    ) -> Iterator[pa.RecordBatch]:
        """Every chip (of one year, or all) as Arrow record batches of ``columns``, for whole-index passes
        (scoring, footprints) without loading the table at once. ``vector`` batches become matrices
        with :func:`wcembed.core.store.vector_matrix`."""
        self.check_current()
        query = self.table.search().select(list(columns)).limit(None)
        if year is not None:
            query = query.where(f"year = {int(year)}")
        yield from query.to_batches(batch_size=batch_rows)

    def footprints(self, year: int | None = None):
        """Every chip's footprint (``chip_id``, ``year``, geometry) as a GeoDataFrame, e.g. for a
        server-rendered chip layer (``gdf.to_file(path, driver="FlatGeobuf")``)."""

        t = pa.Table.from_batches(list(self.batches(["chip_id", "year", "geometry"], year=year)))
        geometry = shapely.from_wkb(t["geometry"].to_numpy(zero_copy_only=False))
        return gpd.GeoDataFrame(t.drop(["geometry"]).to_pandas(), geometry=geometry, crs=CRS)

    def chips(self, chip_ids: Sequence[str]):
        """The given chips (id, year, column, row, centre, footprint) as a GeoDataFrame, in that order."""

        t = self._rows(chip_ids, RESULT_COLUMNS)
        df = t.drop(["geometry"]).to_pandas()
        return gpd.GeoDataFrame(df, geometry=shapely.from_wkb(t["geometry"].to_numpy(zero_copy_only=False)), crs=CRS)

    def query_at(self, lon: float, lat: float, year: int | None = None) -> tuple[str, np.ndarray] | None:
        """``(chip_id, vector)`` of the chip holding the point (degrees), or None where no chip was embedded.

        The chip comes from grid arithmetic (:func:`wcembed.core.grid.chip_at`) and its
        vector from one lookup by id; without ``year``, the first year that has it.
        """
        lon, lat = check_point(lon, lat)
        column, row = self.places.cell_at(lon, lat)
        if column < 0 or row < 0:
            return None
        ids = [chip_id(y, column, row) for y in ([check_year(year)] if year is not None else YEARS)]
        got = self._lookup(ids, ["chip_id", "vector"])
        found = got["chip_id"].to_pylist()
        best = next((c for c in ids if c in found), None)
        if best is None:
            return None
        return best, store.vector_matrix(got["vector"])[found.index(best)]

    def chips_in(self, geometry, year: int) -> list[str]:
        """Ids of the ``year``'s chips whose footprint overlaps ``geometry`` (a shapely polygon in degrees,
        OGC:CRS84) with a positive area: candidates by grid arithmetic
        (:meth:`GridPlaces.cells_under <wcembed.explore.data.places.GridPlaces.cells_under>`), then one lookup of
        which exist."""
        year = check_year(year)
        cols, rows = self.places.cells_under(geometry)
        wanted = [chip_id(year, int(c), int(r)) for c, r in zip(cols, rows, strict=True)]
        found = set()
        for i in range(0, len(wanted), 2000):  # SQL lists of bounded length
            found |= set(self._lookup(wanted[i : i + 2000], ["chip_id"])["chip_id"].to_pylist())
        return [c for c in wanted if c in found]

    def chip_at(self, lon: float, lat: float, year: int | None = None) -> str | None:
        """Id of the chip whose footprint holds the point (degrees), or None."""
        hit = self.query_at(lon, lat, year)
        return hit[0] if hit else None

    def footprint(self, chip: str):
        """The footprint polygon of a chip id (degrees, lon/lat), by grid arithmetic (no lookup)."""
        return self.places.footprint(chip)

    def by_vector(
        self,
        vector: np.ndarray,
        k: int = 10,
        *,
        year: int | None = None,
        bbox: tuple[float, float, float, float] | None = None,
        exclude: Sequence[str] = (),
        exact: bool | None = None,
        diverse: int | bool = 0,
    ):
        """The ``k`` nearest chips (cosine distance) as a GeoDataFrame sorted by distance.

        ``diverse`` spreads the results out: ``n`` (or True for :data:`DIVERSE_CHIPS`) keeps only results at
        least ``n`` chips apart in column or row from every better one, taken in rank order from the
        index's candidates (asked for more while too few remain): the first result is the plain search's
        first, and a field that continues into the next chips is one result, not ten.
        """

        k = check_k(k)
        vector = check_vector(vector, self.dim)
        spacing = check_spacing(diverse, DIVERSE_CHIPS)
        exclude = check_chip_ids(exclude)
        filters = []
        if year is not None:
            filters.append(f"year = {check_year(year)}")
        if bbox is not None:
            w, s, e, n = check_bbox(bbox)
            filters.append(f"xmax > {w} AND xmin < {e} AND ymax > {s} AND ymin < {n}")
        if exclude:
            filters.append(f"chip_id NOT IN ({_sql_strings(exclude)})")
        where = " AND ".join(filters)
        if spacing == 0:
            df = self._nearest(vector, k, where, exact, self.refine_factor, RESULT_COLUMNS)
        else:  # candidates with their scalar columns only; footprints of those kept by grid arithmetic
            limit = min(MAX_K, DIVERSE_CANDIDATES * k)
            while True:
                refine = max(1, self.refine_factor * k // limit)  # as many re-ranked as a plain search
                cand = self._nearest(vector, limit, where, exact, refine, SCALAR_COLUMNS)
                keep = _spread(cand["column"].to_numpy(), cand["row"].to_numpy(), spacing, k)
                if len(keep) == k or len(cand) < limit or limit == MAX_K:
                    break
                limit = min(MAX_K, limit * 4)  # too few far enough apart among these candidates: ask for more
            df = self.places.with_footprints(cand.iloc[keep].reset_index(drop=True))
        geom = shapely.from_wkb(df.pop("geometry").to_numpy())
        df.insert(0, "rank", np.arange(1, len(df) + 1))
        return gpd.GeoDataFrame(df, geometry=geom, crs=CRS)

    def _nearest(self, vector: np.ndarray, limit: int, where: str, exact: bool | None, refine: int, columns):
        """The ``limit`` nearest rows' ``columns`` (a DataFrame with ``distance``), exactly or through the ANN
        index with ``refine`` x ``limit`` candidates re-ranked by the full vectors."""
        self.check_current()
        q = self.table.search(np.asarray(vector, np.float32), vector_column_name="vector")
        q = q.distance_type("cosine").limit(limit).select([*columns, "_distance"])
        if where:
            q = q.where(where, prefilter=True)
        q = q.bypass_vector_index() if exact or not self.ann else q.nprobes(self.nprobes).refine_factor(refine)
        return q.to_arrow().to_pandas().rename(columns={"_distance": "distance"})

    def by_chip(self, chip_id: str, k: int = 10, *, exclude_query: bool = True, **kw):
        """Nearest chips of a chip (by default without the chip itself)."""
        exclude = [*kw.pop("exclude", ()), *([chip_id] if exclude_query else [])]
        return self.by_vector(self.vectors([chip_id])[0], k, exclude=exclude, **kw)

    def by_point(self, lon: float, lat: float, k: int = 10, *, year: int | None = None, **kw):
        """Nearest chips of the chip holding a lon/lat point (degrees), without that chip: one lookup, one search."""
        hit = self.query_at(lon, lat, year)
        if hit is None:
            raise UnknownChipError(f"no chip at lon {lon}, lat {lat}" + (f" in {year}" if year else ""))
        return self.by_vector(hit[1], k, year=year, exclude=[*kw.pop("exclude", ()), hit[0]], **kw)

    def by_examples(self, positives: Sequence[str], negatives: Sequence[str] = (), k: int = 10, **kw):
        """Nearest chips of ``mean(positives)`` (minus ``mean(negatives)`` when given); examples excluded."""
        positives, negatives = check_chip_ids(positives), check_chip_ids(negatives)
        if not positives:
            raise BadParameterError("give at least one positive example")
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
