"""LanceDB index of chip embeddings: incremental ingest and similarity search.

Table ``chips`` (one row per (year, chip)): ``chip_id``, ``year``, ``column``,
``row``, ``lon``, ``lat`` (centre, degrees), ``valid_fraction``, ``geometry``
(WKB footprint, OGC:CRS84), ``xmin``, ``ymin``, ``xmax``, ``ymax`` (its bbox, for
filters) and ``vector`` (fixed-size list of float32). Table ``files`` records
every ingested GeoParquet file by name, size and weights (``untrained`` or
``clay-v0.1``), so a rerun reads only new or changed files; the rows of a
(year, column) are deleted before its file is added, so a chip is never
duplicated, also after an ingest was killed. Ingest moves whole Arrow tables in
large batches: no per-row Python.

A click costs one lookup and one search: the chip under a point comes from grid
arithmetic (:func:`wcembed.grid.chip_at`) and its vector from one lookup through
the BTREE index on ``chip_id``; the year filter uses a BITMAP index. Search uses
cosine distance, exactly on small tables and, from :data:`ANN_MIN_ROWS` rows, with
an IVF index (:data:`ANN_INDEX`) probed at :func:`probes` partitions whose
candidates are re-ranked with the full vectors (:data:`REFINE_FACTOR`). Figures at
CONUS scale (``benchmarks/bench_index.py``): see the README.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from wcembed import store
from wcembed.contract import FileMetadata
from wcembed.errors import BadParameterError, IngestError, OutputError, UnknownChipError
from wcembed.grid import CHIP_PX, CONUS_ORIGIN, chip_at, chip_bounds, chip_id, parse_chip_id
from wcembed.product import CRS, PX_PER_DEGREE, YEARS, check_year

log = logging.getLogger(__name__)

TABLE = "chips"
FILES = "files"
ANN_MIN_ROWS = 250_000
"""Tables with at least this many rows get an ANN index; smaller ones are searched exactly."""
KEEP = ["chip_id", "year", "column", "row", "lon", "lat", "valid_fraction", "geometry"]
RESULT_COLUMNS = [*KEEP, "xmin", "ymin", "xmax", "ymax"]
SCALAR_COLUMNS = ["chip_id", "year", "column", "row", "valid_fraction"]
"""The columns of a result that do not follow from its place on the grid."""
ANN_RQ_BITS = 4
ANN_INDEX = "ivf_sq"
"""The ANN index type: IVF_SQ (8-bit scalar quantisation; chosen by measurement at CONUS scale with the
year filter, see the README: IVF_PQ lost recall on clustered data, IVF_HNSW_SQ on example queries)."""
MAX_ANN_SEGMENTS = 4
"""Delta segments the ANN index may gather from incremental ingests before it is rebuilt."""
REFINE_FACTOR = 20
"""Candidates re-ranked with the full vectors, per result asked for."""
SCALAR_INDEXES = {"chip_id": "BTREE", "year": "BITMAP", "column": "BTREE"}
"""Scalar indexes of the chips table: lookups by id, filters by year, replacing a column's rows."""
VECTOR_DTYPE = np.float16
"""How the region layers hold a year's unit vectors (:meth:`ChipIndex.unit_vectors`): half of float32's
memory (0.83 GB for a CONUS year of 768-d vectors instead of 1.65 GB, so that two years and the explorer
fit in 4 GiB), each component rounded to 11 significant bits. Products run with float32 accumulation
(:meth:`wcembed.explore.layers.YearVectors.dot`); a layer's value is within 5e-4 of float32's (see
``tests/test_layers.py``). Searches use the table's float32 vectors."""
UNIT_VECTORS = "unit_vectors"
"""Folder of a local database where each year's unit vectors are kept as ``.npy`` files named by the
chips table's version (``{year}-v{version}-vectors.npy`` and ``-cells.npy``, the grid columns and rows)."""
LOAD_BATCH_ROWS = 2048
"""Rows per batch when a year's vectors are read from the table: small batches keep LanceDB's read-ahead
small (at CONUS it peaked at 0.6 GB with 2,048 rows, 1.2 GB with 65,536) and read faster."""


