"""Where a result is like the query: the explainer of a set's matches and the last explanation."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from traitlets import Any as AnyTrait
from traitlets import HasTraits, Instance, Unicode

from wcembed.core.errors import WcEmbedError
from wcembed.explore.compute.explain import explainer_for
from wcembed.explore.state.attempts import release_frames

OFF = "explain is off: no tile source and weights given (use_explainer)"


@dataclass(frozen=True)
class Explanation:
    """Where a result is like the query (:meth:`Explaining.explain`): the ``(16, 16)`` patch heatmap and its
    picture over the result's imagery (PNG bytes)."""

    query: str
    result: str
    heat: np.ndarray
    png: bytes
    seconds: float
    untrained: bool


class Explaining(HasTraits):
    """The explainer (:class:`~wcembed.explore.compute.explain.MatchExplainer`, or None), why matches cannot be
    explained (:attr:`note`, "" when they can) and the last explanation.

    Attributes
    ----------
    explainer : MatchExplainer or None
    note : str
        One line under the results: why matches cannot be explained, or that untrained weights explain them.
    explanation : Explanation or None
        The last :meth:`explain` (let go when the query changes).
    """

    explainer = AnyTrait(None, allow_none=True)
    note = Unicode(OFF)
    explanation = Instance(Explanation, allow_none=True)

    def __init__(self, explainer=None) -> None:
        super().__init__(explainer=explainer, note="" if explainer is not None else OFF)

    def use(self, index, tiles: str | None, checkpoint: str | None = None, *, allow_untrained=None) -> None:
        """Explain ``index``'s matches by reading chips from ``tiles`` with the weights the embeddings were made
        with (:func:`~wcembed.explore.compute.explain.explainer_for`); where that cannot work, :attr:`note`
        says why, in one line."""
        try:
            self.explainer = explainer_for(index, tiles, checkpoint, allow_untrained=allow_untrained)
        except WcEmbedError as exc:
            self.explainer, self.note = None, f"explain is off: {exc}"
            release_frames(exc)
        else:
            untrained = self.explainer.untrained
            self.note = "explain uses untrained weights: the mechanism, not what Clay sees" if untrained else ""

    def explain(self, query: str, result: str, untrained: bool, how: str = "best") -> np.ndarray:
        """Where in chip ``result`` it is like chip ``query``: the encoder's patch tokens of both chips, kept as
        :attr:`explanation`. Returns the ``(16, 16)`` heatmap."""
        t0 = time.perf_counter()
        heat = self.explainer.explain(query, result, how=how)
        png = self.explainer.picture(result, heat)
        self.explanation = Explanation(query, result, heat, png, time.perf_counter() - t0, untrained)
        return heat

    def forget(self, query: str | None) -> None:
        """Another query: an explanation of a match of the last one is let go."""
        if self.explanation is not None and self.explanation.query != query:
            self.explanation = None
