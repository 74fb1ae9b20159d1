"""The labelling loop's state, without widgets: train, label what helps most, review detections, the curve.

:class:`LabelLoop` is an observable traitlets model over a :class:`~wcembed.explore.state.scope.Scope` (the
index and year in play); an :class:`~wcembed.explore.state.session.ExploreSession` owns one
(``session.labelling``) and is told of its rounds by observing it; the panel
(:class:`wcembed.explore.views.panel.LabelPanel`) binds to it. It holds the labels and what makes a
person productive with the classifier (:mod:`wcembed.explore.compute.classify`):

* the **labels** (:attr:`LabelLoop.labels`, a new object at every change), checked against the index;
* **retrain** on the labels so far: spatially blocked CV balanced accuracy, every chip
  of the year scored (the session shows the round as its ``scores`` layer);
* **label next**: the unlabelled chips whose labels would help most
  (:func:`~wcembed.explore.compute.classify.suggest_next`);
* **review detections**: one chip per place, the place's highest-scoring unlabelled chip (a place: detected
  chips that touch), best first, one at a time (the top :data:`REVIEW_MAX` places, with the count of the
  rest); *accept* labels it positive, *reject* negative;
* the **learning curve**: CV balanced accuracy against the number of labels, one
  point per training round.

An operation raises package errors; a view runs it through :meth:`LabelLoop.attempt`, which says them on
the loop's status line.

Examples
--------
>>> loop = session.labelling  # doctest: +SKIP
>>> loop.retrain()  # doctest: +SKIP
>>> loop.label(loop.suggestions["chip_id"][0], "negative")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from traitlets import Any, Bool, Float, HasTraits, Instance, Int, List, Unicode, observe

from wcembed.core.errors import LabelsError
from wcembed.core.grid import parse_chip_id, parse_chip_ids
from wcembed.explore.compute.classify import Labels, adjacent_groups, labelled, suggest_next, train, unit
from wcembed.explore.compute.layers import ChipRaster, index_note
from wcembed.explore.state.attempts import attempt
from wcembed.explore.state.scope import Scope

REVIEW_MAX = 50
"""The most places queued for review (those of the highest scores); the status says how many more there are."""
MIN_EACH = 2
"""Labels of each class a classifier needs."""


class LabelLoop(HasTraits):
    """The labels, suggestions, detection review and the learning curve over a scope's index and year.

    Parameters
    ----------
    scope : wcembed.explore.state.scope.Scope
        The index labelled and scored, and the year shown.
    n : int
        Number of chips suggested per round.
    threshold : float
        Score at or above which an unlabelled chip is a detection (0..1).
    block_deg : float
        Side of the spatial blocks of the cross-validation, in degrees
        (:func:`~wcembed.explore.compute.classify.train`).

    Attributes
    ----------
    labels : wcembed.explore.compute.classify.Labels
        The chips labelled so far (a new object at every change).
    classifier : wcembed.explore.compute.classify.TrainedClassifier or None
        The last training round's classifier.
    scores : DataFrame or None
        Every chip of :attr:`scores_year` scored by it (``chip_id``, ``year``, ``column``, ``row``, ``score``;
        :func:`~wcembed.explore.compute.classify.with_footprints` adds the footprints).
    suggestions : GeoDataFrame or None
        The chips suggested for labelling and still unlabelled, in order of choice.
    queue : list of str
        Places not yet reviewed, each as its highest-scoring detected chip, highest score first (at most
        :data:`REVIEW_MAX`); :attr:`current` is the first. A place is a group of detected chips that touch
        (:func:`~wcembed.explore.compute.classify.adjacent_groups`); :meth:`place_size` tells how many it holds.
    detected : int
        Unlabelled chips scored at or above the threshold (fewer as detections are labelled).
    places : int
        The places the last round's detections make (the queue is the top of them).
    history : list of (int, float)
        (number of labels, CV balanced accuracy) of each training round.
    status : str
        The loop's state in words: labels, the last round, what to do next (or why an action was refused).
    busy : bool
        True while a round trains and scores (a view disables its buttons).
    """

    labels = Instance(Labels)
    n = Int(8)
    threshold = Float(0.5)
    block_deg = Float(0.05)
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

    def __init__(self, scope: Scope, n: int = 8, threshold: float = 0.5, block_deg: float = 0.05) -> None:
        super().__init__(labels=Labels(), n=n, threshold=threshold, block_deg=block_deg)
        self.scope = scope
        self._place_sizes: dict[str, int] = {}
        self._last_vectors: list[tuple] = []  # the last two answers of _vectors_of, newest first
        self._say()

    def attempt(self, operation, *args, **kwargs):
        """Run an operation for the panel: a package error is said on the loop's status line
        (:func:`~wcembed.explore.state.attempts.attempt`)."""
        return attempt(self._refuse, operation, *args, **kwargs)

    def _refuse(self, text: str) -> None:
        self.status = text

    # ------------------------------------------------------------------ labels
    @property
    def positives(self) -> list[str]:
        return self.labels.positives

    @property
    def negatives(self) -> list[str]:
        return self.labels.negatives

    def add(self, chips: Sequence[str], label: str, year: int | None = None) -> None:
        """Label chips (``"positive"`` or ``"negative"``) of ``year`` (default: the year shown), in one change;
        :class:`LabelsError` (and the labels as they were) for chips the index lacks."""
        index, year = self.scope.index, self.scope.year if year is None else year
        missing = index.missing(list(chips))
        if missing:
            raise LabelsError(f"{len(missing)} chips are not in the index: {', '.join(missing[:5])}")
        labels = self.labels.copy()
        for chip in chips:
            labels.add(chip, label, year=year, bounds=index.footprint(chip).bounds)
        self.labels = labels

    def toggle(self, chip: str, label: str, year: int | None = None) -> None:
        """Label a chip; labelling it again with the same label removes the label."""
        if self.labels.items.get(chip, {}).get("label") == label:
            labels = self.labels.copy()
            labels.remove(chip)
            self.labels = labels
        else:
            self.add([chip], label, year)

    def label(self, chip: str, label: str) -> None:
        """Label ``chip`` (of its own year) and take it off the suggestions and the review queue."""
        self.add([chip], label, parse_chip_id(chip)[0])

    def save(self, path: str | Path) -> Path:
        """Save the labels as GeoJSON."""
        return self.labels.save(path)

    def load(self, path: str | Path) -> None:
        """Load labels from GeoJSON, replacing the current ones; :class:`LabelsError` (and the labels as they
        were) for a file whose chips are not all in the index, with their footprints on its grid."""
        labels = Labels.load(path)
        try:
            labels.check_against(self.scope.index)
        except LabelsError as exc:
            raise LabelsError(f"{path}: {exc}") from None
        self.labels = labels

    # ------------------------------------------------------------------ actions
    def retrain(self):
        """Train on the labels, score every chip of the year shown, refresh suggestions, queue and curve.
        Returns the :class:`~wcembed.explore.compute.classify.TrainedClassifier`;
        :class:`~wcembed.core.errors.LabelsError`, before any work, when the labels cannot train one yet."""
        p, n = len(self.positives), len(self.negatives)
        if p < MIN_EACH or n < MIN_EACH:
            raise LabelsError(
                f"need at least {MIN_EACH} positive and {MIN_EACH} negative labels to train ({p} and {n} so far)"
            )
        year = self.scope.year
        self.status = f"training on {len(self.labels)} labels, then scoring every chip of {year} ..."
        self.busy = True
        try:
            clf = train(self.scope.index, self.labels, block_deg=self.block_deg, vectors=self._vectors_of)
            self.classifier = clf
            self._score(year)
            self.history = [*self.history, (len(self.labels), float(clf.cv_balanced_accuracy))]
        finally:
            self.busy = False
            self._say()
        return clf

    def _vectors_of(self, chip_ids: list[str]) -> np.ndarray:
        """The chips' unit vectors ``(N, D)``, float32, from the scope's kept vectors of their years (no table
        lookup: at 100,000 labels the lookups took seconds). The last two answers are kept: a round asks for
        the labelled chips' vectors twice (to train, then to suggest chips away from them, after the
        candidates')."""
        years = parse_chip_ids(chip_ids)[:, 0]
        kept = {int(year): self.scope.vectors(int(year)) for year in np.unique(years)}
        key = (list(chip_ids), list(kept.values()))
        for known, vectors in self._last_vectors:
            if _same(known, key):
                return vectors
        if len(kept) == 1:  # one year: its rows in order, without a second copy
            (vectors,) = kept.values()
            out = np.take(vectors.vectors, vectors.rows_of(chip_ids), axis=0)
        else:
            out = np.empty((len(chip_ids), next(iter(kept.values())).vectors.shape[1]), np.float32)
            for year, vectors in kept.items():
                at = np.flatnonzero(years == year)
                out[at] = np.take(vectors.vectors, vectors.rows_of([chip_ids[i] for i in at]), axis=0)
        self._last_vectors = [(key, unit(out)), *self._last_vectors[:1]]
        return self._last_vectors[0][1]

    def score_layer(self, year: int) -> ChipRaster:
        """The classifier's scores of every chip of ``year`` as a
        :class:`~wcembed.explore.compute.layers.ChipRaster` (scored now if the last round scored another year)."""
        if self.classifier is None:
            raise LabelsError("no classifier yet: label chips, then retrain")
        if self.scores_year != year:
            self._score(year)
        index = self.scope.index
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
        """Score every chip of ``year`` from the scope's unit vectors of the year (one matrix-vector product
        of the classifier folded into a linear function,
        :meth:`~wcembed.explore.compute.classify.TrainedClassifier.linear`: no table read, no footprint made);
        the suggestions and the review queue follow."""
        vectors = self.scope.vectors(year)
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
        detected = self._detected()
        place = adjacent_groups(detected["year"], detected["column"], detected["row"])
        sizes = np.bincount(place)  # chips per place
        best = detected.assign(place=place).sort_values("score", ascending=False, kind="stable")
        best = best.drop_duplicates("place").head(REVIEW_MAX)
        self._place_sizes = dict(zip(best["chip_id"], sizes[best["place"].to_numpy()].tolist(), strict=True))
        self.detected, self.places = len(detected), len(sizes)
        self.queue = list(best["chip_id"])

    def _detected(self):
        free = self._unlabelled(self.scores)
        return free[free["score"] >= self.threshold]

    def suggest(self, n: int | None = None):
        """Suggest the ``n`` chips to label next (after :meth:`retrain`)."""
        if self.scores is None:
            raise LabelsError("retrain first: suggestions come from the classifier's scores")
        self.suggestions = suggest_next(self.scope.index, self.scores, self.labels, n=n or self.n,
                                        vectors=self._vectors_of)  # fmt: skip
        return self.suggestions

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

    # ------------------------------------------------------------------ following the labels
    def _unlabelled(self, frame):
        return frame[~labelled(frame["chip_id"], self.labels)]

    @observe("labels")
    def _labels_changed(self, change: dict) -> None:
        """Take newly labelled chips off the suggestions, the review queue and the detections; update the
        status line."""
        done = self.labels.items
        if self.suggestions is not None and labelled(self.suggestions["chip_id"], self.labels).any():
            self.suggestions = self._unlabelled(self.suggestions).reset_index(drop=True)
        if any(c in done for c in self.queue):
            self.queue = [c for c in self.queue if c not in done]
        if self.scores is not None:
            self.detected = len(self._detected())
        self._say()

    @observe("queue")
    def _reviewed(self, change: dict) -> None:
        self._say()

    def _say(self) -> None:
        p, n = len(self.positives), len(self.negatives)
        text = f"{p} positives, {n} negatives"
        if self.history:
            trained, acc = self.history[-1]
            text += f"; trained on {trained}: CV balanced accuracy {acc:.3f}"
            if self.classifier is not None and 0 < self.classifier.cv_labels < trained:
                text += f" (CV on {self.classifier.cv_labels} of them, whole blocks)"
            if len(self.labels) > trained:
                text += f" ({len(self.labels) - trained} new labels: retrain)"
            elif len(self.labels) != trained:
                text += " (the labels changed: retrain)"
            if self.scores is not None:
                text += (
                    f"; {self.detected} unlabelled chips of {self.scores_year} scored ≥ {self.threshold:g} "
                    f"(in {self.places} places at the last round), {len(self.queue)} of the top places to review"
                )
        elif p < MIN_EACH or n < MIN_EACH:
            text += f": label at least {MIN_EACH} of each, then retrain"
        else:
            text += ": retrain to train a classifier"
        self.status = text


def _same(a: tuple[list, list], b: tuple[list, list]) -> bool:
    """Whether two keys of :meth:`LabelLoop._vectors_of` are the same chips (in order) of the same kept vectors."""
    return a[0] == b[0] and len(a[1]) == len(b[1]) and all(x is y for x, y in zip(a[1], b[1], strict=True))
