"""The labelling loop beside the map: train, label what helps most, review detections, watch the curve.

:class:`LabelLoop` adds to an :class:`~wcembed.explore.Explorer` what makes a person
productive with the classifier (:mod:`wcembed.explore.classify`):

* **retrain** on the labels so far: spatially blocked CV balanced accuracy, every chip
  of the year scored and drawn as the map's score layer;
* **label next**: the unlabelled chips whose labels would help most
  (:func:`~wcembed.explore.classify.suggest_next`), outlined on the map and shown as
  thumbnails, each with one-click *positive* / *negative*;
* **review detections**: the highest-scoring unlabelled chips one at a time, with
  their thumbnail and score; *accept* labels it positive, *reject* negative;
* the **learning curve**: CV balanced accuracy against the number of labels, one
  point per training round.

Every button calls a method that code (and a notebook read headless) calls the
same way: :meth:`LabelLoop.retrain`, :meth:`LabelLoop.label`,
:meth:`LabelLoop.accept`, :meth:`LabelLoop.reject`, :meth:`LabelLoop.skip`.

Examples
--------
>>> loop = LabelLoop(explorer)  # doctest: +SKIP
>>> loop.retrain()  # doctest: +SKIP
>>> loop.label(loop.suggestions["chip_id"][0], "negative")  # doctest: +SKIP
>>> loop  # the panel (in JupyterLab), or a picture of the learning curve  # doctest: +SKIP
"""

from __future__ import annotations

import html

from wcembed.errors import LabelsError, WcEmbedError
from wcembed.grid import parse_chip_id

LABEL_NEXT_STYLE = {"color": "#ffa500", "weight": 3, "dashArray": "6 4", "fillOpacity": 0.0}
"""How the suggested chips are outlined on the map (orange, dashed)."""


