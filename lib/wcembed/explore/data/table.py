"""The LanceDB database's layout and indexes: what ingest writes and search reads.

Table ``chips`` (one row per (year, chip)): ``chip_id``, ``year``, ``column``,
``row``, ``lon``, ``lat`` (centre, degrees), ``valid_fraction``, ``geometry``
(WKB footprint, OGC:CRS84), ``xmin``, ``ymin``, ``xmax``, ``ymax`` (its bbox, for
filters) and ``vector`` (fixed-size list of float32). Table ``files`` records
every ingested GeoParquet file by name, size and weights (``untrained`` or
``clay-v0.1``). Scalar indexes serve lookups and filters; an IVF index on
``vector`` serves searches from :data:`ANN_MIN_ROWS` rows (:func:`partitions`,
:func:`probes`, :data:`REFINE_FACTOR`).
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

from wcembed.core.errors import BadParameterError

log = logging.getLogger(__name__)

TABLE = "chips"
"""The chips table of the default embedding set."""
FILES = "files"
"""The files table of the default embedding set."""
DEFAULT_SET = "wcembed"
"""The embedding set of our own files (tables ``chips`` and ``files``); another set ``name`` has its tables
``chips__name`` and ``files__name`` (each its own vectors, ANN index and kept unit vectors)."""
_SET_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")


def model_set(model_id: str) -> str:
    """The embedding set our files of a model go to unless another is named: :data:`DEFAULT_SET` for Clay v0
    (``clay-v0``), ``wcembed-clay-v1-5`` for Clay v1.5 (``clay-v1.5``), ... (one set, one model)."""
    return DEFAULT_SET if model_id == "clay-v0" else f"{DEFAULT_SET}-{re.sub(r'[^a-z0-9]+', '-', model_id.lower())}"


def check_set(name: str) -> str:
    """An embedding set's name (lowercase letters, digits and dashes, at most 40), else :class:`BadParameterError`."""
    if not isinstance(name, str) or not _SET_RE.fullmatch(name):  # fullmatch: "$" would let "abc\n" pass
        raise BadParameterError(f"an embedding set is named with a-z, 0-9 and '-' (at most 40), not {name!r:.80}")
    return name


def set_tables(name: str) -> tuple[str, str]:
    """The chips and files tables of an embedding set."""
    name = check_set(name)
    return (TABLE, FILES) if name == DEFAULT_SET else (f"{TABLE}__{name}", f"{FILES}__{name}")


TABLE_PAGE = 100
"""Table names asked of LanceDB per page (it gives 10 unless told)."""


def table_names(conn) -> set[str]:
    """Every table of a LanceDB connection: LanceDB lists them a page at a time (10 by default), so every
    listing pages through all of them."""
    names: list[str] = []
    while True:
        page = list(conn.table_names(page_token=names[-1] if names else None, limit=TABLE_PAGE))
        names += page
        if len(page) < TABLE_PAGE:
            return set(names)


def sets_in(db: str | Path) -> list[str]:
    """The embedding sets a database holds (those with a chips table), the default first. A local database's
    tables are its ``<name>.lance`` folders: listed without loading LanceDB (seconds), so that a command can
    refuse an unknown set before any heavy work."""
    if remote(db):
        names = table_names(connect(db))
    else:
        names = {p.name[: -len(".lance")] for p in Path(db).glob("*.lance") if p.is_dir()}
    found = [DEFAULT_SET] if TABLE in names else []
    return found + sorted(n[len(TABLE) + 2 :] for n in names if n.startswith(f"{TABLE}__"))


def shown_set(db: str | Path, name: str | None = None) -> str:
    """The set the explorer opens: ``name``, else the database's first (:data:`DEFAULT_SET` where it holds it,
    e.g. ``wcembed-clay-v1-5`` in a database of Clay v1.5's files only)."""
    if name is not None:
        return check_set(name)
    return next(iter(sets_in(db)), DEFAULT_SET)


ANN_MIN_ROWS = 250_000
"""Tables with at least this many rows get an ANN index; smaller ones are searched exactly."""


KEEP = ["chip_id", "year", "column", "row", "lon", "lat", "valid_fraction", "geometry"]


RESULT_COLUMNS = [*KEEP, "xmin", "ymin", "xmax", "ymax"]


SCALAR_COLUMNS = ["chip_id", "year", "column", "row", "valid_fraction"]
"""The columns of a result that do not follow from its place on the grid."""


ANN_RQ_BITS = 4


