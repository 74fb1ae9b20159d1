"""Two embedding sets of one database compared chip by chip: how much do they agree, and where not?

For a year both sets hold (e.g. ours, ``wcembed``, and the original 2024 run's, ``original-2024``):

* :func:`agreement`: per chip in both, the cosine between its two embeddings (one matrix pass over the
  sets' float16 unit vectors), as a whole-region layer (:meth:`Agreement.layer`, a
  :class:`~wcembed.explore.compute.layers.ChipRaster`: COG export like the other layers) and a table. The cosine
  of two embeddings means something only when both come from the same weights (one space): with other
  weights :attr:`Agreement.note` says so;
* :func:`neighbour_overlap`: for a chip, the share of its ``k`` nearest neighbours the two sets have in
  common (the same places), what a click finds in each;
* :func:`neighbour_agreement`: that share for every chip in both, as a whole-region layer
  (:meth:`NeighbourAgreement.layer`): the neighbours searched in the sets' unit vectors among all the chips
  both hold (up to :data:`EXACT_CHIPS`) or among :data:`REFERENCE_CHIPS` of them drawn at random;
* :func:`summary`: median and quantiles of the agreement, over all chips, by distance to a tile edge and
  by valid fraction (where do they disagree?), and the neighbour overlap of a random sample of chips.

Sets of two models (Clay v0's 768-d and Clay v1.5's 1024-d vectors) are two spaces: no cosine between them
means anything, so they are compared by their neighbours only (:func:`overlap_summary`,
:func:`neighbour_agreement`).

Example
-------
>>> ours, theirs = ChipIndex(db), ChipIndex(db, set="original-2024")  # doctest: +SKIP
>>> agreement(ours, theirs, 2020).layer().to_cog("agreement_2020.tif")  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from wcembed.core.errors import BadParameterError
from wcembed.core.grid import chip_ids, parse_chip_id
from wcembed.core.product import TILE_PX
from wcembed.explore.compute.layers import ChipRaster
from wcembed.explore.compute.vectors import YearVectors, pair_cells, tensor_rows
from wcembed.pipeline.models import MODELS

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
EDGE_BINS = ((0, 0, "crosses one"), (1, 1, "next to one"), (2, 4, "2-4 chips away"), (5, 10**9, "5+ chips away"))
FRACTION_BINS = ((0.0, 0.999999, "valid < 1"), (0.999999, 1.0, "valid = 1"))


@dataclass
class ChipsCompared:
    """Two sets compared chip by chip for one year: the chips both hold, on their grid.

    Attributes
    ----------
    year : int
    sets : tuple of str
        The two sets' names.
    columns, rows : ndarray
        The chips' grid cells (int32).
    chip_size : int
        The grid's chip size in pixels.
    origin : tuple of float
        The grid's north-west corner (degrees).
    """

    year: int
    sets: tuple[str, str]
    columns: np.ndarray
    rows: np.ndarray
    chip_size: int
    origin: tuple[float, float]

    def __len__(self) -> int:
        return len(self.columns)

    def _layer(self, values: np.ndarray, name: str, description: str, vmin: float) -> ChipRaster:
        """Per-chip ``values`` as a whole-region layer (``vmin``..1)."""
        return ChipRaster.from_chips(self.columns, self.rows, values, name=name, description=description, vmin=vmin,
                                     vmax=1.0, cmap="RdYlGn", chip_size=self.chip_size, origin=self.origin)  # fmt: skip

    def _least_first(self, measure: str, values: np.ndarray) -> pd.DataFrame:
        """The chips sorted by ``values``, least first: ``chip_id`` (of the year), ``column``, ``row``, ``measure``."""
        order = np.argsort(values, kind="stable")
        columns, rows = self.columns[order], self.rows[order]
        return pd.DataFrame({"chip_id": chip_ids(self.year, columns, rows), "column": columns, "row": rows,
                             measure: values[order]})  # fmt: skip


@dataclass
class Agreement(ChipsCompared):
    """The cosine between two sets' embeddings of each chip both hold (:class:`ChipsCompared`), and:

    Attributes
    ----------
    cosine : ndarray
        float32, -1..1 (1: the same direction), from float16 unit vectors (within ~1e-3).
    note : str
        Whether the two spaces are comparable (the same weights), in words.
    """

    cosine: np.ndarray
    note: str

    def layer(self) -> ChipRaster:
        """The agreement of every chip as a whole-region layer (0..1 shown; a chip below 0 shows as 0)."""
        a, b = self.sets
        low = float(min(np.percentile(self.cosine, 1), 0.99)) if len(self) else 0.0
        about = f"cosine between each chip's {a} and {b} embeddings of {self.year}. {self.note}".strip()
        return self._layer(self.cosine, f"agreement {self.year}: {a} / {b}", about, low)

    def table(self):
        """The chips from least to most alike: ``chip_id`` (of the year), ``column``, ``row``, ``cosine``."""
        return self._least_first("cosine", self.cosine)


@dataclass
class NeighbourAgreement(ChipsCompared):
    """For each chip two sets hold (:class:`ChipsCompared`), the share of its ``k`` nearest neighbours that both
    sets find at the same places (:func:`neighbour_agreement`): how two models (or two runs) agree where no
    cosine between their vectors means anything.

    Attributes
    ----------
    overlap : ndarray
        float32, 0..1, in steps of ``1 / k`` (1: the same ``k`` neighbours in both sets).
    k : int
        Neighbours compared per chip.
    references : int
        How many chips the neighbours were searched among: all the chips both sets hold, or a random draw
        of them (the same places in both sets).
    """

    overlap: np.ndarray
    k: int
    references: int

    @property
    def among(self) -> str:
        """Among which chips the neighbours were searched, in words."""
        if self.references == len(self):
            return f"all {len(self)} chips both hold"
        return f"{self.references} of the {len(self)} chips both hold, drawn at random"

    def layer(self) -> ChipRaster:
        """The neighbour agreement of every chip as a whole-region layer (0..1)."""
        a, b = self.sets
        about = (f"share of each chip's {self.k} nearest neighbours in {self.year} that {a} and {b} find at the same "
                 f"places, searched among {self.among}.")  # fmt: skip
        return self._layer(self.overlap, f"neighbour agreement {self.year}: {a} / {b}", about, 0.0)

    def table(self):
        """The chips from least to most alike: ``chip_id`` (of the year), ``column``, ``row``, ``overlap``."""
        return self._least_first("overlap", self.overlap)


def _weights_names(weights: set[str]) -> set[str]:
    """The names of an index's weights without their notes (``clay-v0.1 (run here as ...)`` is ``clay-v0.1``)."""
    return {w.split(" (")[0] for w in weights}


