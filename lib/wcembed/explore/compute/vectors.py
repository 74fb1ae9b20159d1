"""The region layers computed from a year's unit vectors (:mod:`wcembed.explore.data.kept`).

* :class:`YearVectors`: a year's unit vectors with their grid cells, and the products
  (float16 with float32 accumulation) behind :meth:`YearVectors.similarity` and
  :meth:`YearVectors.pca_rgb`;
* :class:`ChangePairs` and :func:`change`: the chips of two years paired, their change
  and the chips that changed like a query chip.

Each layer is a :class:`~wcembed.explore.compute.layers.ChipRaster`.

Example
-------
>>> vectors = YearVectors.load(ChipIndex("outputs/lancedb"), 2020)  # doctest: +SKIP
>>> layer = vectors.similarity(query_vector)  # doctest: +SKIP
>>> layer.to_cog("similarity.tif")  # doctest: +SKIP
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from wcembed.core.errors import BadParameterError, UnknownChipError
from wcembed.core.grid import CHIP_PX, CONUS_ORIGIN, chip_ids, parse_chip_id
from wcembed.explore.compute.layers import ChipRaster, index_note
from wcembed.explore.data.kept import VECTOR_DTYPE, unit_rows, unit_vectors

PAIR_CHUNK_ROWS = 2048
"""Pairs of chips per step of a pass over two years (a half-precision temporary of this many rows: 3 MB at
768-d, held in the CPU's caches). Measured over a CONUS year (538,076 pairs, 768-d) on a 2-core AMD EPYC,
2026-12-07: 0.31 s with 2,048 rows, 0.48 s with 8,192, 2.2 s with 65,536 (a 100 MB temporary, out of cache)."""


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
        """Every chip of ``year`` of a :class:`~wcembed.explore.data.index.ChipIndex`
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
        import torch  # deferred: torch loads only where a model or a product runs

        q = np.asarray(q, np.float32)
        scale = float(np.abs(q).max()) or 1.0
        x, q16 = torch.from_numpy(self.vectors), torch.from_numpy(q / scale).to(torch.float16)
        # one matrix-vector product per column: torch's half-precision (N, D) @ (D, k) is 6x slower for k = 3
        out = x @ q16 if q.ndim == 1 else torch.stack([x @ column.contiguous() for column in q16.T], dim=1)
        return out.float().numpy() * np.float32(scale)

    @functools.cached_property
    def _positions(self) -> pd.Index:
        return pd.Index(self.chip_ids)

    def rows_of(self, chip_ids: Sequence[str]) -> np.ndarray:
        """The positions of chips of this year in :attr:`vectors`; :class:`UnknownChipError` for one it lacks."""
        at = self._positions.get_indexer(list(chip_ids))
        if (at < 0).any():
            raise UnknownChipError(f"no chip {list(chip_ids)[int(np.argmax(at < 0))]} in the vectors of {self.year}")
        return at

    def pair_distance(self, i: np.ndarray, other: YearVectors, j: np.ndarray, shift=None) -> np.ndarray:
        """``|other[j] - self[i] - shift|`` of each pair (rows ``i`` of these vectors, ``j`` of ``other``),
        float32, in chunks of :data:`PAIR_CHUNK_ROWS`. The two years' components are subtracted first, in
        half precision (a chip that did not change has distance 0 exactly: no ``1 - a.b`` rounding), and
        the squares summed in float32."""
        import torch  # deferred: torch loads only where a model or a product runs

        out = np.empty(len(i), np.float32)
        m = None if shift is None else torch.from_numpy(np.asarray(shift, self.vectors.dtype))
        a, b = torch.from_numpy(self.vectors), torch.from_numpy(other.vectors)
        for s in range(0, len(i), PAIR_CHUNK_ROWS):
            chunk = slice(s, s + PAIR_CHUNK_ROWS)
            d = tensor_rows(b, j[chunk]) - tensor_rows(a, i[chunk])
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
        :func:`wcembed.explore.data.index.query_vector` of examples), -1..1."""
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


def tensor_rows(x, at: np.ndarray):
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
