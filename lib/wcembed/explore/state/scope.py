"""What the explorer works on: the year, the embedding set, and the set beside it, each with its index.

:class:`Scope` is an observable model: :attr:`Scope.index` and :attr:`Scope.other` are traits that follow the
set names, so a view or another model observes them. The year's unit vectors of a set
(:class:`~wcembed.explore.compute.vectors.YearVectors`) and the change pairs are loaded once, when first
needed, and let go when their set is neither shown nor beside (two models' vectors are never compared by cosine:
only their neighbours are). At most :data:`HELD_YEARS` of them are held at once, the least recently used let go
first.

Example
-------
>>> scope = Scope(ChipIndex("outputs/lancedb"), year=2020)  # doctest: +SKIP
>>> scope.beside = "original-2024"  # doctest: +SKIP
>>> scope.other.set  # doctest: +SKIP
'original-2024'
"""

from __future__ import annotations

from traitlets import HasTraits, Instance, Unicode, observe, validate

from wcembed.core.checks import check_k
from wcembed.core.errors import BadParameterError
from wcembed.core.product import YEARS, check_year
from wcembed.explore.compute.compare import (
    Agreement,
    NeighbourAgreement,
    agreement,
    neighbour_agreement,
    no_cosine,
    two_models,
)
from wcembed.explore.compute.vectors import ChangePairs, YearVectors
from wcembed.explore.data.index import ChipIndex
from wcembed.explore.data.table import DEFAULT_SET, sets_in
from wcembed.explore.state.traits import Checked, one_of

CHANGE_YEARS = (YEARS[0], YEARS[1])
"""The two years a change is between."""

HELD_YEARS = 2
"""The most years of unit vectors (of any sets) held at once: every layer needs at most two (a change, the two
years of the set shown; an agreement, a year of each set), and two CONUS years are 1.65 GB at 768-d (1.93 GB for
a 768-d and a 1024-d set), so that the explorer stays within 4 GiB with two sets. Another is read from its kept
file (0.1-1 s) when needed again."""