ANN_INDEX = "ivf_sq"
"""The ANN index type: IVF_SQ (8-bit scalar quantisation; chosen by measurement at CONUS scale with the
year filter, see the performance page: IVF_PQ lost recall on clustered data, IVF_HNSW_SQ on example queries)."""


MAX_ANN_SEGMENTS = 4
"""Delta segments the ANN index may gather from incremental ingests before it is rebuilt."""


REFINE_FACTOR = 20
"""Candidates re-ranked with the full vectors, per result asked for."""


SCALAR_INDEXES = {"chip_id": "BTREE", "year": "BITMAP", "column": "BTREE"}
"""Scalar indexes of the chips table: lookups by id, filters by year, replacing a column's rows."""


def remote(db: str | Path) -> bool:
    """Whether a database location is an object store (``s3://``, ``gs://``, ``az://``) rather than a folder."""
    return str(db).startswith(("s3://", "gs://", "az://"))


def connect(db: str | Path):
    import lancedb  # deferred: loads only with a database

    return lancedb.connect(str(db))


def indexes_missing(table) -> bool:
    """Whether a scalar index of :data:`SCALAR_INDEXES` is missing (an ingest killed before it built them)."""
    existing = {i.columns[0] for i in table.list_indices()}
    return bool(set(SCALAR_INDEXES) - existing)


def refresh_indexes(table, *, ann_min_rows: int = ANN_MIN_ROWS) -> None:
    """Bring a chips table's indexes up to date after rows changed.

    Scalar indexes (BTREE on ``chip_id`` and ``column``, BITMAP on ``year``) make
    lookups by id and filters cheap. The ANN index is built once the table has
    ``ann_min_rows`` rows. ``optimize()`` then compacts fragments and folds new
    rows into the indexes; each fold adds a segment to the ANN index, and a query
    searches every segment, so after :data:`MAX_ANN_SEGMENTS` the ANN index is
    rebuilt: query latency does not decay with the number of ingest rounds.
    """
    existing = {i.columns[0]: i for i in table.list_indices()}
    for column, kind in SCALAR_INDEXES.items():
        if column not in existing:
            table.create_scalar_index(column, index_type=kind)
    if "vector" not in existing and table.count_rows() >= ann_min_rows:
        build_ann_index(table)
    table.optimize()
    if "vector" in existing and table.index_stats(existing["vector"].name).num_indices > MAX_ANN_SEGMENTS:
        log.info("rebuilding the ANN index (more than %d segments)", MAX_ANN_SEGMENTS)
        build_ann_index(table)


def partitions(n_rows: int) -> int:
    """IVF partitions of the ANN index for a table of ``n_rows``: sqrt(N) / 4 (259 at CONUS scale).

    Fewer, larger partitions than LanceDB's sqrt(N) keep a neighbourhood within the partitions probed:
    at 1,076,152 rows and 32 probes, 256 partitions gave recall@10 0.998 (low-rank vectors) and 1.0
    (clustered) against 0.99 and 0.93 with 518 (see the performance page)."""
    return max(1, int(math.sqrt(n_rows) / 4))


def probes(n_rows: int) -> int:
    """Partitions searched per query: an eighth of them, at least 32."""
    return max(32, partitions(n_rows) // 8)


def build_ann_index(table, kind: str = ANN_INDEX) -> None:
    """Build a cosine ANN index on ``vector`` with :func:`partitions` partitions: ``kind`` is ``ivf_sq``
    (the default, see :data:`ANN_INDEX`), ``ivf_rq``, ``ivf_pq`` or ``ivf_hnsw_sq``."""
    from lancedb.index import IvfHnswSq, IvfPq, IvfRq, IvfSq  # deferred: loads only with a database

    n = partitions(table.count_rows())
    dim = table.schema.field("vector").type.list_size
    configs = {  # PQ codes of 8 dimensions per byte; the re-ranking with full vectors restores exact order
        "ivf_pq": lambda: IvfPq(distance_type="cosine", num_partitions=n, num_sub_vectors=max(1, dim // 8)),
        "ivf_hnsw_sq": lambda: IvfHnswSq(distance_type="cosine", num_partitions=n),
        "ivf_sq": lambda: IvfSq(distance_type="cosine", num_partitions=n),
        "ivf_rq": lambda: IvfRq(distance_type="cosine", num_partitions=n, num_bits=ANN_RQ_BITS),
    }
    if kind not in configs:
        raise BadParameterError(f"unknown ANN index {kind!r}: one of {sorted(configs)}")
    table.create_index("vector", config=configs[kind](), replace=True)
