"""A year's unit vectors kept beside the database: read once from the table, then from ``.npy`` files.

:func:`unit_vectors` gives every chip of a year of a :class:`~wcembed.explore.data.index.ChipIndex` as float16
unit vectors (:data:`VECTOR_DTYPE`) with their grid cells; beside a local database they are kept
(:data:`UNIT_VECTORS`), so the next read takes 0.1 s instead of 3 s at CONUS scale.
:mod:`wcembed.explore.compute.vectors` computes the region layers from them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.lib.format as npy

from wcembed.core import store
from wcembed.core.errors import BadParameterError, UnknownChipError
from wcembed.core.grid import chip_ids
from wcembed.core.product import check_year
from wcembed.explore.data.table import DEFAULT_SET, remote

log = logging.getLogger(__name__)

VECTOR_DTYPE = np.float16
"""How the region layers hold a year's unit vectors (:func:`unit_vectors`): half of float32's
memory (0.83 GB for a CONUS year of 768-d vectors instead of 1.65 GB, so that two years and the explorer
fit in 4 GiB), each component rounded to 11 significant bits. Products run with float32 accumulation
(:meth:`YearVectors.dot`); a layer's value is within 5e-4 of float32's (see
``tests/test_layers.py``). Searches use the table's float32 vectors."""


UNIT_VECTORS = "unit_vectors"
"""Folder of a local database where each year's unit vectors are kept as ``.npy`` files named by the
chips table's version (``{year}-v{version}-vectors.npy`` and ``-cells.npy``, the grid columns and rows)."""


LOAD_BATCH_ROWS = 2048
"""Rows per batch when a year's vectors are read from the table: small batches keep LanceDB's read-ahead
small (at CONUS it peaked at 0.6 GB with 2,048 rows, 1.2 GB with 65,536) and read faster."""


def unit_rows(m: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The rows of ``m`` (float32) divided by their lengths (at least 1e-12), written into ``out`` (e.g. a
    slice of a :data:`VECTOR_DTYPE` matrix; torch converts, ten times faster than numpy's cast)."""
    import torch  # deferred: torch loads only where a model or a product runs

    norms = np.sqrt(np.einsum("ij,ij->i", m, m))
    torch.from_numpy(out).copy_(torch.from_numpy(m / np.maximum(norms, 1e-12)[:, None]))
    return out


def _read_npy(path: Path) -> np.ndarray:
    """An ``.npy`` file's array, read in one unbuffered ``readinto`` (5x faster than ``np.load`` for a
    0.8 GB file from the page cache); ValueError for a damaged or short file."""

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
class KeptVectors:
    """A year's unit vectors kept beside a local database (:func:`unit_vectors`), for one version of the chips
    table: its number and the time it was written (microseconds), so that a table deleted and made again, whose
    versions count from 1 again, is never served the vectors kept for the old one."""

    folder: Path
    year: int
    version: int
    written: int = 0

    def path(self, part: str) -> Path:
        return self.folder / f"{self.year}-v{self.version}-t{self.written}-{part}.npy"

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
        """Keep them (each file written whole, :func:`wcembed.core.store.write_file_atomic`: the vectors last), and
        remove those of the year kept for other versions of the table; a failure is a warning."""
        try:
            for part, data in (("cells", cells), ("vectors", x)):
                store.write_file_atomic(self.path(part), lambda fh, data=data: np.save(fh, data))
            mine = {self.path("cells").name, self.path("vectors").name}
            for old in self.folder.glob(f"{self.year}-v*-*.npy"):  # other versions, or another table's
                if old.name not in mine:
                    old.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot keep the unit vectors of %d at %s (%s): they are read again next time",
                        self.year, self.folder, exc)  # fmt: skip


def unit_vectors(index, year: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every chip of ``year`` of a :class:`~wcembed.explore.data.index.ChipIndex`: its grid column and row
    (int32) and its unit vector, ``(N, D)`` of :data:`VECTOR_DTYPE`, for the region layers (:class:`YearVectors`).

    Read from the table in batches of :data:`LOAD_BATCH_ROWS` rows and, in a local database, kept in
    its :data:`UNIT_VECTORS` folder under the table's version, where the next call reads them from
    disk: a CONUS year in 0.1 s instead of 3 s. Ingest writes them; a table written by other means
    has a new version, and they are read again. Kept files that are damaged (:func:`agrees_with_table`) or
    cannot be written are passed over with a warning and written again: the table is the truth."""
    year = check_year(year)
    n = index.table.count_rows(f"year = {year}")
    if not n:
        raise BadParameterError(f"no chip of {year} in the embedding set {index.set} of {index.db}")
    dim = index.table.schema.field("vector").type.list_size
    kept = None if remote(index.db) else kept_vectors(index, year)
    got = kept.read(n, dim) if kept else None
    if got is not None and agrees_with_table(index, year, *got):
        return got
    if got is not None:
        log.warning(
            "the unit vectors kept at %s do not agree with the table (damaged?): reading the table", kept.folder
        )
    x, cells, at = np.empty((n, dim), VECTOR_DTYPE), np.empty((2, n), np.int32), 0
    for b in index.batches(["column", "row", "vector"], year=year, batch_rows=LOAD_BATCH_ROWS):
        unit_rows(store.vector_matrix(b.column("vector")), out=x[at : at + len(b)])
        cells[0, at : at + len(b)] = b.column("column").to_numpy()
        cells[1, at : at + len(b)] = b.column("row").to_numpy()
        at += len(b)
    if kept:
        kept.write(cells, x)
    return cells[0], cells[1], x


CHECK_ROWS = 64
"""Kept rows compared with the table each time a year's kept vectors are read (random rows, one lookup)."""
CHECK_TOLERANCE = 2e-3
"""The largest difference a kept float16 unit vector's component may have from the table's (rounding: 5e-4)."""


def agrees_with_table(index, year: int, columns: np.ndarray, rows: np.ndarray, x: np.ndarray) -> bool:
    """Whether kept unit vectors agree with the table they were made from: :data:`CHECK_ROWS` random rows are
    looked up by their chip ids and compared (damaged data, noise, shuffled cells fail; one lookup through
    the ``chip_id`` index, ~15 ms at CONUS scale)."""
    at = np.random.default_rng().choice(len(x), min(len(x), CHECK_ROWS), replace=False)
    ids = list(chip_ids(year, columns[at], rows[at]))
    try:
        table = index.vectors(ids)
    except UnknownChipError:
        return False
    want = np.empty(table.shape, VECTOR_DTYPE)
    unit_rows(table, out=want)
    got = x[at].astype(np.float32)
    return bool(np.isfinite(got).all() and np.abs(got - want.astype(np.float32)).max() <= CHECK_TOLERANCE)


def kept_vectors(index, year: int) -> KeptVectors:
    """Where the unit vectors of ``year`` are kept for this version of the table (a local database)."""
    folder = Path(index.db) / UNIT_VECTORS
    table = index.table
    version = table.version
    stamps = [v["timestamp"] for v in table.list_versions() if v["version"] == version]
    written = int(stamps[0].timestamp() * 1_000_000) if stamps else 0
    return KeptVectors(folder if index.set == DEFAULT_SET else folder / index.set, year, version, written)
