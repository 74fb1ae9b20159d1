"""A year's embeddings as unit vectors in memory, and the region layers computed from them.

* :func:`unit_vectors`: every chip of a year of a :class:`~wcembed.explore.index.ChipIndex`
  as float16 unit vectors (:data:`VECTOR_DTYPE`), kept beside a local database
  (:data:`UNIT_VECTORS`) so that the next read takes 0.1 s instead of 3 s at CONUS scale;
* :class:`YearVectors`: those vectors with their grid cells, and the products
  (float16 with float32 accumulation) behind :meth:`YearVectors.similarity` and
  :meth:`YearVectors.pca_rgb`;
* :class:`ChangePairs` and :func:`change`: the chips of two years paired, their change
  and the chips that changed like a query chip.

Each layer is a :class:`~wcembed.explore.layers.ChipRaster`.

Example
-------
>>> vectors = YearVectors.load(ChipIndex("outputs/lancedb"), 2020)  # doctest: +SKIP
>>> layer = vectors.similarity(query_vector)  # doctest: +SKIP
>>> layer.to_cog("similarity.tif")  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wcembed import store
from wcembed.errors import BadParameterError
from wcembed.explore.layers import ChipRaster, index_note
from wcembed.explore.table import DEFAULT_SET, remote
from wcembed.grid import CHIP_PX, CONUS_ORIGIN, chip_ids, parse_chip_id
from wcembed.product import check_year

if TYPE_CHECKING:
    import pandas as pd

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
    import torch

    norms = np.sqrt(np.einsum("ij,ij->i", m, m))
    torch.from_numpy(out).copy_(torch.from_numpy(m / np.maximum(norms, 1e-12)[:, None]))
    return out


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
class KeptVectors:
    """A year's unit vectors kept beside a local database (:func:`unit_vectors`), for one version
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


