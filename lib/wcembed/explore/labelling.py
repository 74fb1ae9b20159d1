"""The labelling loop's state, without widgets: train, label what helps most, review detections, the curve.

:class:`LabelLoop` is part of an :class:`~wcembed.explore.session.ExploreSession`
(``session.labelling``), an observable traitlets model like it; the panel
(:class:`wcembed.explore.panel.LabelPanel`) binds to it. It holds what makes a
person productive with the classifier (:mod:`wcembed.explore.classify`):

* **retrain** on the labels so far: spatially blocked CV balanced accuracy, every chip
  of the year scored and shown as the session's ``scores`` layer;
* **label next**: the unlabelled chips whose labels would help most
  (:func:`~wcembed.explore.classify.suggest_next`);
* **review detections**: one chip per place, the place's highest-scoring unlabelled chip (a place: detected
  chips that touch), best first, one at a time (the top :data:`REVIEW_MAX` places, with the count of the
  rest); *accept* labels it positive, *reject* negative;
* the **learning curve**: CV balanced accuracy against the number of labels, one
  point per training round.

Errors are the session's: an operation raises package errors, and a view runs it through
:meth:`~wcembed.explore.session.ExploreSession.attempt` (the status line says them).

Examples
--------
>>> loop = session.labelling  # doctest: +SKIP
>>> loop.retrain()  # doctest: +SKIP
>>> loop.label(loop.suggestions["chip_id"][0], "negative")  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
from traitlets import Any, Bool, HasTraits, Int, List, Unicode, observe

from wcembed.errors import LabelsError
from wcembed.grid import parse_chip_id

REVIEW_MAX = 50
"""The most places queued for review (those of the highest scores); the status says how many more there are."""
MIN_EACH = 2
"""Labels of each class a classifier needs."""


class LabelLoop(HasTraits):
    """Suggestions, detection review and the learning curve for a session's labels.

    Parameters
    ----------
    session : wcembed.explore.session.ExploreSession
        The session whose labels, year and index are used.
    n : int
        Number of chips suggested per round.
    threshold : float
        Score at or above which an unlabelled chip is a detection (0..1).
    block_deg : float
        Side of the spatial blocks of the cross-validation, in degrees (:func:`~wcembed.explore.classify.train`).

    Attributes
    ----------
    classifier : wcembed.explore.classify.TrainedClassifier or None
        The last training round's classifier.
    scores : DataFrame or None
        Every chip of :attr:`scores_year` scored by it (``chip_id``, ``year``, ``column``, ``row``, ``score``;
        :func:`~wcembed.explore.classify.with_footprints` adds the footprints).
    suggestions : GeoDataFrame or None
        The chips suggested for labelling and still unlabelled, in order of choice.
    queue : list of str
        Places not yet reviewed, each as its highest-scoring detected chip, highest score first (at most
        :data:`REVIEW_MAX`); :attr:`current` is the first. A place is a group of detected chips that touch
        (:func:`~wcembed.explore.classify.adjacent_groups`); :meth:`place_size` tells how many it holds.
    detected : int
        Unlabelled chips scored at or above the threshold in the last round.
    places : int
        The places those chips make (the queue is the top of them).
    history : list of (int, float)
        (number of labels, CV balanced accuracy) of each training round.
    status : str
        The loop's state in words: labels, the last round, what to do next.
    busy : bool
        True while a round trains and scores (a view disables its buttons).
    """

    classifier = Any(None, allow_none=True)
    scores = Any(None, allow_none=True)
    scores_year = Int(None, allow_none=True)
    suggestions = Any(None, allow_none=True)
    queue = List()
    detected = Int(0)
    places = Int(0)
    history = List()
    status = Unicode("")
    busy = Bool(False)

    def __init__(self, session, n: int = 8, threshold: float = 0.5, block_deg: float = 0.05) -> None:
        super().__init__()
        self.session = session
        self.n, self.threshold, self.block_deg = n, threshold, block_deg
        self._place_sizes: dict[str, int] = {}
        # a label from anywhere (the panel, a click or a drawn area in a label mode) updates the loop
        session.observe(self._labels_changed, names="labels")
        self._say()

    # ------------------------------------------------------------------ actions
    def retrain(self):
        """Train on the session's labels, score every chip of its year, refresh suggestions, queue and curve,
        and show the scores layer. Returns the :class:`~wcembed.explore.classify.TrainedClassifier`;
        :class:`~wcembed.errors.LabelsError` when the labels cannot train one yet."""
        from wcembed.explore.classify import train

        s = self.session
        self.status = f"training on {len(s.labels)} labels, then scoring every chip of {s.year} ..."
        self.busy = True
        try:
            clf = train(s.index, s.labels, block_deg=self.block_deg)
            self.classifier = clf
            self.history = [*self.history, (len(s.labels), float(clf.cv_balanced_accuracy))]
            self._score(s.year)
        finally:
            self.busy = False
            self._say()
        s.show_region("scores")  # the new round's layer
        return clf

    def score_layer(self, year: int):
        """The classifier's scores of every chip of ``year`` as a :class:`~wcembed.explore.layers.ChipRaster`
        (scored now if the last round scored another year)."""
        from wcembed.explore.layers import ChipRaster, index_note

        if self.classifier is None:
            raise LabelsError("no classifier yet: label chips, then retrain")
        if self.scores_year != year:
            self._score(year)
        index = self.session.index
        return ChipRaster.from_chips(
            self.scores["column"].to_numpy(),
            self.scores["row"].to_numpy(),
            self.scores["score"].to_numpy(),
            name=f"classifier score {year}",
            description=f"probability of the positive class. {index_note(index)}".strip(),
            cmap="inferno",
            chip_size=index.chip_size,
            origin=index.origin,
        )

    def _score(self, year: int) -> None:
        """Score every chip of ``year`` from the session's unit vectors of the year (one matrix-vector product
        of the classifier folded into a linear function, :meth:`~wcembed.explore.classify.TrainedClassifier.linear`:
        no table read, no footprint made); the suggestions and the review queue follow."""
        import pandas as pd

        from wcembed.explore.classify import adjacent_groups

        vectors = self.session.vectors(year)
        w, b = self.classifier.linear()
        logit = np.clip(vectors.dot(w) + np.float32(b), -60, 60)
        self.scores = pd.DataFrame(
            {
                "chip_id": vectors.chip_ids,
                "year": np.full(len(vectors), year, np.int32),
                "column": vectors.columns,
                "row": vectors.rows,
                "score": (1 / (1 + np.exp(-logit))).astype(np.float32),
            }
        )
        self.scores_year = year
        self.suggest()
        free = self._unlabelled(self.scores)
        detected = free[free["score"] >= self.threshold]
        place = adjacent_groups(detected["year"], detected["column"], detected["row"])
        sizes = np.bincount(place)  # chips per place
        best = detected.assign(place=place).sort_values("score", ascending=False, kind="stable")
        best = best.drop_duplicates("place").head(REVIEW_MAX)
        self._place_sizes = dict(zip(best["chip_id"], sizes[best["place"].to_numpy()].tolist(), strict=True))
        self.detected, self.places = len(detected), len(sizes)
        self.queue = list(best["chip_id"])

    def suggest(self, n: int | None = None):
        """Suggest the ``n`` chips to label next (after :meth:`retrain`)."""
        from wcembed.explore.classify import suggest_next

        if self.scores is None:
            raise LabelsError("retrain first: suggestions come from the classifier's scores")
        self.suggestions = suggest_next(self.session.index, self.scores, self.session.labels, n=n or self.n)
        return self.suggestions

    def label(self, chip: str, label: str) -> None:
        """Label ``chip`` (``"positive"`` or ``"negative"``) and take it off the suggestions and the review queue."""
        self.session.add_labels([chip], label, parse_chip_id(chip)[0])  # the session tells _labels_changed

    @property
    def current(self) -> str | None:
        """The detection under review (the highest-scoring one not yet reviewed), or None."""
        return self.queue[0] if self.queue else None

    def place_size(self, chip: str) -> int:
        """How many detected chips the place of a queued chip held when it was queued (1: a lone chip)."""
        return self._place_sizes.get(chip, 1)

    def score_of(self, chip: str) -> float:
        """The last round's score of a chip of :attr:`scores_year`."""
        return float(self.scores.loc[self.scores["chip_id"] == chip, "score"].iloc[0])

    def accept(self) -> None:
        """The detection under review is right: label it positive and show the next."""
        if self.current is not None:
            self.label(self.current, "positive")

    def reject(self) -> None:
        """The detection under review is wrong: label it negative and show the next."""
        if self.current is not None:
            self.label(self.current, "negative")

    def skip(self) -> None:
        """Leave the detection under review unlabelled and show the next."""
        if self.queue:
            self.queue = self.queue[1:]

    # ------------------------------------------------------------------ pictures
    def curve_figure(self):
        """The learning curve: CV balanced accuracy (spatially blocked) against the number of labels."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4.2, 2.6), dpi=100)
        if self.history:
            n, acc = zip(*self.history, strict=True)
            ax.plot(n, acc, "o-", color="#1f77b4")
            ax.set_xlim(0, max(n) * 1.1 + 1)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
        ax.set_ylim(0.3, 1.02)
        ax.set_xlabel("labels")
        ax.set_ylabel("balanced accuracy (CV)")
        ax.set_title("learning curve (spatially blocked CV)", fontsize=9)
        fig.tight_layout()
        return fig

    def curve_png(self) -> bytes:
        from wcembed.plots import figure_png

        return figure_png(self.curve_figure())

    # ------------------------------------------------------------------ following the labels
    def _unlabelled(self, frame):
        return frame[~frame["chip_id"].isin(list(self.session.labels.items))]

    def _labels_changed(self, change: dict) -> None:
        """Take newly labelled chips off the suggestions and the review queue; update the status line."""
        labelled = self.session.labels.items
        if self.suggestions is not None and self.suggestions["chip_id"].isin(list(labelled)).any():
            self.suggestions = self._unlabelled(self.suggestions).reset_index(drop=True)
        if any(c in labelled for c in self.queue):
            self.queue = [c for c in self.queue if c not in labelled]
        self._say()

    @observe("queue")
    def _reviewed(self, change: dict) -> None:
        self._say()

    def _say(self) -> None:
        s = self.session
        p, n = len(s.positives), len(s.negatives)
        text = f"{p} positives, {n} negatives"
        if self.history:
            trained, acc = self.history[-1]
            text += f"; trained on {trained}: CV balanced accuracy {acc:.3f}"
            if len(s.labels) != trained:
                text += f" ({len(s.labels) - trained} new labels: retrain)"
            if self.scores is not None:
                text += (
                    f"; {self.detected} chips of {self.scores_year} scored ≥ {self.threshold:g} in {self.places} "
                    f"places, {len(self.queue)} of the top places to review"
                )
        elif p < MIN_EACH or n < MIN_EACH:
            text += f": label at least {MIN_EACH} of each, then retrain"
        else:
            text += ": retrain to train a classifier"
        self.status = text