class LabelLoop:
    """Suggestions, detection review and the learning curve for an explorer's labels.

    Parameters
    ----------
    explorer : wcembed.explore.view.Explorer or wcembed.explore.session.ExploreSession
        The session whose labels and year are used (and, for an Explorer, the map that outlines the
        suggestions and the WMS that makes their thumbnails).
    n : int
        Number of chips suggested per round.
    threshold : float
        Score at or above which an unlabelled chip is a detection to review (0..1).
    block_deg : float
        Side of the spatial blocks of the cross-validation, in degrees (:func:`~wcembed.explore.classify.train`).

    Attributes
    ----------
    classifier : wcembed.explore.classify.TrainedClassifier or None
        The last training round's classifier.
    scores : GeoDataFrame or None
        Every chip of the year scored by it (``chip_id``, ``year``, ``score``, footprint).
    suggestions : GeoDataFrame or None
        The chips suggested for labelling and still unlabelled, in order of choice.
    queue : list of str
        Detections not yet reviewed, highest score first; :attr:`current` is the first.
    history : list of (int, float)
        (number of labels, CV balanced accuracy) of each training round.
    """

    def __init__(self, explorer, n: int = 8, threshold: float = 0.5, block_deg: float = 0.05) -> None:
        import ipywidgets as w
        from ipyleaflet import GeoJSON

        self.session = getattr(explorer, "session", explorer)
        self.view = explorer if explorer is not self.session else None
        self.n, self.threshold, self.block_deg = n, threshold, block_deg
        self.classifier = None
        self.scores = None
        self.suggestions = None
        self.queue: list[str] = []
        self.history: list[tuple[int, float]] = []
        self.layer = GeoJSON(
            data={"type": "FeatureCollection", "features": []}, name="label next", style=LABEL_NEXT_STYLE
        )
        if self.view is not None:
            self.view.map.add_layer(self.layer)
        self.status = w.HTML("label at least 2 positive and 2 negative chips, then retrain")
        self.retrain_button = w.Button(description="retrain", icon="refresh", tooltip="train on the labels so far")
        self.retrain_button.on_click(lambda _: self.session.attempt(self.retrain))
        self.cards = w.HBox(layout=w.Layout(flex_flow="row wrap"))
        self.cards.add_class("wcembed-label-next")
        self.review_card = w.HTML()
        self.accept_button = w.Button(description="accept", icon="check", button_style="success")
        self.reject_button = w.Button(description="reject", icon="times", button_style="danger")
        self.skip_button = w.Button(description="skip", icon="forward")
        self.accept_button.on_click(lambda _: self.session.attempt(self.accept))
        self.reject_button.on_click(lambda _: self.session.attempt(self.reject))
        self.skip_button.on_click(lambda _: self.session.attempt(self.skip))
        self.curve = w.Image(format="png")
        self._view = None
        # a label from anywhere (these buttons, a click or a drawn area in a label mode) updates the panel
        self.session.subscribe(lambda changed: self._sync() if "labels" in changed else None)

    # ------------------------------------------------------------------ actions
    def retrain(self):
        """Train on the explorer's labels, score every chip of the year, refresh suggestions, queue and curve.

        Returns the :class:`~wcembed.explore.classify.TrainedClassifier`, or None when the labels cannot
        train one yet (the status line says why).
        """
        from wcembed.explore.classify import score_index, train

        ex = self.session
        try:
            clf = train(ex.index, ex.labels, block_deg=self.block_deg)
        except WcEmbedError as exc:  # too few labels, a chip not in the index, ...: said on the status line
            self.status.value = html.escape(str(exc))
            return None
        self.classifier = clf
        self.history.append((len(ex.labels), float(clf.cv_balanced_accuracy)))
        self.scores = score_index(ex.index, clf.model, year=ex.year)
        ex.show_scores(self.scores)
        self.suggest()
        free = self._unlabelled(self.scores)
        detected = free[free["score"] >= self.threshold].sort_values("score", ascending=False, kind="stable")
        self.queue = list(detected["chip_id"])
        self._show_current()
        self.curve.value = self.curve_png()
        self._say()
        return clf

    def suggest(self, n: int | None = None):
        """Suggest the ``n`` chips to label next (after :meth:`retrain`): map outlines and labelling cards."""
        from wcembed.explore.classify import suggest_next

        if self.scores is None:
            raise LabelsError("retrain first: suggestions come from the classifier's scores")
        self.suggestions = suggest_next(self.session.index, self.scores, self.session.labels, n=n or self.n)
        self._draw_suggestions()
        return self.suggestions

    def label(self, chip: str, label: str) -> None:
        """Label ``chip`` (``"positive"`` or ``"negative"``) and take it off the suggestions and the review queue."""
        self.session.add_labels([chip], label, parse_chip_id(chip)[0])  # the session tells _sync

    @property
    def current(self) -> str | None:
        """The detection under review (the highest-scoring one not yet reviewed), or None."""
        return self.queue[0] if self.queue else None

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
            self.queue.pop(0)
            self._show_current()

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

    def widget(self):
        """The panel: retrain, status, the chips to label next, the detection under review, the curve."""
        import ipywidgets as w

        if self._view is None:
            review = w.VBox([self.review_card, w.HBox([self.accept_button, self.reject_button, self.skip_button])])
            self._view = w.VBox(
                [
                    w.HBox([self.retrain_button, self.status]),
                    w.HTML("<b>Label next</b> (uncertain, spread out; outlined in orange on the map)"),
                    self.cards,
                    w.HBox([w.VBox([w.HTML("<b>Review detections</b>"), review]), self.curve]),
                ]
            )
        return self._view

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """The live panel, and the learning curve as a picture for readers without a kernel."""
        import base64

        bundle = self.widget()._repr_mimebundle_(include=include, exclude=exclude)
        bundle["image/png"] = base64.b64encode(self.curve_png()).decode()
        return bundle

    # ------------------------------------------------------------------ drawing
    def _unlabelled(self, frame):
        return frame[~frame["chip_id"].isin(list(self.session.labels.items))]

    def _thumbnail(self, chip: str, caption: str) -> str:
        """A chip's card: its thumbnail where there is a map's WMS, else its caption alone."""
        if self.view is None:
            return caption
        return self.view.thumbnail_html(chip, self.session.index.footprint(chip).bounds, caption)

    def _draw_suggestions(self) -> None:
        import json

        import ipywidgets as w

        s = self.suggestions
        self.layer.data = json.loads(s[["chip_id", "score", "geometry"]].to_json()) if len(s) else {
            "type": "FeatureCollection", "features": []}  # fmt: skip
        cards = []
        for _, row in s.iterrows():
            chip = row["chip_id"]
            yes = w.Button(icon="check", tooltip="positive", button_style="success", layout=w.Layout(width="62px"))
            no = w.Button(icon="times", tooltip="negative", button_style="danger", layout=w.Layout(width="62px"))
            yes.on_click(lambda _, c=chip: self.session.attempt(self.label, c, "positive"))
            no.on_click(lambda _, c=chip: self.session.attempt(self.label, c, "negative"))
            caption = f"{chip}<br>score {row['score']:.2f}"
            cards.append(w.VBox([w.HTML(self._thumbnail(chip, caption)), w.HBox([yes, no])]))
        self.cards.children = cards

    def _show_current(self) -> None:
        chip = self.current
        if chip is None:
            self.review_card.value = "no detection left to review: retrain, or lower the threshold"
        else:
            score = float(self.scores.loc[self.scores["chip_id"] == chip, "score"].iloc[0])
            done = len(self.queue)
            self.review_card.value = self._thumbnail(chip, f"{chip}: score {score:.2f} ({done} to review)")
        for b in (self.accept_button, self.reject_button, self.skip_button):
            b.disabled = chip is None

    def _sync(self) -> None:
        """Take newly labelled chips off the suggestions and the review queue; update the status line."""
        labelled = self.session.labels.items
        if self.suggestions is not None and self.suggestions["chip_id"].isin(list(labelled)).any():
            self.suggestions = self._unlabelled(self.suggestions).reset_index(drop=True)
            self._draw_suggestions()
        head = self.current
        self.queue = [c for c in self.queue if c not in labelled]
        if self.current != head:
            self._show_current()
        self._say()

    def _say(self) -> None:
        ex = self.session
        text = f"{len(ex.positives)} positives, {len(ex.negatives)} negatives"
        if self.history:
            n, acc = self.history[-1]
            text += f"; trained on {n}: CV balanced accuracy {acc:.3f}"
            if len(ex.labels) != n:
                text += f" ({len(ex.labels) - n} new labels: retrain)"
        self.status.value = text