def comparable(a, b) -> str:
    """ "" when two indexes' embeddings come from the same weights, else why their cosines mean little."""
    wa, wb = a.weights, b.weights
    same_model = _weights_names(wa) == _weights_names(wb)
    if same_model and "untrained" not in wa | wb:
        return f"both {', '.join(sorted(wa | wb))}: the same model's space"
    return (
        f"NOT ONE SPACE: {a.set} holds {', '.join(sorted(wa))}, {b.set} {', '.join(sorted(wb))}: their cosines "
        "show the mechanism only"
    )


def models_of(index) -> set[str]:
    """The models (``clay-v0``, ``clay-v1.5``) an index's trained weights are of; untrained and unknown weights
    are of none."""
    by_weights = {m.weights_id: m.id for m in MODELS.values()}
    return {by_weights[w] for w in _weights_names(index.weights) if w in by_weights}


def two_models(a, b) -> bool:
    """Whether two indexes hold two models' vectors (two spaces: their cosines mean nothing): vectors of two
    lengths, or trained weights of two models."""
    return a.dim != b.dim or len(models_of(a) | models_of(b)) > 1


def no_cosine(a, b) -> str:
    """Why two indexes of two models' vectors have no agreement (:func:`two_models`)."""
    return (
        f"{a.set} and {b.set} hold two models' vectors ({a.dim}-d, {b.dim}-d): no cosine between them; compare "
        "their neighbours (the overlap of each chip's nearest in each set)"
    )


def agreement(a, b, year: int, vectors: tuple | None = None) -> Agreement:
    """The cosine between the embeddings of ``a`` and ``b`` (two :class:`~wcembed.explore.data.index.ChipIndex` of
    one database, e.g. two sets) of each chip of ``year`` that both hold; ``vectors``: the two sets'
    :class:`~wcembed.explore.compute.vectors.YearVectors` of the year when they are at hand (else they are loaded)."""
    if two_models(a, b):
        raise BadParameterError(no_cosine(a, b))
    va, vb = vectors or (YearVectors.load(a, year), YearVectors.load(b, year))
    ia, ib = pair_cells(va, vb)
    apart = va.pair_distance(ia, vb, ib)
    cosine = np.clip(1 - apart * apart / 2, -1, 1).astype(np.float32)
    return Agreement(year, (a.set, b.set), va.columns[ia], va.rows[ia], a.chip_size, a.origin, cosine=cosine,
                     note=comparable(a, b))  # fmt: skip


EXACT_CHIPS = 4096
"""Up to this many chips in both sets, :func:`neighbour_agreement` searches each chip's neighbours among all of
them (exact); beyond, among :data:`REFERENCE_CHIPS` drawn at random."""
REFERENCE_CHIPS = 512
"""The chips drawn at random among which :func:`neighbour_agreement` searches the neighbours of a set of more than
:data:`EXACT_CHIPS` chips: its cost grows with their number (a CONUS year of a 768-d and a 1024-d set, 538,076
chips: about 10 s on two cores with 512)."""
NEIGHBOUR_CHUNK_ROWS = 2048
"""Chips whose similarities to the references are computed at once (a float32 temporary of this many rows)."""


