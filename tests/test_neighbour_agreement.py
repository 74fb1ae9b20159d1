"""The neighbour agreement of two sets: for each chip both hold, the share of its k nearest neighbours the two
find at the same places, checked against a brute-force count over the same unit vectors."""

from __future__ import annotations

import numpy as np
import pytest
from wcembed.core.errors import BadParameterError
from wcembed.explore.compute.compare import neighbour_agreement
from wcembed.explore.compute.vectors import YearVectors

COLUMNS, ROWS = np.meshgrid(np.arange(1150, 1160), np.arange(280, 286))
COLUMNS, ROWS = COLUMNS.ravel(), ROWS.ravel()  # 60 chips


def year_vectors(matrix: np.ndarray, keep=slice(None)) -> YearVectors:
    return YearVectors.from_matrix(2020, COLUMNS[keep], ROWS[keep], matrix[keep])


def brute_force(a: YearVectors, b: YearVectors, k: int, references=None) -> np.ndarray:
    """The overlap of each chip's k nearest (itself left out) among the chips both hold (or those of them at
    the positions ``references``), in float64, in the order of ``a``."""
    in_b = set(zip(b.columns, b.rows, strict=True))
    both = [cell for cell in zip(a.columns, a.rows, strict=True) if cell in in_b]
    ref = np.arange(len(both)) if references is None else np.asarray(references)
    nearest = []
    for v in (a, b):
        at = {cell: i for i, cell in enumerate(zip(v.columns, v.rows, strict=True))}
        x = v.vectors[[at[c] for c in both]].astype(np.float64)
        sims = x @ x[ref].T
        sims[ref, np.arange(len(ref))] = -np.inf  # a reference is not its own neighbour
        nearest.append(np.argsort(-sims, axis=1)[:, :k])
    return np.array([len(set(p) & set(q)) / k for p, q in zip(*nearest, strict=True)])


def test_one_space_in_two_dimensions_agrees_everywhere():
    """A set and an orthogonal map of it into more dimensions (two models' lengths, the same geometry)."""
    x = np.random.default_rng(0).normal(size=(60, 8))
    turn = np.linalg.qr(np.random.default_rng(1).normal(size=(12, 12)))[0][:, :8]  # 8-d -> 12-d, angles kept
    agreed = neighbour_agreement(year_vectors(x), year_vectors(x @ turn.T), ("v0", "v15"), k=5)
    assert len(agreed) == 60 and agreed.references == 60 and agreed.among == "all 60 chips both hold"
    assert (agreed.overlap == 1.0).all()
    layer = agreed.layer()
    assert layer.name == "neighbour agreement 2020: v0 / v15" and (layer.vmin, layer.vmax) == (0.0, 1.0)
    assert "5 nearest neighbours" in layer.description


def test_unrelated_spaces_agree_as_brute_force_counts_only_over_the_chips_both_hold():
    a = year_vectors(np.random.default_rng(2).normal(size=(60, 8)), slice(0, 55))
    b = year_vectors(np.random.default_rng(3).normal(size=(60, 12)), slice(4, 60))
    agreed = neighbour_agreement(a, b, ("a", "b"), k=4)
    assert len(agreed) == 51 and agreed.references == 51
    np.testing.assert_array_equal(agreed.overlap, brute_force(a, b, 4))
    assert agreed.overlap.mean() < 0.3  # chance: 4 of 50
    table = agreed.table()
    assert list(table.columns) == ["chip_id", "column", "row", "overlap"] and table["overlap"].is_monotonic_increasing


def test_a_chip_is_not_its_own_neighbour():
    """With k one less than the chips, every other chip is a neighbour in both sets, whatever their spaces."""
    a = year_vectors(np.random.default_rng(4).normal(size=(60, 8)))
    b = year_vectors(np.random.default_rng(5).normal(size=(60, 8)))
    assert (neighbour_agreement(a, b, ("a", "b"), k=59).overlap == 1.0).all()


def test_many_chips_are_compared_among_references_drawn_at_random():
    x = np.random.default_rng(6).normal(size=(60, 8))
    a, b = year_vectors(x), year_vectors(x + np.random.default_rng(7).normal(scale=0.5, size=x.shape))
    agreed = neighbour_agreement(a, b, ("a", "b"), k=3, references=30, exact=20, seed=5)
    assert agreed.references == 30 and agreed.among == "30 of the 60 chips both hold, drawn at random"
    drawn = np.sort(np.random.default_rng(5).choice(60, 30, replace=False))  # the draw the seed gives
    np.testing.assert_allclose(agreed.overlap, brute_force(a, b, 3, drawn), atol=1e-6)
    again = neighbour_agreement(a, b, ("a", "b"), k=3, references=30, exact=20, seed=5)
    np.testing.assert_array_equal(agreed.overlap, again.overlap)  # the same draw: reproducible
    same = neighbour_agreement(a, a, ("a", "a"), k=3, references=30, exact=20)
    assert (same.overlap == 1.0).all() and 0.2 < agreed.overlap.mean() < 1.0


def test_too_few_chips_for_k_is_refused():
    a = year_vectors(np.random.default_rng(8).normal(size=(60, 8)), slice(0, 5))
    with pytest.raises(BadParameterError, match=r"5 chips of 2020 in both a and b: more than k = 5 needed"):
        neighbour_agreement(a, a, ("a", "b"), k=5)
