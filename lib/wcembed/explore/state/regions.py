"""Which whole-region layer the state asks for, and how it is made: pure functions over the state's models.

:func:`layer_key` says what the layer of a kind is made from (the year or years, the query, the set, the
training round), or what it waits for; :func:`make` computes it with
:mod:`wcembed.explore.compute` (similarity, change, changed like, classifier scores, colours, and the
agreement of two sets: the cosine of each chip's two embeddings, or the neighbours the two share).
"""

from __future__ import annotations

from wcembed.explore.compute.vectors import change
from wcembed.explore.state.labelling import LabelLoop
from wcembed.explore.state.layers import LayerKey, Made
from wcembed.explore.state.scope import CHANGE_YEARS, Scope
from wcembed.explore.state.search import SearchModel
from wcembed.explore.state.traits import one_of

REGION_LAYERS = (
    "none", "similarity", "scores", "change", "changed like", "embedding colours", "agreement",
    "neighbour agreement",
)  # fmt: skip
"""Whole-region layers the map can show, one at a time."""


def check_region(kind) -> str:
    """``kind`` if it is one of :data:`REGION_LAYERS`, else :class:`~wcembed.core.errors.BadParameterError`."""
    return one_of(kind, REGION_LAYERS, "region layer")


def layer_key(kind: str, scope: Scope, search: SearchModel, loop: LabelLoop) -> tuple[LayerKey | None, str]:
    """The key of the layer of ``kind`` for the year, set and query in play, and ``""``; or None and what the
    layer waits for (a query, a classifier, a second year, a set beside)."""
    year, last, of = (scope.year,), search.last, scope.index.set
    if kind == "none":
        return None, ""
    if kind in ("agreement", "neighbour agreement"):
        if scope.other is None:
            return None, f"{kind}: choose a set to compare with"
        if kind == "agreement" and scope.two_models:
            return None, (f"agreement: {of} and {scope.other.set} are two models' spaces, with no cosine between them: "
                          "choose the neighbour agreement")  # fmt: skip
        source = (scope.other.set,) if kind == "agreement" else (scope.other.set, f"k {search.k}")
        return LayerKey(kind, year, source, of), ""
    if kind in ("change", "changed like") and not scope.two_years:
        return None, f"{kind}: the index holds one year only"
    if kind in ("similarity", "changed like") and last is None:
        return None, f"{kind}: click a chip first (the layer is of the query)"
    if kind == "similarity":
        return LayerKey(kind, year, last.examples if last.how == "examples" else last.chips, of), ""
    if kind == "changed like":
        return LayerKey(kind, CHANGE_YEARS, tuple(last.places), of), ""
    if kind == "change":
        return LayerKey(kind, CHANGE_YEARS, (), of), ""
    if kind == "scores":
        if loop.classifier is None:
            return None, "scores: train a classifier first (label chips, then retrain in the labelling panel)"
        return LayerKey(kind, year, (f"round {len(loop.history)}",), of), ""
    return LayerKey(kind, year, (), of), ""


def make(key: LayerKey, scope: Scope, search: SearchModel, loop: LabelLoop) -> Made:
    """The raster of a layer key, the threshold it starts at (None: the layer's own) and the table of chips it
    was made with (the change layer's; None for the others)."""
    if key.kind == "similarity":
        last = search.last
        label = last.chips[0] if last.how != "examples" else (
            f"{len(last.positives)} positive and {len(last.negatives)} negative examples")  # fmt: skip
        return scope.vectors(key.years[0]).similarity(search.query_vector(last), label=label), None, None
    if key.kind == "change":
        pairs = scope.change_pairs(key.years)
        raster, table = change(scope.vectors(key.years[0]), scope.vectors(key.years[1]), pairs)
        return raster, None, table
    if key.kind == "changed like":
        raster, _ = scope.change_pairs(key.years).like(list(key.source), k=1)
        return raster, 0.0, None
    if key.kind == "scores":
        return loop.score_layer(key.years[0]), loop.threshold, None
    if key.kind == "agreement":
        return scope.agreement(key.years[0], key.source[0]).layer(), None, None
    if key.kind == "neighbour agreement":
        return scope.neighbour_agreement(key.years[0], key.source[0], k=search.k).layer(), None, None
    return scope.vectors(key.years[0]).pca_rgb(), None, None