def unit_vectors(index, year: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every chip of ``year`` of a :class:`~wcembed.explore.index.ChipIndex`: its grid column and row
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
    from wcembed.errors import UnknownChipError

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
    return KeptVectors(folder if index.set == DEFAULT_SET else folder / index.set, year, index.table.version)


PAIR_CHUNK_ROWS = 65_536
"""Pairs of chips per step of a pass over two years (a half-precision temporary of this many rows)."""


@dataclass
class YearVectors:
    """A year's embeddings held in memory: grid columns and rows, and unit vectors ``(N, D)`` as
    :data:`VECTOR_DTYPE`, from which the layers are computed."""

    year: int
    columns: np.ndarray
    rows: np.ndarray
    vectors: np.ndarray
    description: str = ""
    chip_size: int = CHIP_PX
    origin: tuple[float, float] = CONUS_ORIGIN

    @classmethod
    def from_matrix(cls, year: int, columns, rows, matrix: np.ndarray, **kw) -> YearVectors:
        """From chips' grid columns and rows and their vectors ``(N, D)`` (any length: made unit vectors)."""
        x = np.empty(np.shape(matrix), VECTOR_DTYPE)
        unit_rows(np.asarray(matrix, np.float32), out=x)
        return cls(year, np.asarray(columns, np.int32), np.asarray(rows, np.int32), x, **kw)

    @classmethod
    def load(cls, index, year: int) -> YearVectors:
        """Every chip of ``year`` of a :class:`~wcembed.explore.index.ChipIndex`
        (:func:`unit_vectors`: kept beside a local database after the first
        read)."""
        note = index_note(index)  # before the vectors are read: a failure here costs no memory
        columns, rows, x = unit_vectors(index, year)
        return cls(year, columns, rows, x, note, index.chip_size, index.origin)

    def __len__(self) -> int:
        return len(self.columns)

    @functools.cached_property
    def chip_ids(self) -> np.ndarray:
        """The chips' ids (``{year}-{column:04d}-{row:04d}``, as the pipeline writes them), made when asked."""
        return chip_ids(self.year, self.columns, self.rows)

    def dot(self, q: np.ndarray) -> np.ndarray:
        """``vectors @ q`` as float32: ``(N,)`` for a vector ``q`` of length D, ``(N, k)`` for ``(D, k)``.

        Runs in half precision (torch's CPU kernels accumulate in float32): 25–45 ms for a CONUS year on
        two cores, where float32 takes 60 ms and a conversion to float32 a second. ``q`` is scaled to at most 1
        first, so that a small vector (a change) keeps its digits; each result is within 2**-11 of its
        size (the half-precision output) plus the rounding of the vectors."""
        import torch

        q = np.asarray(q, np.float32)
        scale = float(np.abs(q).max()) or 1.0
        x, q16 = torch.from_numpy(self.vectors), torch.from_numpy(q / scale).to(torch.float16)
        # one matrix-vector product per column: torch's half-precision (N, D) @ (D, k) is 6x slower for k = 3
        out = x @ q16 if q.ndim == 1 else torch.stack([x @ column.contiguous() for column in q16.T], dim=1)
        return out.float().numpy() * np.float32(scale)

    def pair_distance(self, i: np.ndarray, other: YearVectors, j: np.ndarray, shift=None) -> np.ndarray:
        """``|other[j] - self[i] - shift|`` of each pair (rows ``i`` of these vectors, ``j`` of ``other``),
        float32, in chunks of :data:`PAIR_CHUNK_ROWS`. The two years' components are subtracted first, in
        half precision (a chip that did not change has distance 0 exactly: no ``1 - a.b`` rounding), and
        the squares summed in float32."""
        import torch

        out = np.empty(len(i), np.float32)
        m = None if shift is None else torch.from_numpy(np.asarray(shift, self.vectors.dtype))
        a, b = torch.from_numpy(self.vectors), torch.from_numpy(other.vectors)
        for s in range(0, len(i), PAIR_CHUNK_ROWS):
            chunk = slice(s, s + PAIR_CHUNK_ROWS)
            d = _rows(b, j[chunk]) - _rows(a, i[chunk])
            if m is not None:
                d -= m
            out[chunk] = torch.linalg.vector_norm(d, dim=1, dtype=torch.float32).numpy()
        return out

    def raster(self, values: np.ndarray, **kw) -> ChipRaster:
        """Per-chip ``values`` (in this object's order) as a :class:`ChipRaster` on the grid."""
        kw["description"] = " ".join(t for t in (kw.get("description", ""), self.description) if t)
        return ChipRaster.from_chips(
            self.columns, self.rows, values, chip_size=self.chip_size, origin=self.origin, **kw
        )

    def similarity(self, query: np.ndarray, *, label: str = "the query") -> ChipRaster:
        """Cosine similarity of every chip to ``query`` (a vector, e.g. a chip's or
        :func:`wcembed.explore.index.query_vector` of examples), -1..1."""
        q = np.asarray(query, np.float32)
        sims = np.clip(self.dot(q / max(float(np.linalg.norm(q)), 1e-12)), -1, 1)
        lo, hi = np.percentile(sims, [1, 100]) if len(sims) > 1 else (-1.0, 1.0)
        return self.raster(
            sims,
            name=f"similarity {self.year}",
            description=f"cosine similarity of each chip of {self.year} to {label}.",
            vmin=float(lo),
            vmax=float(hi),
            cmap="magma",
        )

    def pca_rgb(self, sample: int = 20_000, seed: int = 0) -> ChipRaster:
        """The first three principal components of the embeddings as RGB (each stretched between its
        2nd and 98th percentile); the components are fitted on up to ``sample`` chips."""
        rng = np.random.default_rng(seed)
        pick = slice(None) if len(self) <= sample else np.sort(rng.choice(len(self), sample, replace=False))
        fit = self.vectors[pick].astype(np.float32)
        mean = fit.mean(axis=0, dtype=np.float64)
        fit -= mean.astype(np.float32)
        _, eigvecs = np.linalg.eigh((fit.T @ fit).astype(np.float64))  # scatter matrix: D x D, ascending
        axes = eigvecs[:, ::-1][:, :3].astype(np.float32)
        pcs = self.dot(axes) - (mean.astype(np.float32) @ axes)  # no centred copy of all the vectors
        if pcs.shape[1] < 3:
            pcs = np.pad(pcs, ((0, 0), (0, 3 - pcs.shape[1])))
        lo, hi = np.percentile(pcs, [2, 98], axis=0)
        rgb = np.clip((pcs - lo) / np.where(hi > lo, hi - lo, 1), 0, 1)
        return self.raster(
            rgb,
            name=f"embedding colours {self.year}",
            description=f"first three principal components of the {self.year} embeddings as red, green, blue.",
        )


def _rows(x, at: np.ndarray):
    """Rows ``at`` of a tensor: a view where they are consecutive (two years of the same chips, in the same
    order, pair row for row), else a copy."""
    if len(at) and at[-1] - at[0] == len(at) - 1 and (len(at) == 1 or (np.diff(at) == 1).all()):
        return x[int(at[0]) : int(at[-1]) + 1]
    return x[at]


def pair_cells(a: YearVectors, b: YearVectors) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``ia`` of ``a`` and ``ib`` of ``b`` of the chips (grid cells) both hold, in ``a``'s order: by
    grid arithmetic, no merge. :class:`BadParameterError` when they share none."""
    c0, r0 = int(min(a.columns.min(), b.columns.min())), int(min(a.rows.min(), b.rows.min()))
    shape = (int(max(a.rows.max(), b.rows.max())) - r0 + 1, int(max(a.columns.max(), b.columns.max())) - c0 + 1)
    in_a = np.full(shape, -1, np.int64)  # the grid, holding each chip's row of a (-1: not in a)
    in_a[a.rows - r0, a.columns - c0] = np.arange(len(a))
    ia = in_a[b.rows - r0, b.columns - c0]
    ib = np.flatnonzero(ia >= 0)
    if not len(ib):
        raise BadParameterError(
            f"no chip is in both ({a.year}: {a.description or 'a'}; {b.year}: {b.description or 'b'})"
        )
    order = np.argsort(ia[ib], kind="stable")  # pairs in a's order
    return ia[ib][order], ib[order]


class ChangePairs:
    """The chips embedded in two years, paired by position, and what every "changed like this" query
    needs of them, computed once (the years' unit vectors stay where they are: no change matrix is made).

    The change of a chip is ``d = b - a - shift``: its embedding in the later year minus the earlier, less
    the change every chip shares (``shift``, the element-wise median of the changes of up to ``sample``
    chips: the year's time encoding, a calibration drift). A query's change ``q`` is the mean of its
    examples' changes; a chip scores ``(1 + cos(d, q)) / 2 * min(|d|, |q|) / max(|d|, |q|)``, 0..1: 1 for
    a change in the same direction and of the same size, 0 for a chip that did not change; a change as
    large in another direction scores between (on the synthetic test: the same change 0.99, another
    change 0.05, no change 0.0002; the plain cosine of the changes put another change below no change).

    Examples
    --------
    >>> pairs = ChangePairs(a, b)  # doctest: +SKIP
    >>> layer, top = pairs.like(["2020-1156-0288"])  # doctest: +SKIP
    """

    def __init__(self, a: YearVectors, b: YearVectors, sample: int = 20_000, seed: int = 0) -> None:
        self.a, self.b = a, b
        self.ia, self.ib = pair_cells(a, b)
        self.columns, self.rows = a.columns[self.ia], a.rows[self.ia]
        c0, r0 = int(self.columns.min()), int(self.rows.min())
        shape = (int(self.rows.max()) - r0 + 1, int(self.columns.max()) - c0 + 1)
        self._origin, self._pair = (c0, r0), np.full(shape, -1, np.int64)  # the grid, holding each pair
        self._pair[self.rows - r0, self.columns - c0] = np.arange(len(self.ia))
        self.apart = a.pair_distance(self.ia, b, self.ib)
        """``|b - a|`` of each pair (no change matrix is made: one pass in chunks)."""
        self.sample, self.seed = sample, seed

    @functools.cached_property
    def shift(self) -> np.ndarray:
        """The change every chip shares: the element-wise median of the changes of up to ``sample`` chips."""
        pick = np.sort(np.random.default_rng(self.seed).permutation(len(self.ia))[: self.sample])
        a, b = self.a.vectors[self.ia[pick]], self.b.vectors[self.ib[pick]]
        step = 64  # dimensions at a time: a float32 temporary of sample x 64
        medians = [
            np.median(b[:, d : d + step].astype(np.float32) - a[:, d : d + step], axis=0)
            for d in range(0, a.shape[1], step)
        ]
        return np.concatenate(medians).astype(np.float32)

    @functools.cached_property
    def norms(self) -> np.ndarray:
        """``|d|`` of each pair's change less the shift (one pass in chunks: no change matrix is made)."""
        return self.a.pair_distance(self.ia, self.b, self.ib, shift=self.shift)

    def __len__(self) -> int:
        return len(self.ia)

    def distance(self) -> np.ndarray:
        """Cosine distance between each pair's two embeddings: ``1 - a.b = |b - a|**2 / 2`` of unit vectors."""
        return self.apart * self.apart / 2

    def positions(self, chips: Sequence[str]) -> list[int]:
        """Pair positions of chips (ids of either year); :class:`BadParameterError` for one not in both."""
        out = []
        rows, cols = self._pair.shape
        for chip in chips:
            _, column, row = parse_chip_id(chip)
            c, r = column - self._origin[0], row - self._origin[1]
            at = int(self._pair[r, c]) if 0 <= r < rows and 0 <= c < cols else -1
            if at < 0:
                raise BadParameterError(f"chip {chip} is not embedded in both {self.a.year} and {self.b.year}")
            out.append(at)
        return out

    def like(self, examples: Sequence[str], k: int = 10) -> tuple[ChipRaster, pd.DataFrame]:
        """How much each chip's change resembles the change of ``examples`` (chip ids, either year), as a
        layer (0..1), and the ``k`` chips that changed most alike, best first, without the examples
        (``column``, ``row``, ``score``, the two years' ids)."""
        import pandas as pd

        a, b = self.a, self.b
        at = self.positions(examples)
        if not at:
            raise BadParameterError("give at least one example chip")
        changes = b.vectors[self.ib[at]].astype(np.float32) - a.vectors[self.ia[at]] - self.shift
        q = changes.mean(axis=0)
        qn = float(np.linalg.norm(q))
        if qn < 1e-9:
            raise BadParameterError(f"the examples did not change between {a.year} and {b.year}: nothing to match")
        dot = b.dot(q)[self.ib] - a.dot(q)[self.ia] - float(self.shift @ q)
        n = np.maximum(self.norms, 1e-12)
        cos = np.clip(dot / (n * qn), -1, 1)  # (a chip that did not change has no direction: rounding)
        score = (1 + cos) / 2 * (np.minimum(n, qn) / np.maximum(n, qn))
        label = ", ".join(examples[:3]) + (f" and {len(examples) - 3} more" if len(examples) > 3 else "")
        layer = ChipRaster.from_chips(
            self.columns,
            self.rows,
            score.astype(np.float32),
            name=f"changed like {label}",
            description=(
                f"how much each chip's {a.year} → {b.year} change resembles that of {label}: the agreement of "
                f"their directions times the ratio of their sizes (1: the same change, 0: none). {a.description}"
            ).strip(),
            vmin=0.0,
            vmax=1.0,
            cmap="magma",
            chip_size=a.chip_size,
            origin=a.origin,
        )
        order = np.argsort(-score, kind="stable")
        order = order[~np.isin(order, at)][:k]
        top = pd.DataFrame(
            {
                "column": self.columns[order],
                "row": self.rows[order],
                "score": score[order].astype(np.float32),
                f"chip_{a.year}": a.chip_ids[self.ia[order]],
                f"chip_{b.year}": b.chip_ids[self.ib[order]],
            }
        )
        return layer, top


def change(a: YearVectors, b: YearVectors, pairs: ChangePairs | None = None) -> tuple[ChipRaster, pd.DataFrame]:
    """Cosine distance between the two years' embeddings of each chip present in both, as a layer, and
    the chips as a table sorted from most to least changed (``column``, ``row``, ``distance``, the two ids).
    """
    import pandas as pd

    pairs = pairs or ChangePairs(a, b)
    dist = pairs.distance()
    table = pd.DataFrame(
        {
            "column": pairs.columns,
            "row": pairs.rows,
            "distance": dist.astype(np.float32),
            f"chip_{a.year}": a.chip_ids[pairs.ia],
            f"chip_{b.year}": b.chip_ids[pairs.ib],
        }
    ).sort_values("distance", ascending=False, ignore_index=True, kind="stable")
    layer = ChipRaster.from_chips(
        table["column"],
        table["row"],
        table["distance"].to_numpy(),
        name=f"change {a.year} → {b.year}",
        description=f"cosine distance between each chip's {a.year} and {b.year} embeddings. {a.description}".strip(),
        vmin=0.0,
        vmax=float(max(np.percentile(dist, 99), 1e-6)),
        cmap="inferno",
        chip_size=a.chip_size,
        origin=a.origin,
    )
    return layer, table
