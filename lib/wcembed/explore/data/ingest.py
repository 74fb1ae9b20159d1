"""Incremental ingest of output files into the LanceDB database (:func:`ingest`).

A rerun reads only new or changed files; the rows of a (year, column) are replaced
in one commit, so a chip is never duplicated, also after an ingest was killed.
Ingest moves whole Arrow tables in large batches: no per-row Python. In a local
database it then keeps each year's unit vectors for the region layers
(:mod:`wcembed.explore.compute.vectors`).
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from wcembed.core import original, store
from wcembed.core.checks import NORM_RANGE
from wcembed.core.contract import FileMetadata
from wcembed.core.errors import IngestError, OutputError
from wcembed.core.grid import chip_id
from wcembed.explore.data.index import ChipIndex
from wcembed.explore.data.kept import kept_vectors, unit_vectors
from wcembed.explore.data.table import (
    ANN_MIN_ROWS,
    DEFAULT_SET,
    KEEP,
    check_set,
    connect,
    indexes_missing,
    model_set,
    refresh_indexes,
    remote,
    set_tables,
    table_names,
)

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    """What an ingest did: files added, replaced and unchanged, the table's rows after it, the files it could
    not read, and the partial files it holds (columns embedded only in part: ``max_rows``)."""

    files_added: int
    files_replaced: int
    files_unchanged: int
    rows: int
    failed: dict[str, str] = field(default_factory=dict)
    """Files that could not be read (path: reason); not recorded, so the next ingest tries them again."""
    partial: list[str] = field(default_factory=list)
    """Ingested files that hold only part of their column: searches and layers miss the rest."""
    sets: dict[str, int] = field(default_factory=dict)
    """The embedding sets ingested into, with the rows of each after the ingest."""
    rows_before: int = 0
    """The rows of the sets ingested into before the ingest."""

    def __str__(self) -> str:
        text = (
            f"{self.files_added} files added, {self.files_replaced} replaced, {self.files_unchanged} unchanged; "
            f"{self.rows} chips in the table" + ("s" if len(self.sets) > 1 else "")
        )
        if self.files_replaced:
            text += f" ({self.rows_before} before)"
        if len(self.sets) > 1 or set(self.sets) - {DEFAULT_SET}:
            text += " (" + ", ".join(f"set {k}: {v}" for k, v in self.sets.items()) + ")"
        if self.partial:
            text += f"; {len(self.partial)} partial files (part of their column only): {', '.join(self.partial[:3])}"
        if self.failed:
            text += f"; {len(self.failed)} files could not be ingested"
        return text


class _BadFile(Exception):
    """Why one output file is refused (its rows are not ingested)."""


def _year_column(path: str) -> tuple[int, int]:
    """The (year, column) a file's name says: ours, or the original run's."""
    return original.parse_name(path) or store.parse_output_path(path)


def _arrow_rows(
    path: str, schema: pa.Schema | None, original_weights: str = original.WEIGHTS
) -> tuple[pa.Table, FileMetadata]:
    """The rows of one GeoParquet file in the table's layout (``schema``, when the table has one), and the
    file's record, after checking the whole file: its columns and their types, the vector dimension, and
    that its name, its ``wcembed`` metadata and its rows agree on the year and column, with chip ids that
    are the ids of their rows. An original run's file (:mod:`wcembed.core.original`) is read as ours
    first. Raises :class:`_BadFile` saying what is wrong."""
    year, column = _year_column(path)
    data = store.read_bytes(path)
    if original.parse_name(path):
        try:
            table, _ = original.read_as_ours(path, data, original_weights)
        except OutputError as exc:
            raise _BadFile(str(exc).removeprefix(f"{path}: ")) from None
    else:
        table = pq.read_table(io.BytesIO(data))
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
    x = store.vector_matrix(table["embeddings"])
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():  # a NaN would poison every search that meets it, and each layer's colour scale
        raise _BadFile(f"the embedding of chip {table['chip_id'][int(np.argmin(finite))]} is not finite (NaN or inf)")
    norms = np.linalg.norm(x.astype(np.float64), axis=1)
    bad = (norms <= NORM_RANGE[0]) | (norms >= NORM_RANGE[1])
    if bad.any():  # no direction: the chip would vanish from every search, and a search from it find nothing
        at = int(np.argmax(bad))
        raise _BadFile(f"the embedding of chip {table['chip_id'][at]} has length {norms[at]:.3g}: no direction")
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
    return out, meta


def ingest(
    source: str | Path,
    db: str | Path,
    *,
    set: str | None = None,
    original_weights: str = original.WEIGHTS,
    ann_min_rows: int = ANN_MIN_ROWS,
    batch_rows: int = 200_000,
    replace: bool = False,
) -> IngestReport:
    """Ingest every GeoParquet file under ``source`` (folder or ``s3://`` prefix, all years) into ``db``.

    Our files go to their model's embedding set (:func:`~wcembed.explore.data.table.model_set`:
    :data:`~wcembed.explore.data.table.DEFAULT_SET` for Clay v0, ``wcembed-clay-v1-5`` for Clay v1.5, as the
    first file's header says; an output folder holds one model's files), the original 2024 run's
    (``*_v002.gpq``, :mod:`wcembed.core.original`) to :data:`wcembed.core.original.SET`, or both
    kinds to ``set`` when it is named (then ``source`` must hold one kind only): each set its own tables,
    vectors, ANN index and kept unit vectors (:func:`~wcembed.explore.data.table.set_tables`). The original run's
    files record no weights: they are recorded as ``original_weights`` (the published run's by default;
    ``"untrained"`` for files made here with untrained weights, e.g. by the demo).

    One set, one source: a set holds one file per (year, column) and the vectors of one model and weights. A file
    whose (year, column) the set holds from another file (another folder or name) is refused unless ``replace``,
    when the column's rows are replaced by the new file's (the report gives the chips before and after); a file
    of other weights than the set's is refused (ingest it into a set of its own).

    Only new or changed files are read: a file is unchanged when its name, size and Parquet footer (its
    content's SHA-256, :func:`wcembed.core.store.content_keys`) are as recorded. Each is checked whole
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
    region layers (:func:`wcembed.explore.data.kept.unit_vectors`).
    """
    if not remote(db) and Path(db).exists() and not Path(db).is_dir():
        raise IngestError(f"the database {db} is a file, not a folder: give a LanceDB folder (--db)")
    if set is not None:
        check_set(set)
    kinds = {DEFAULT_SET: store.list_outputs(source), original.SET: store.list_outputs(source, version="v002")}
    if not any(kinds.values()):
        raise IngestError(
            f"no output files under {source}: ours (*_{store.FORMAT_VERSION}.gpq) or the original run's (*_v002.gpq)"
        )
    if set is None and kinds[DEFAULT_SET]:
        first = min(kinds[DEFAULT_SET])
        try:
            name = model_set(store.read_metadata(first).model_id)
        except (OSError, OutputError):  # an unreadable first file: ingest names it among the failures
            name = DEFAULT_SET
        kinds = {name: kinds.pop(DEFAULT_SET), **kinds}
    if set is not None:
        if all(kinds.values()):
            raise IngestError(f"{source} holds our files and the original run's: --set takes one kind at a time")
        kinds = {set: next(files for files in kinds.values() if files)}
    todo = {name: files for name, files in kinds.items() if files}
    if remote(db):  # no lock on object stores: run one ingest at a time
        return _sum(
            [
                _ingest(files, db, name, original_weights, ann_min_rows, batch_rows, replace)
                for name, files in todo.items()
            ]
        )
    Path(db).mkdir(parents=True, exist_ok=True)
    with store.exclusive(Path(db) / ".ingest.lock"):  # concurrent ingests take turns
        reports = []
        for name, files in todo.items():
            try:
                reports.append(_ingest(files, db, name, original_weights, ann_min_rows, batch_rows, replace))
            except IngestError as exc:
                reports.append(exc.report)
                _keep_unit_vectors(db, name, exc.report)
                raise IngestError(str(exc), _sum(reports)) from None
            _keep_unit_vectors(db, name, reports[-1])
        return _sum(reports)


def _keep_unit_vectors(db: str | Path, name: str, report: IngestReport) -> None:
    """Keep each year's unit vectors of a set beside the database: the explorer reads them, not the table."""
    if not report.rows:
        return

    index = ChipIndex(db, set=name)
    for year in index.years:
        if not kept_vectors(index, year).exists():
            unit_vectors(index, year)


def _sum(reports: list[IngestReport]) -> IngestReport:
    """One report of the ingests of several sets."""
    if len(reports) == 1:
        return reports[0]
    return IngestReport(
        sum(r.files_added for r in reports), sum(r.files_replaced for r in reports),
        sum(r.files_unchanged for r in reports), sum(r.rows for r in reports),
        {p: why for r in reports for p, why in r.failed.items()}, [p for r in reports for p in r.partial],
        {k: v for r in reports for k, v in r.sets.items()}, sum(r.rows_before for r in reports),
    )  # fmt: skip


def _ingest(
    files: dict[str, int], db: str | Path, set_name: str, original_weights: str, ann_min_rows: int, batch_rows: int,
    replace: bool = False,
) -> IngestReport:  # fmt: skip
    chips_table, files_table_name = set_tables(set_name)
    conn = connect(db)
    names = table_names(conn)
    keys = store.content_keys(files)
    seen: dict[str, str] = {}  # path -> content key (or the size, as recorded before content keys)
    weights: dict[str, str] = {}
    complete: dict[str, bool] = {}
    if files_table_name in names:
        known = conn.open_table(files_table_name).to_arrow()
        paths = known["path"].to_pylist()
        recorded = known["content"].to_pylist() if "content" in known.column_names else [None] * len(paths)
        sizes = known["size"].to_pylist()
        seen = {p: key or f"{size}:" for p, key, size in zip(paths, recorded, sizes, strict=True)}
        if "weights" in known.column_names:
            weights = dict(zip(paths, known["weights"].to_pylist(), strict=True))
        if "complete" in known.column_names:
            complete = dict(zip(paths, known["complete"].to_pylist(), strict=True))
    todo = {p: k for p, k in keys.items() if not _same_content(seen.get(p), k)}
    chips = conn.open_table(chips_table) if chips_table in names else None
    rows_before = chips.count_rows() if chips is not None else 0
    if not todo:
        if chips is not None and indexes_missing(chips):  # a first ingest killed before its indexes were built
            refresh_indexes(chips, ann_min_rows=ann_min_rows)
        partial = sorted(p for p in files if not complete.get(p, True))
        return IngestReport(0, 0, len(files), rows_before, partial=partial, sets={set_name: rows_before},
                            rows_before=rows_before)  # fmt: skip
    pending: list[tuple[str, pa.Table]] = []
    done: list[str] = []
    failed: dict[str, str] = {}
    held = {_year_column(p): p for p in seen}  # the set's file of each (year, column)
    displaced: list[str] = []  # files of the set whose columns other files replace
    holding = Counter(weights.get(p, "") for p in seen if p not in todo)  # weights of the files the set keeps

    def add_pending() -> None:
        nonlocal chips
        rows = pa.concat_tables([t for _, t in pending])
        if chips is None:
            chips = _create_or_open(conn, rows, chips_table)
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
        other = held.get(_year_column(path))
        try:
            if other is not None and other != path and not replace:
                year, column = _year_column(path)
                raise _BadFile(f"set {set_name} holds column {column} of {year} from {other}: give --replace to "
                               "replace it with this file, or ingest this file into another set (--set)")  # fmt: skip
            part, meta = _arrow_rows(path, schema, original_weights)
            others = holding - Counter([weights.get(other, "")] if other in seen and other not in todo else [])
            kept = set(others)  # the weights of every other file the set holds (those ingested now too)
            if kept and meta.weights not in kept:
                holds = ", ".join(sorted(kept))
                raise _BadFile(f"its weights are {meta.weights}; set {set_name} holds {holds}: a set holds one "
                               "model's and weights' vectors (ingest it into another set, --set)")  # fmt: skip
            weights[path], complete[path] = meta.weights, meta.complete
        except Exception as exc:  # any bad or unreadable file: named at the end, the others still ingested
            failed[path] = str(exc) if isinstance(exc, _BadFile) else f"{type(exc).__name__}: {exc}"
            log.error("cannot ingest %s: %s", path, failed[path])
            continue
        if other is not None and other != path:
            displaced.append(other)
            if other in seen and other not in todo:
                holding[weights.get(other, "")] -= 1
        holding[meta.weights] += 1
        held[_year_column(path)] = path
        schema = schema or part.schema  # the first good file sets the layout of a new table
        pending.append((path, part))
        if sum(t.num_rows for _, t in pending) >= batch_rows:
            add_pending()
    if pending:
        add_pending()
    replaced = sum(p in seen for p in done) + len(displaced)
    for path in displaced:
        seen.pop(path, None)
    seen.update({p: todo[p] for p in done})
    files_table = {
        "path": list(seen),
        "size": pa.array([int(k.split(":")[0]) for k in seen.values()], pa.int64()),
        "content": list(seen.values()),
        "weights": [weights.get(p, "") for p in seen],
        "complete": pa.array([complete.get(p, True) for p in seen], pa.bool_()),
    }
    conn.create_table(files_table_name, pa.table(files_table), mode="overwrite")
    log.info("ingested %d files (%d replaced)", len(done), replaced)
    if chips is not None:
        refresh_indexes(chips, ann_min_rows=ann_min_rows)
    rows = chips.count_rows() if chips is not None else 0
    partial = sorted(p for p in files if p in seen and not complete.get(p, True))
    report = IngestReport(
        len(done) - replaced, replaced, len(files) - len(todo), rows, failed, partial, {set_name: rows}, rows_before
    )
    for path in partial:
        log.warning("%s is partial: it holds only the first rows of its column (embedded with max_rows)", path)
    if failed:
        named = "; ".join(f"{p}: {why}" for p, why in failed.items())
        raise IngestError(f"{len(failed)} of {len(todo)} files could not be ingested (the rest were): {named}", report)
    return report


def _same_content(recorded: str | None, key: str) -> bool:
    """Whether a file's content key is the one recorded (a record without a footer hash: by size)."""
    if recorded is None:
        return False
    if recorded.endswith(":"):
        return recorded.split(":")[0] == key.split(":")[0]
    return recorded == key


def _create_or_open(conn, rows: pa.Table, chips_table: str):
    """The chips table, created with ``rows``' layout (and no rows: they are added next) or, when another
    ingest created it meanwhile, opened."""
    try:
        return conn.create_table(chips_table, rows.schema.empty_table())
    except ValueError:  # "Table 'chips' already exists": a concurrent first ingest won the race
        return conn.open_table(chips_table)


def _columns_filter(paths: Sequence[str]) -> str:
    """SQL filter of the rows of the (year, column)s of output files."""
    columns: dict[int, list[int]] = {}
    for year, column in sorted(_year_column(p) for p in paths):
        columns.setdefault(year, []).append(column)
    return " OR ".join(f"(year = {y} AND `column` IN ({', '.join(map(str, cs))}))" for y, cs in columns.items())