def neighbour_agreement(
    va: YearVectors, vb: YearVectors, sets: tuple[str, str], *, k: int = 10, references: int = REFERENCE_CHIPS,
    exact: int = EXACT_CHIPS, seed: int = 0,
) -> NeighbourAgreement:  # fmt: skip
    """For each chip of a year that two sets hold (their unit vectors ``va`` and ``vb``, of one model or two),
    the share of its ``k`` nearest neighbours (by cosine, itself left out) that the two sets find at the same
    places, as a :class:`NeighbourAgreement`.

    The neighbours are searched among all the chips both hold where they are at most ``exact``, else among
    ``references`` of them drawn at random (``seed``), the same places in both sets: one matrix product a set,
    ``N x references``, in chunks of :data:`NEIGHBOUR_CHUNK_ROWS`. Two models' vectors need no common length.

    >>> v0, v15 = YearVectors.load(ours, 2020), YearVectors.load(theirs, 2020)  # doctest: +SKIP
    >>> neighbour_agreement(v0, v15, ("wcembed", "wcembed-clay-v1-5"), k=10).layer()  # doctest: +SKIP
    """
    ia, ib = pair_cells(va, vb)
    n = len(ia)
    if n <= k:
        raise BadParameterError(f"{n} chips of {va.year} in both {sets[0]} and {sets[1]}: more than k = {k} needed")
    ref = np.arange(n) if n <= exact else np.sort(np.random.default_rng(seed).choice(n, min(references, n), False))
    if len(ref) <= k:
        raise BadParameterError(f"{len(ref)} reference chips: more than k = {k} needed")
    import torch  # deferred: torch loads only where a model or a product runs

    ref_of = np.full(n, -1, np.int64)  # each pair's position among the references (-1: not one)
    ref_of[ref] = np.arange(len(ref))
    spaces = []  # each set's vectors, its rows of the pairs, and its references (D x R, float32)
    for v, rows in ((va, ia), (vb, ib)):
        x = torch.from_numpy(v.vectors)
        spaces.append((x, rows, x[rows[ref]].float().T.contiguous()))
    overlap = np.empty(n, np.float32)
    for s in range(0, n, NEIGHBOUR_CHUNK_ROWS):  # memory: a chunk's similarities and neighbours, whatever k
        chunk = slice(s, s + NEIGHBOUR_CHUNK_ROWS)
        near_a, near_b = (_nearest(x, rows[chunk], refs, ref_of[chunk], k) for x, rows, refs in spaces)
        found_a = np.zeros((len(near_a), len(ref)), bool)  # each chip's neighbours in a, as a mask of references
        np.put_along_axis(found_a, near_a, True, axis=1)
        overlap[chunk] = np.take_along_axis(found_a, near_b, axis=1).sum(axis=1) / np.float32(k)
    return NeighbourAgreement(va.year, tuple(sets), va.columns[ia], va.rows[ia], va.chip_size, va.origin,
                              overlap=overlap, k=k, references=len(ref))  # fmt: skip


def _nearest(x, rows: np.ndarray, refs, ref_of: np.ndarray, k: int) -> np.ndarray:
    """For the rows ``rows`` of unit vectors ``x`` (a tensor), the positions among the references (``refs``,
    ``(D, R)`` float32) of their ``k`` most similar, each row itself left out (``ref_of``: its own position
    among them, or -1), as ``(len(rows), k)``."""
    import torch  # deferred: torch loads only where a model or a product runs

    sims = tensor_rows(x, rows).float() @ refs
    own = np.flatnonzero(ref_of >= 0)
    sims[own, ref_of[own]] = -torch.inf
    return torch.topk(sims, k, dim=1, sorted=False).indices.numpy()


def neighbour_overlap(a, b, chip: str, k: int = 10, both: set | None = None) -> float:
    """The share (0..1) of the ``k`` nearest neighbours (the same year, the chip itself left out) that the two
    indexes find at the same places, for a chip both hold; ``both``: the (column, row) places both sets hold,
    within which the neighbours are counted (a chip one set lacks is no disagreement)."""
    year = parse_chip_id(chip)[0]
    nearest = []
    for index in (a, b):
        want, found = k, []
        while True:  # ask for more where the set holds chips the other lacks
            res = index.by_chip(chip, want, year=year)
            found = [p for p in zip(res["column"], res["row"], strict=True) if both is None or p in both]
            if len(found) >= k or len(res) < want:
                break
            want *= 2
        nearest.append(set(found[:k]))
    return len(nearest[0] & nearest[1]) / k