@dataclass
class IngestReport:
    files_added: int
    files_replaced: int
    files_unchanged: int
    rows: int
    failed: dict[str, str] = field(default_factory=dict)
    """Files that could not be read (path: reason); not recorded, so the next ingest tries them again."""


def _remote(db: str | Path) -> bool:
    """Whether a database location is an object store (``s3://``, ``gs://``, ``az://``) rather than a folder."""
    return str(db).startswith(("s3://", "gs://", "az://"))


def _connect(db: str | Path):
    import lancedb

    return lancedb.connect(str(db))


class _BadFile(Exception):
    """Why one output file is refused (its rows are not ingested)."""


def _arrow_rows(path: str, schema: pa.Schema | None) -> tuple[pa.Table, str]:
    """The rows of one GeoParquet file in the table's layout (``schema``, when the table has one), and the
    file's weights (``embedding.weights``), after checking the whole file: its columns and their types,
    the vector dimension, and that its name, its ``wcembed`` metadata and its rows agree on the year and
    column, with chip ids that are the ids of their rows. Raises :class:`_BadFile` saying what is wrong."""
    year, column = store.parse_output_path(path)
    table = pq.read_table(io.BytesIO(store.read_bytes(path)))
    try:
        meta = FileMetadata.from_header(table.schema.metadata)
    except OutputError as exc:
        raise _BadFile(str(exc)) from None
    missing = [c for c in (*KEEP, "bbox", "embeddings") if c not in table.column_names]
    if missing:
        raise _BadFile(f"no column {', '.join(missing)}")
    vectors = table.schema.field("embeddings").type
    if not pa.types.is_fixed_size_list(vectors) or vectors.value_type != pa.float32():
        raise _BadFile(f"embeddings are {vectors}, not a fixed-size list of float32")
    if schema is not None and vectors.list_size != schema.field("vector").type.list_size:
        raise _BadFile(f"{vectors.list_size}-d embeddings; the table's are {schema.field('vector').type.list_size}-d")
    finite = np.isfinite(store.vector_matrix(table["embeddings"])).all(axis=1)
    if not finite.all():  # a NaN would poison every search that meets it, and each layer's colour scale
        raise _BadFile(f"the embedding of chip {table['chip_id'][int(np.argmin(finite))]} is not finite (NaN or inf)")
    if (meta.year, meta.column) != (year, column):
        raise _BadFile(
            f"its metadata says year {meta.year}, column {meta.column}; its name says year {year}, column {column}"
        )
    years, columns = set(table["year"].to_pylist()), set(table["column"].to_pylist())
    if years - {year} or columns - {column}:
        raise _BadFile(f"rows of years {sorted(years)} and columns {sorted(columns)} in the file of {year}/{column}")
    ids = table["chip_id"].to_pylist()
    expected = [chip_id(year, column, r) for r in table["row"].to_pylist()]
    if ids != expected:
        wrong = next(i for i, (a, b) in enumerate(zip(ids, expected, strict=True)) if a != b)
        raise _BadFile(f"chip id {ids[wrong]!r} on row {table['row'][wrong]} (expected {expected[wrong]!r})")
    if len(set(ids)) != len(ids):
        raise _BadFile("a chip is in the file twice")
    bbox = table["bbox"].combine_chunks()
    out = table.select(KEEP)
    for name in ("xmin", "ymin", "xmax", "ymax"):
        out = out.append_column(name, bbox.field(name))
    out = out.append_column("vector", table["embeddings"]).replace_schema_metadata(None)
    if schema is not None:
        try:
            out = out.cast(schema)
        except (pa.ArrowException, ValueError) as exc:
            raise _BadFile(f"its columns do not fit the table's ({exc})") from None
    return out, meta.weights