class Scope(HasTraits):
    """The year and the embedding sets in play, with their indexes.

    Attributes
    ----------
    year : int
        The year searched and shown (2020 or 2021).
    name : str
        The embedding set searched and shown (one of the database's, :func:`~wcembed.explore.data.table.sets_in`).
    beside : str
        Another set of the database to compare with ("" for none); never the set shown.
    index : ChipIndex
        The index of :attr:`name`.
    other : ChipIndex or None
        The index of :attr:`beside`.
    """

    year = Checked(check_year, 2020)
    name = Unicode(DEFAULT_SET)
    beside = Unicode("")
    index = Instance(ChipIndex)
    other = Instance(ChipIndex, allow_none=True)

    def __init__(self, index: ChipIndex, year: int = 2020) -> None:
        self._indexes = {index.set: index}  # set -> ChipIndex of the same database, opened once
        self._vectors: dict = {}  # (set, year) -> YearVectors
        self._pairs: dict = {}  # (set, (year, year)) -> ChangePairs
        self._spaces: dict = {}  # (set, set beside) -> whether they are two models' (read from their files once)
        super().__init__(index=index, name=index.set, year=year)

    @property
    def sets(self) -> list[str]:
        """The embedding sets of the database."""
        return sets_in(self.index.db)

    def index_of(self, name: str) -> ChipIndex:
        """The :class:`~wcembed.explore.data.index.ChipIndex` of a set of the database (opened once)."""
        if name not in self._indexes:
            self._indexes[name] = ChipIndex(self.index.db, set=name)
        return self._indexes[name]

    @validate("name")
    def _a_set(self, proposal) -> str:
        return one_of(proposal["value"], self.sets, "embedding set")

    @validate("beside")
    def _another_set(self, proposal) -> str:
        return proposal["value"] and self._set_beside(proposal["value"])

    def _set_beside(self, name: str) -> str:
        """``name`` if it is a set of the database other than the one shown, else :class:`BadParameterError`."""
        one_of(name, self.sets, "embedding set")
        if name == self.name:
            raise BadParameterError(f"{name} is the set shown: compare it with another set")
        return name

    @observe("name")
    def _set_changed(self, change: dict) -> None:
        """Another set shown: its index; a set beside that is now the one shown is let go, and so are the
        vectors of sets neither shown nor beside."""
        if self.beside == change["new"]:
            self.beside = ""
        self.index = self.index_of(change["new"])
        self._let_go()

    @observe("beside")
    def _beside_changed(self, change: dict) -> None:
        self.other = self.index_of(change["new"]) if change["new"] else None
        self._let_go()

    @property
    def two_models(self) -> bool:
        """Whether the set beside holds another model's vectors (two spaces: compared by their neighbours, never
        by cosine; :func:`~wcembed.explore.compute.compare.two_models`, asked once for each pair of sets)."""
        return self.other is not None and self._two_models(self.beside)

    def _two_models(self, beside: str) -> bool:
        key = (self.name, beside)
        if key not in self._spaces:
            self._spaces[key] = two_models(self.index, self.index_of(beside))
        return self._spaces[key]

    def _let_go(self) -> None:
        keep = {self.name, self.beside}  # an agreement layer may need the set beside's
        self._vectors = {k: v for k, v in self._vectors.items() if k[0] in keep}
        self._pairs = {k: v for k, v in self._pairs.items() if k[0] in keep}

    @property
    def held(self) -> list[tuple[str, int]]:
        """The (set, year) whose unit vectors are held in memory."""
        return sorted(self._vectors)

    def vectors(self, year: int | None = None, name: str | None = None) -> YearVectors:
        """The year's unit vectors (default: the year shown) of a set (default: the set shown), loaded from
        its index once."""
        year = self.year if year is None else check_year(year)
        index = self.index if name is None else self.index_of(name)
        key = (index.set, year)
        held = self._vectors.pop(key, None)
        if held is None:
            while len(self._vectors) >= HELD_YEARS:  # let go before reading: the peak holds HELD_YEARS at most
                self._let_go_of(next(iter(self._vectors)))
            held = YearVectors.load(index, year)
        self._vectors[key] = held  # the most recently used last
        return held

    def _let_go_of(self, key: tuple[str, int]) -> None:
        """Let go of a (set, year)'s unit vectors and the change pairs made of them."""
        del self._vectors[key]
        self._pairs = {k: v for k, v in self._pairs.items() if not (k[0] == key[0] and key[1] in k[1])}

    def agreement(self, year: int | None = None, beside: str | None = None) -> Agreement:
        """The cosine between the set shown's and another set's (default: the set beside) embedding of each chip
        of a year (default: the year shown) that both hold, from the unit vectors held here (at most
        :data:`HELD_YEARS`: the set shown's other year is let go first).

        >>> scope.agreement().layer()  # doctest: +SKIP
        """
        year, beside = self._compared(year, beside)
        if self._two_models(beside):  # refused before any vectors are read
            raise BadParameterError(no_cosine(self.index, self.index_of(beside)))
        mine = self.vectors(year)
        return agreement(self.index, self.index_of(beside), year, (mine, self.vectors(year, beside)))

    def neighbour_agreement(self, year: int | None = None, beside: str | None = None, k: int = 10
                            ) -> NeighbourAgreement:  # fmt: skip
        """For each chip of a year (default: the year shown) that the set shown and another set (default: the
        set beside) hold, the share of its ``k`` nearest neighbours the two find at the same places
        (:func:`~wcembed.explore.compute.compare.neighbour_agreement`), from the unit vectors held here: for two
        models' sets as for one model's.

        >>> scope.neighbour_agreement(k=10).layer()  # doctest: +SKIP
        """
        year, beside = self._compared(year, beside)
        k = check_k(k)
        mine = self.vectors(year)
        return neighbour_agreement(mine, self.vectors(year, beside), (self.name, beside), k=k)

    def _compared(self, year: int | None, beside: str | None) -> tuple[int, str]:
        """The year (default: shown) and the set (default: beside) an agreement is of, checked."""
        beside = self.beside if beside is None else self._set_beside(beside)
        if not beside:
            raise BadParameterError("no set beside the set shown: choose one to compare with")
        return (self.year if year is None else check_year(year)), beside

    def change_pairs(self, years: tuple[int, int] = CHANGE_YEARS) -> ChangePairs:
        """The chips of two years of the set shown, paired for change queries, made once."""
        key = (self.index.set, tuple(years))
        if key not in self._pairs:
            self._pairs[key] = ChangePairs(self.vectors(years[0]), self.vectors(years[1]))
        return self._pairs[key]

    @property
    def two_years(self) -> bool:
        """Whether the set shown holds both years (change layers need them)."""
        return len(self.index.years) > 1