def edge_distance(columns: np.ndarray, rows: np.ndarray, chip_size: int) -> np.ndarray:
    """Each chip's distance to the nearest 1° tile edge in chips: 0 when it crosses one, 1 when no whole chip
    lies between it and the edge, 2 with one between, ... (the grid's origin is on a tile corner)."""

    def along(cells: np.ndarray) -> np.ndarray:
        start = cells.astype(np.int64) * chip_size
        end = start + chip_size
        crosses = start // TILE_PX != (end - 1) // TILE_PX
        gap = np.minimum(start % TILE_PX, (TILE_PX - end % TILE_PX) % TILE_PX)
        return np.where(crosses, 0, gap // chip_size + 1)

    return np.minimum(along(columns), along(rows))


def summary(agr: Agreement, a, b, *, sample: int = 200, k: int = 10, seed: int = 0):
    """A table of the agreement: its count, median and :data:`QUANTILES` over all chips, by distance to a
    tile edge (:func:`edge_distance`) and by valid fraction (of ``a``), and the median overlap of the ``k``
    nearest neighbours of ``sample`` random chips (:func:`neighbour_overlap`)."""

    if not len(agr):
        raise BadParameterError(f"no chip of {agr.year} is in both {agr.sets[0]} and {agr.sets[1]}")
    edge = edge_distance(agr.columns, agr.rows, agr.chip_size)
    fraction = _valid_fraction(a, agr)
    groups = [("all chips", np.ones(len(agr), bool))]
    groups += [(f"tile edge: {label}", (edge >= lo) & (edge <= hi)) for lo, hi, label in EDGE_BINS]
    groups += [(label, (fraction > lo) & (fraction <= hi)) if lo else (label, fraction <= hi)
               for lo, hi, label in FRACTION_BINS]  # fmt: skip
    out = []
    for name, mask in groups:
        c = agr.cosine[mask]
        row = {"chips": name, "n": int(mask.sum())}
        row |= {f"q{int(q * 100):02d}": float(np.quantile(c, q)) if len(c) else np.nan for q in QUANTILES}
        out.append(row)
    table = pd.DataFrame(out)
    table.attrs["neighbour_overlap"] = _sampled_overlap(a, b, agr.year, agr.columns, agr.rows, sample, k, seed)
    table.attrs["note"] = agr.note
    return table


def _sampled_overlap(a, b, year: int, columns, rows, sample: int, k: int, seed: int) -> dict:
    """The neighbour overlap of ``sample`` random chips of ``year`` among those both sets hold (``columns``,
    ``rows``): ``k``, ``chips``, ``median``, ``mean``, ``in_both``."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(columns), min(sample, len(columns)), replace=False)
    ids = chip_ids(year, columns[picks], rows[picks])
    both = set(zip(columns.tolist(), rows.tolist(), strict=True))
    overlaps = [neighbour_overlap(a, b, str(c), k, both) for c in ids]
    return {"k": k, "chips": len(ids), "median": float(np.median(overlaps)), "mean": float(np.mean(overlaps)),
            "in_both": len(columns)}  # fmt: skip


def _places(index, year: int) -> pd.MultiIndex:
    """The (column, row) of every chip of ``year`` an index holds."""
    columns, rows = [np.zeros(0, np.int32)], [np.zeros(0, np.int32)]
    for batch in index.batches(["column", "row"], year=year):
        columns.append(batch["column"].to_numpy())
        rows.append(batch["row"].to_numpy())
    return pd.MultiIndex.from_arrays([np.concatenate(columns), np.concatenate(rows)])


def overlap_summary(a, b, year: int, *, sample: int = 200, k: int = 10, seed: int = 0) -> dict:
    """Two sets compared by their neighbours only (sets of two models, whose cosines mean nothing): the overlap
    of the ``k`` nearest neighbours of ``sample`` random chips of ``year`` among those both hold
    (:func:`neighbour_overlap`), as :func:`summary`'s ``neighbour_overlap``."""
    places = [_places(index, year) for index in (a, b)]
    both = places[0].intersection(places[1]).sort_values()
    if not len(both):
        raise BadParameterError(f"no chip of {year} is in both {a.set} and {b.set}")
    columns, rows = (both.get_level_values(i).to_numpy(np.int32) for i in (0, 1))
    return _sampled_overlap(a, b, year, columns, rows, sample, k, seed)


def _valid_fraction(index, agr: Agreement) -> np.ndarray:
    """The valid fraction ``index`` recorded for each chip of the agreement (1 where it has none)."""

    got = [b.to_pandas() for b in index.batches(["column", "row", "valid_fraction"], year=agr.year)]
    frame = pd.concat(got, ignore_index=True).set_index(["column", "row"])["valid_fraction"]
    keys = pd.MultiIndex.from_arrays([agr.columns, agr.rows])
    return frame.reindex(keys).fillna(1.0).to_numpy(np.float32)