def ingest(
    source: str | Path, db: str | Path, *, ann_min_rows: int = ANN_MIN_ROWS, batch_rows: int = 200_000
) -> IngestReport:
    """Ingest every GeoParquet file under ``source`` (folder or ``s3://`` prefix, all years) into ``db``.

    Only new or changed files (by name and size) are read. Each is checked whole
    before it touches the table (:func:`_arrow_rows`: columns, types, vector
    dimension, finite vectors, and that its name, metadata and rows agree); a file that fails, or
    cannot be read, is skipped and not recorded: the others are ingested, then
    :class:`IngestError` names it with the reason, and its column keeps the rows it
    had. Files are added ``batch_rows`` rows at a time (few, large fragments). Rows
    of columns already in the table are replaced in one LanceDB commit (a merge on
    ``chip_id`` that also deletes the column's chips the new file no longer has),
    so the old rows are gone only when the new ones are in; a rerun after a killed
    ingest (files are recorded only at the end) never duplicates a chip.
    Afterwards the table is compacted and its indexes brought up to date
    (:func:`refresh_indexes`), and, in a local database, each year's unit vectors are kept for the
    region layers (:meth:`ChipIndex.unit_vectors`).
    """
    files = store.list_outputs(source)
    if not files:
        raise IngestError(f"no output files (*_{store.FORMAT_VERSION}.gpq) under {source}")
    if _remote(db):  # no lock on object stores: run one ingest at a time
        return _ingest(files, db, ann_min_rows, batch_rows)
    Path(db).mkdir(parents=True, exist_ok=True)
    with store.exclusive(Path(db) / ".ingest.lock"):  # concurrent ingests take turns
        report = _ingest(files, db, ann_min_rows, batch_rows)
        if report.rows:
            index = ChipIndex(db)
            for year in index.years:  # kept for the region layers: the explorer reads them, not the table
                if not index._kept_vectors(year).exists():
                    index.unit_vectors(year)
        return report


def _ingest(files: dict[str, int], db: str | Path, ann_min_rows: int, batch_rows: int) -> IngestReport:
    conn = _connect(db)
    names = set(conn.table_names())
    seen: dict[str, int] = {}
    weights: dict[str, str] = {}
    if FILES in names:
        known = conn.open_table(FILES).to_arrow()
        seen = dict(zip(known["path"].to_pylist(), known["size"].to_pylist(), strict=True))
        if "weights" in known.column_names:
            weights = dict(zip(known["path"].to_pylist(), known["weights"].to_pylist(), strict=True))
    todo = {p: s for p, s in files.items() if seen.get(p) != s}
    chips = conn.open_table(TABLE) if TABLE in names else None
    if not todo:
        return IngestReport(0, 0, len(files), chips.count_rows() if chips is not None else 0)
    pending: list[tuple[str, pa.Table]] = []
    done: list[str] = []
    failed: dict[str, str] = {}

    def add_pending() -> None:
        nonlocal chips
        rows = pa.concat_tables([t for _, t in pending])
        if chips is None:
            chips = _create_or_open(conn, rows)
        replaced = _columns_filter([p for p, _ in pending])
        if chips.count_rows(replaced) == 0:
            chips.add(rows)  # new columns: a plain append
        else:  # replace the columns' rows (also rows a killed ingest left behind) in one commit
            (
                chips.merge_insert("chip_id")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .when_not_matched_by_source_delete(replaced)
                .execute(rows)
            )
        done.extend(p for p, _ in pending)
        pending.clear()

    schema = chips.schema if chips is not None else None
    for path in todo:
        try:
            part, weights[path] = _arrow_rows(path, schema)
        except Exception as exc:  # any bad or unreadable file: named at the end, the others still ingested
            failed[path] = str(exc) if isinstance(exc, _BadFile) else f"{type(exc).__name__}: {exc}"
            log.error("cannot ingest %s: %s", path, failed[path])
            continue
        schema = schema or part.schema  # the first good file sets the layout of a new table
        pending.append((path, part))
        if sum(t.num_rows for _, t in pending) >= batch_rows:
            add_pending()
    if pending:
        add_pending()
    replaced = sum(p in seen for p in done)
    seen.update({p: todo[p] for p in done})
    files_table = {
        "path": list(seen),
        "size": pa.array(list(seen.values()), pa.int64()),
        "weights": [weights.get(p, "") for p in seen],
    }
    conn.create_table(FILES, pa.table(files_table), mode="overwrite")
    log.info("ingested %d files (%d replaced)", len(done), replaced)
    if chips is not None:
        refresh_indexes(chips, ann_min_rows=ann_min_rows)
    report = IngestReport(
        len(done) - replaced, replaced, len(files) - len(todo), chips.count_rows() if chips is not None else 0, failed
    )
    if failed:
        named = "; ".join(f"{p}: {why}" for p, why in failed.items())
        raise IngestError(f"{len(failed)} of {len(todo)} files could not be ingested (the rest were): {named}", report)
    return report


