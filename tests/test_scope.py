"""The scope of the explorer's state: the year, the set shown and the set beside, each with its index as an
observable trait, on a real LanceDB database of two sets."""

from __future__ import annotations

import numpy as np
import pytest
from builders import synthetic_index
from wcembed.core.errors import BadParameterError
from wcembed.explore.data.ingest import ingest
from wcembed.explore.state.scope import Scope


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("scope")
    first = synthetic_index(root / "a", lambda y, c, r: np.random.default_rng([c, r, y]).normal(size=8))
    synthetic_index(root / "b", lambda y, c, r: np.random.default_rng([c, r, y, 1]).normal(size=8))
    ingest(root / "b" / "emb", first.db, set="other")
    return first


def test_the_indexes_follow_the_set_names_and_are_told(index):
    scope = Scope(index, year=2021)
    told = []
    scope.observe(lambda change: told.append((change["name"], getattr(change["new"], "set", change["new"]))))
    assert scope.sets == ["wcembed", "other"] and scope.other is None
    scope.beside = "other"
    assert scope.other.set == "other" and ("other", "other") in told
    scope.name = "other"  # the set beside is now the one shown: none is beside it
    assert (scope.index.set, scope.beside, scope.other) == ("other", "", None)
    # the indexes change before the names are told: a view told of a name finds its index in place
    assert [name for name, _ in told] == ["other", "beside", "other", "beside", "index", "name"]


def test_a_set_is_never_beside_itself_and_an_unknown_set_is_refused(index):
    scope = Scope(index)
    with pytest.raises(BadParameterError, match="wcembed is the set shown"):
        scope.beside = "wcembed"
    with pytest.raises(BadParameterError, match="unknown embedding set 'nope'"):
        scope.name = "nope"
    with pytest.raises(BadParameterError, match="2019"):
        scope.year = 2019
    assert (scope.name, scope.beside, scope.year) == ("wcembed", "", 2020)


def test_vectors_are_loaded_once_and_let_go_with_their_set(index):
    scope = Scope(index)
    first = scope.vectors()
    assert scope.vectors(2020) is first and scope.vectors(2021) is not first
    scope.beside = "other"
    theirs = scope.vectors(2020, "other")
    assert scope.vectors(2020, "other") is theirs and not np.array_equal(theirs.vectors, first.vectors)
    pairs = scope.change_pairs()
    assert scope.change_pairs() is pairs
    scope.beside = ""  # neither shown nor beside: its vectors go
    assert scope.vectors(2020, "other") is not theirs
    assert scope.two_years


def test_at_most_two_years_of_vectors_are_held_the_least_recently_used_let_go_first(index):
    """A change holds the two years of the set shown; the agreement a year of each set: the year not needed is
    let go before the other set's is read (and the change pairs made of it with it)."""
    scope = Scope(index)
    scope.beside = "other"
    pairs = scope.change_pairs()
    assert scope.held == [("wcembed", 2020), ("wcembed", 2021)]
    ours = scope.vectors(2020)  # used last: kept when the set beside is read
    theirs = scope.vectors(2020, "other")
    assert scope.held == [("other", 2020), ("wcembed", 2020)]
    assert scope.vectors(2020) is ours and scope.vectors(2020, "other") is theirs
    assert scope.change_pairs() is not pairs  # made again: its 2021 was let go
    assert scope.held == [("wcembed", 2020), ("wcembed", 2021)] and scope.vectors(2020) is ours


def test_the_agreement_is_made_from_the_vectors_held_and_never_of_a_set_with_itself(index):
    scope = Scope(index)
    with pytest.raises(BadParameterError, match="no set beside"):
        scope.agreement()
    with pytest.raises(BadParameterError, match="wcembed is the set shown"):
        scope.agreement(beside="wcembed")
    assert scope.held == []  # refused before any vectors are read
    scope.change_pairs()
    scope.beside = "other"
    agreed = scope.agreement(2021)
    assert scope.held == [("other", 2021), ("wcembed", 2021)]  # the shown set's 2020 let go first
    assert agreed.sets == ("wcembed", "other") and len(agreed) and (np.abs(agreed.cosine) <= 1).all()


def test_the_neighbour_agreement_is_made_from_the_vectors_held_and_checks_k(index):
    scope = Scope(index)
    with pytest.raises(BadParameterError, match="no set beside"):
        scope.neighbour_agreement()
    scope.beside = "other"
    with pytest.raises(BadParameterError, match="k"):
        scope.neighbour_agreement(k=0)
    assert scope.held == []  # refused before any vectors are read
    agreed = scope.neighbour_agreement(2021, k=4)
    assert scope.held == [("other", 2021), ("wcembed", 2021)]
    assert agreed.sets == ("wcembed", "other") and agreed.k == 4 and len(agreed) == agreed.references
    assert ((agreed.overlap >= 0) & (agreed.overlap <= 1)).all()
