"""The search: what a click does, the query and its results, and the same search in the set beside.

:class:`SearchModel` holds the search settings (``k``, ``mode``, ``spread``), the last search
(:attr:`SearchModel.last`, a :class:`Search`: a chip, examples, or a chip's change) and its results; the
query chips' footprints are derived from it (:attr:`SearchModel.query`), never kept apart. It searches in
the scope's set (and, with a set beside, in that one too, in a thread: LanceDB searches release the GIL).

Example
-------
>>> search = SearchModel(scope, k=10)  # doctest: +SKIP
>>> results, line = search.find(Search("chip", ("2020-1156-0288",)))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
from traitlets import Any as AnyTrait
from traitlets import HasTraits, Instance, Unicode

from wcembed.core.checks import MAX_K, check_k
from wcembed.core.grid import chip_id, parse_chip_id
from wcembed.core.product import CRS
from wcembed.explore.data.index import DIVERSE_CHIPS, ChipIndex, query_vector
from wcembed.explore.data.table import DEFAULT_SET
from wcembed.explore.state.scope import CHANGE_YEARS, Scope
from wcembed.explore.state.traits import Checked, flag, one_of

MODES = ("search", "positive", "negative", "changed like")
"""What a click does: search from the chip, label it (and search with the labels), or find chips that changed
like it."""
LIMITS = {"k": (1, MAX_K), "opacity": (0.0, 1.0)}
"""The ranges of the numeric settings (a view's controls take theirs from here)."""


@dataclass(frozen=True)
class Search:
    """What the results were searched from: a chip, examples, or a chip's change."""

    how: str  # "chip", "examples" or "changed like"
    chips: tuple[str, ...]
    positives: tuple[str, ...] = ()
    negatives: tuple[str, ...] = ()
    note: str = ""

    @property
    def examples(self) -> tuple[str, ...]:
        """The examples, ``+``/``-`` prefixed (a layer key's source)."""
        return tuple(f"+{c}" for c in self.positives) + tuple(f"-{c}" for c in self.negatives)

    @property
    def places(self) -> list[str]:
        """Chip ids of the change's first year at the places of the query chips (a change is of a place)."""
        return places(self.chips)


def places(chips: Sequence[str]) -> list[str]:
    """Chip ids of the change's first year at the places of ``chips``."""
    out = []
    for chip in chips:
        _, column, row = parse_chip_id(chip)
        out.append(chip_id(CHANGE_YEARS[0], column, row))
    return out


class SearchModel(HasTraits):
    """The search settings, the last search and its results (in the set shown and the set beside).

    Attributes
    ----------
    k, mode, spread
        Settings (:data:`LIMITS`, :data:`MODES`, bool); a bad value raises
        :class:`~wcembed.core.errors.BadParameterError`.
    last : Search or None
        What the results were searched from.
    results : GeoDataFrame or None
        The results (``rank``, ``chip_id``, ``distance``, footprint).
    pair_years : tuple of int or None
        The two years of the results when they are changes, else None.
    results_other : GeoDataFrame or None
        The same search in the set beside.
    compare_line : str
        How much the two sets agree on the query chip (or why there is nothing to compare).
    """

    k = Checked(check_k, 10)
    mode = Checked(lambda m: one_of(m, MODES, "mode"), "search")
    spread = Checked(lambda s: flag(s, "spread"), False)
    last = Instance(Search, allow_none=True)
    results = AnyTrait(None, allow_none=True)
    pair_years = AnyTrait(None, allow_none=True)
    results_other = AnyTrait(None, allow_none=True)
    compare_line = Unicode("")

    def __init__(self, scope: Scope, k: int = 10) -> None:
        super().__init__(k=k)
        self.scope = scope
        self.vector: np.ndarray | None = None  # the query chip's vector, when the last search had it
        self._pool: ThreadPoolExecutor | None = None  # for the set beside, made when first needed

    @property
    def diverse(self) -> int:
        """The spacing of results in chips while ``spread`` is on (:data:`DIVERSE_CHIPS`), else 0."""
        return DIVERSE_CHIPS if self.spread else 0

    @property
    def query(self):
        """The query chip(s) of the last search with their footprints (GeoDataFrame), or None."""
        if self.last is None:
            return None
        index, chips = self.scope.index, list(self.last.chips)
        return gpd.GeoDataFrame({"chip_id": chips}, geometry=[index.footprint(c) for c in chips], crs=CRS)

    @property
    def query_chip(self) -> str | None:
        """The (first) query chip's id, or None before the first search."""
        return None if self.last is None else self.last.chips[0]

    def query_vector(self, search: Search) -> np.ndarray:
        """The vector a search is made with (the query chip's, or the examples' as by_examples forms it)."""
        index = self.scope.index
        if search.how != "examples":
            return index.vectors(list(search.chips))[0]
        negatives = index.vectors(list(search.negatives)) if search.negatives else None
        return query_vector(index.vectors(list(search.positives)), negatives)

    # ------------------------------------------------------------------ searching
    def find(self, search: Search, vector: np.ndarray | None = None):
        """The results of ``search`` in the set shown and the status line that says what they are; with a set
        beside, its search is started (:meth:`compare` ends it). Sets no trait."""
        scope = self.scope
        pending = None
        if scope.other is not None and search.how != "changed like":
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="compare-set")
            pending = self._pool.submit(_other_search, scope.other, search, self.k, scope.year, self.diverse)
        if search.how == "chip" and vector is None:
            vector = self.query_vector(search)
        self.vector = vector
        results = _search_in(scope.index, search, self.k, scope.year, self.diverse, vector)
        spread = f"; spread out ≥ {DIVERSE_CHIPS} chips apart" if self.spread else ""
        if self.spread and len(results) < self.k:
            spread += f" (only {len(results)} chips that far apart)"
        of = f" in {scope.index.set}" if scope.index.set != DEFAULT_SET or scope.other is not None else ""
        p, n = len(search.positives), len(search.negatives)
        line = f"{len(results)} nearest of {search.chips[0]}{of} (positives {p}, negatives {n}){search.note}{spread}"
        return results, line, pending

    def changed_like(self, chips: Sequence[str], years: tuple[int, int]):
        """The chips whose change between ``years`` is most like that of ``chips``: the results (``chip_id`` of
        the year shown, ``rank``, ``score``, ``distance`` = 1 - score, footprint), the "changed like" layer's
        raster (every chip) and the status line. Sets no trait."""
        scope = self.scope
        raster, top = scope.change_pairs(years).like(places(chips), k=self.k)
        year = scope.year if scope.year in years else years[0]
        ids = list(top[f"chip_{year}"])
        results = gpd.GeoDataFrame(
            {"chip_id": ids, "rank": range(1, len(ids) + 1), "score": top["score"], "distance": 1 - top["score"]},
            geometry=[scope.index.footprint(c) for c in ids],
            crs=CRS,
        )
        line = f"{len(results)} chips changed most like {', '.join(chips)} between {years[0]} and {years[1]}"
        return results, raster, line

    def compare(self, pending: Future | None = None) -> None:
        """With a set beside: the last search in it (:attr:`results_other`; ``pending``: its future when it was
        started beside the search) and how much the two sets agree on the query chip (:attr:`compare_line`)."""
        search, other = self.last, self.scope.other
        if other is None or search is None or search.how == "changed like":
            self.results_other, self.compare_line = None, ""
            return
        found = pending.result() if pending is not None else _other_search(
            other, search, self.k, self.scope.year, self.diverse)  # fmt: skip
        if isinstance(found, str):
            self.results_other, self.compare_line = None, found
            return
        results_other, b = found
        chip, index = search.chips[0], self.scope.index
        if self.scope.two_models:  # two spaces: the neighbours are compared, never the vectors
            line = f"{chip}: {index.set} and {other.set} are two models' spaces (no cosine between them)"
        else:
            a = self.vector if search.how == "chip" and self.vector is not None else index.vectors([chip])[0]
            cosine = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))
            line = f"{chip}: cosine {cosine:.3f} between its {index.set} and {other.set} embeddings"
        if search.how == "chip" and self.results is not None:  # the two searches, place by place
            both = [set(zip(r["column"], r["row"], strict=True)) for r in (self.results, results_other)]
            line += f"; {len(both[0] & both[1])} of the {self.k} nearest in common"
        self.results_other, self.compare_line = results_other, line

    def clear(self) -> None:
        """No search (the place has no chip in the year shown)."""
        self.last = self.results = self.pair_years = None


def _other_search(other: ChipIndex, search: Search, k: int, year: int, diverse: int):
    """``search`` in another set's index: its results and its vector of the query chip, or why there is nothing
    to compare (a chip the set lacks). Touches no trait: it may run in a thread."""
    chip = search.chips[0]
    missing = other.missing(list(search.chips if search.how == "chip" else search.positives + search.negatives))
    if missing:
        return f"{other.set} has no chip {missing[0]}: nothing to compare"
    vector = other.vectors([chip])[0]  # the other set's vector of the chip: its search needs no second lookup
    return _search_in(other, search, k, year, diverse, vector), vector


def _search_in(index: ChipIndex, search: Search, k: int, year: int, diverse: int, vector: np.ndarray | None):
    """The results of ``search`` in ``index``: the nearest of ``vector`` (the query chip's in that index) for a
    chip search, of the examples' vectors for an examples search; the query chips left out."""
    if search.how == "chip":
        return index.by_vector(vector, k, year=year, exclude=list(search.chips), diverse=diverse)
    return index.by_examples(list(search.positives), list(search.negatives), k, year=year, diverse=diverse)