def unit_rows(m: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The rows of ``m`` (float32) divided by their lengths (at least 1e-12), written into ``out`` (e.g. a
    slice of a :data:`VECTOR_DTYPE` matrix; torch converts, ten times faster than numpy's cast)."""
    import torch

    norms = np.sqrt(np.einsum("ij,ij->i", m, m))
    torch.from_numpy(out).copy_(torch.from_numpy(m / np.maximum(norms, 1e-12)[:, None]))
    return out


def _create_or_open(conn, rows: pa.Table):
    """The chips table, created with ``rows``' layout (and no rows: they are added next) or, when another
    ingest created it meanwhile, opened."""
    try:
        return conn.create_table(TABLE, rows.schema.empty_table())
    except ValueError:  # "Table 'chips' already exists": a concurrent first ingest won the race
        return conn.open_table(TABLE)


def _columns_filter(paths: Sequence[str]) -> str:
    """SQL filter of the rows of the (year, column)s of output files."""
    columns: dict[int, list[int]] = {}
    for year, column in sorted(store.parse_output_path(p) for p in paths):
        columns.setdefault(year, []).append(column)
    return " OR ".join(f"(year = {y} AND `column` IN ({', '.join(map(str, cs))}))" for y, cs in columns.items())


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
    (clustered) against 0.99 and 0.93 with 518 (see the README)."""
    return max(1, int(math.sqrt(n_rows) / 4))


def probes(n_rows: int) -> int:
    """Partitions searched per query: an eighth of them, at least 32."""
    return max(32, partitions(n_rows) // 8)


def build_ann_index(table, kind: str = ANN_INDEX) -> None:
    """Build a cosine ANN index on ``vector`` with :func:`partitions` partitions: ``kind`` is ``ivf_sq``
    (the default, see :data:`ANN_INDEX`), ``ivf_rq``, ``ivf_pq`` or ``ivf_hnsw_sq``."""
    from lancedb.index import IvfHnswSq, IvfPq, IvfRq, IvfSq

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


MAX_K = 10_000
"""The most results one search may ask for."""


def check_k(k: int) -> int:
    """``k`` if it is a number of results (an integer within 1..:data:`MAX_K`), else :class:`BadParameterError`."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= MAX_K:
        raise BadParameterError(f"k must be an integer within 1..{MAX_K}, got {k!r}")
    return int(k)


def check_point(lon: float, lat: float) -> tuple[float, float]:
    """``(lon, lat)`` as floats if they are a point in degrees (finite, within ±180 and ±90), else
    :class:`BadParameterError`."""
    try:
        x, y = float(lon), float(lat)
    except (TypeError, ValueError):
        raise BadParameterError(f"not a point in degrees: lon {lon!r}, lat {lat!r}") from None
    if not (math.isfinite(x) and math.isfinite(y) and -180 <= x <= 180 and -90 <= y <= 90):
        raise BadParameterError(f"not a point in degrees: lon {lon!r}, lat {lat!r} (lon within ±180, lat ±90)")
    return x, y


def check_bbox(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    """``(west, south, east, north)`` as floats if they are a box in degrees, else :class:`BadParameterError`
    (the values go into a SQL filter: only numbers pass)."""
    try:
        w, s, e, n = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise BadParameterError(f"not a bbox (west, south, east, north) in degrees: {bbox!r}") from None
    check_point(w, s)
    check_point(e, n)
    if w > e or s > n:
        raise BadParameterError(f"bbox {bbox!r}: west must not exceed east, nor south north")
    return w, s, e, n


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


def _read_npy(path: Path) -> np.ndarray:
    """An ``.npy`` file's array, read in one unbuffered ``readinto`` (5x faster than ``np.load`` for a
    0.8 GB file from the page cache); ValueError for a damaged or short file."""
    import numpy.lib.format as npy

    with open(path, "rb", buffering=0) as fh:
        version = npy.read_magic(fh)
        header = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}.get(version)
        if header is None:
            raise ValueError(f"npy format version {version}")
        shape, fortran, dtype = header(fh)
        x = np.empty(shape, dtype, order="F" if fortran else "C")
        if fh.readinto(memoryview(x).cast("B")) != x.nbytes or fh.read(1):
            raise ValueError(f"not {x.nbytes} bytes of data")
    return x


@dataclass
class _KeptVectors:
    """A year's unit vectors kept beside a local database (:meth:`ChipIndex.unit_vectors`), for one version
    of the chips table."""

    folder: Path
    year: int
    version: int

    def path(self, part: str) -> Path:
        return self.folder / f"{self.year}-v{self.version}-{part}.npy"

    def read(self, n: int, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``(columns, rows, vectors)``; None where they are not kept, or are damaged (a warning says so).
        Read into memory, not mapped: a mapped file replaced in place (or on a network file system) would
        end the process with SIGBUS."""
        if not self.exists():
            return None
        try:
            cells, x = np.load(self.path("cells")), _read_npy(self.path("vectors"))
        except (OSError, ValueError) as exc:
            log.warning("the unit vectors kept at %s cannot be read (%s): reading the table", self.folder, exc)
            return None
        if cells.shape != (2, n) or x.shape != (n, dim) or x.dtype != VECTOR_DTYPE:
            log.warning("the unit vectors kept at %s do not fit the table: reading the table", self.folder)
            return None
        return cells[0], cells[1], x

    def exists(self) -> bool:
        """Whether they are kept (the vectors are written last)."""
        return self.path("vectors").exists()

    def write(self, cells: np.ndarray, x: np.ndarray) -> None:
        """Keep them (each file written whole, :func:`wcembed.store.write_file_atomic`: the vectors last), and
        remove those of older versions of the table; a failure is a warning."""
        try:
            for part, data in (("cells", cells), ("vectors", x)):
                store.write_file_atomic(self.path(part), lambda fh, data=data: np.save(fh, data))
            for old in self.folder.glob(f"{self.year}-v*-*.npy"):
                if int(old.name.split("-")[1][1:]) < self.version:
                    old.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot keep the unit vectors of %d at %s (%s): they are read again next time",
                        self.year, self.folder, exc)  # fmt: skip


class ChipIndex:
    """Search a LanceDB table of chip embeddings.

    Examples
    --------
    >>> idx = ChipIndex("outputs/lancedb")  # doctest: +SKIP
    >>> idx.by_point(-75.62, 37.67, k=5)  # doctest: +SKIP
    """

    def __init__(
        self,
        db: str | Path,
        table: str = TABLE,
        *,
        chip_size: int | None = None,
        origin: tuple[float, float] = CONUS_ORIGIN,
    ) -> None:
        self.db = db
        if not _remote(db) and not Path(db).is_dir():
            raise IngestError(f"no LanceDB database at {db}: ingest output files first (python -m wcembed index)")
        conn = _connect(db)
        if table not in conn.table_names():
            raise IngestError(f"the database {db} has no table {table!r}: ingest output files first")
        self.table = conn.open_table(table)
        self.origin = origin
        self.chip_size = chip_size or self._chip_size()
        """Chip size of the table's grid in pixels (read off its first chip's footprint unless given)."""
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
        """The weights the ingested files were embedded with (``embedding.weights``: ``clay-v0.1``, ``untrained``),
        or ``{"unknown"}`` for a database without the ``files`` table (built by other means or an older version)."""
        conn = _connect(self.db)
        if FILES not in conn.table_names():
            return {"unknown"}
        try:
            files = conn.open_table(FILES).to_arrow()
        except (OSError, RuntimeError, ValueError) as exc:  # lance's errors for damaged data
            why = str(exc).split(", /rustc")[0]  # lance appends the Rust source locations
            raise OutputError(f"the files table of {self.db} cannot be read (damaged?): {why}") from None
        return set(files["weights"].to_pylist()) if "weights" in files.column_names else set()

    @property
    def untrained(self) -> bool:
        """Whether any ingested file holds embeddings of untrained weights (layers and legends say so)."""
        return "untrained" in self.weights

    def _lookup(self, chip_ids: Sequence[str], columns: list[str]) -> pa.Table:
        """The rows of those of the given chips that exist (one query through the ``chip_id`` index)."""
        query = self.table.search().where(f"chip_id IN ({_sql_strings(chip_ids)})")
        return query.select(columns).limit(len(chip_ids)).to_arrow()

    def _rows(self, chip_ids: Sequence[str], columns: list[str]) -> pa.Table:
        """Rows of the given chips, in that order (:class:`UnknownChipError` for an unknown id)."""
        got = self._lookup(chip_ids, columns)
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

    def unit_vectors(self, year: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every chip of ``year``: its grid column and row (int32) and its unit vector, ``(N, D)`` of
        :data:`VECTOR_DTYPE`, for the region layers (:class:`~wcembed.explore.layers.YearVectors`).

        Read from the table in batches of :data:`LOAD_BATCH_ROWS` rows and, in a local database, kept in
        its :data:`UNIT_VECTORS` folder under the table's version, where the next call reads them from
        disk: a CONUS year in 0.1 s instead of 3 s. Ingest writes them; a table written by other means
        has a new version, and they are read again. Kept files that are damaged or cannot be written are
        passed over with a warning: the table is the truth."""
        year = check_year(year)
        n = self.table.count_rows(f"year = {year}")
        if not n:
            raise BadParameterError(f"no chip of {year} in the index")
        dim = self.table.schema.field("vector").type.list_size
        kept = None if _remote(self.db) else self._kept_vectors(year)
        got = kept.read(n, dim) if kept else None
        if got is not None:
            return got
        x, cells, at = np.empty((n, dim), VECTOR_DTYPE), np.empty((2, n), np.int32), 0
        for b in self.batches(["column", "row", "vector"], year=year, batch_rows=LOAD_BATCH_ROWS):
            unit_rows(store.vector_matrix(b.column("vector")), out=x[at : at + len(b)])
            cells[0, at : at + len(b)] = b.column("column").to_numpy()
            cells[1, at : at + len(b)] = b.column("row").to_numpy()
            at += len(b)
        if kept:
            kept.write(cells, x)
        return cells[0], cells[1], x

    def _kept_vectors(self, year: int) -> _KeptVectors:
        """Where the unit vectors of ``year`` are kept for this version of the table (a local database)."""
        return _KeptVectors(Path(self.db) / UNIT_VECTORS, year, self.table.version)

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

        t = self._rows(chip_ids, RESULT_COLUMNS)
        df = t.drop(["geometry"]).to_pandas()
        return gpd.GeoDataFrame(df, geometry=shapely.from_wkb(t["geometry"].to_numpy(zero_copy_only=False)), crs=CRS)

    def query_at(self, lon: float, lat: float, year: int | None = None) -> tuple[str, np.ndarray] | None:
        """``(chip_id, vector)`` of the chip holding the point (degrees), or None where no chip was embedded.

        The chip comes from grid arithmetic (:func:`wcembed.grid.chip_at`) and its
        vector from one lookup by id; without ``year``, the first year that has it.
        """
        lon, lat = check_point(lon, lat)
        column, row = chip_at(lon, lat, self.chip_size, self.origin)
        if column < 0 or row < 0:
            return None
        ids = [chip_id(y, column, row) for y in ([check_year(year)] if year is not None else YEARS)]
        got = self._lookup(ids, ["chip_id", "vector"])
        found = got["chip_id"].to_pylist()
        best = next((c for c in ids if c in found), None)
        if best is None:
            return None
        return best, store.vector_matrix(got["vector"])[found.index(best)]

    MAX_AREA_CHIPS = 20_000
    """The most chips an area query may cover (about 170 x 170 km of 512 px chips)."""

    def chips_in(self, geometry, year: int) -> list[str]:
        """Ids of the ``year``'s chips whose footprint overlaps ``geometry`` (a shapely polygon in degrees,
        OGC:CRS84) with a positive area: candidates by grid arithmetic, then one lookup of which exist."""
        import shapely

        year = check_year(year)
        if not isinstance(geometry, shapely.Geometry) or geometry.is_empty:
            raise BadParameterError(f"the area is empty or not a geometry: {geometry!r}")
        check_bbox(geometry.bounds)
        if not geometry.is_valid:  # e.g. a self-intersecting drawing: what it encloses
            geometry = shapely.make_valid(geometry)
        w, s, e, n = geometry.bounds
        (c0, r0), (c1, r1) = chip_at(w, n, self.chip_size, self.origin), chip_at(e, s, self.chip_size, self.origin)
        cols, rows = np.meshgrid(np.arange(max(c0, 0), c1 + 1), np.arange(max(r0, 0), r1 + 1))
        if cols.size > self.MAX_AREA_CHIPS:
            raise BadParameterError(
                f"the area covers {cols.size} chips, more than {self.MAX_AREA_CHIPS}: draw a smaller one"
            )
        cols, rows = cols.ravel(), rows.ravel()
        boxes = shapely.box(
            *np.array([chip_bounds(c, r, self.chip_size, self.origin) for c, r in zip(cols, rows, strict=True)]).T
        )
        overlap = shapely.area(shapely.intersection(boxes, geometry)) > 0
        wanted = [chip_id(int(year), int(c), int(r)) for c, r in zip(cols[overlap], rows[overlap], strict=True)]
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
        import shapely

        _, column, row = parse_chip_id(chip)
        return shapely.box(*chip_bounds(column, row, self.chip_size, self.origin))

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
        import geopandas as gpd
        import shapely

        k = check_k(k)
        spacing = DIVERSE_CHIPS if diverse is True else int(diverse)
        if spacing < 0:
            raise BadParameterError(f"diverse must be a number of chips (0: off), got {diverse!r}")
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
            df = self._with_footprints(cand.iloc[keep].reset_index(drop=True))
        geom = shapely.from_wkb(df.pop("geometry").to_numpy())
        df.insert(0, "rank", np.arange(1, len(df) + 1))
        return gpd.GeoDataFrame(df, geometry=geom, crs=CRS)

    def _with_footprints(self, df):
        """``df`` (``SCALAR_COLUMNS`` and ``distance``) with the columns of :data:`RESULT_COLUMNS` that follow from
        a chip's place on the grid (centre, bbox, WKB footprint), computed as the column files compute them."""
        import shapely

        places = zip(df["column"], df["row"], strict=True)
        b = np.array([chip_bounds(int(c), int(r), self.chip_size, self.origin) for c, r in places]).reshape(-1, 4)
        out = df.assign(
            lon=(b[:, 0] + b[:, 2]) / 2,
            lat=(b[:, 1] + b[:, 3]) / 2,
            geometry=shapely.to_wkb(shapely.box(b[:, 0], b[:, 1], b[:, 2], b[:, 3])),
            xmin=b[:, 0],
            ymin=b[:, 1],
            xmax=b[:, 2],
            ymax=b[:, 3],
        )
        return out[[*RESULT_COLUMNS, "distance"]]

    def _nearest(self, vector: np.ndarray, limit: int, where: str, exact: bool | None, refine: int, columns):
        """The ``limit`` nearest rows' ``columns`` (a DataFrame with ``distance``), exactly or through the ANN
        index with ``refine`` x ``limit`` candidates re-ranked by the full vectors."""
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
        if not len(positives):
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
