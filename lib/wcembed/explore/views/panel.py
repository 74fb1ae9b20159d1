"""The labelling panel: ipywidgets bound to a :class:`~wcembed.explore.state.labelling.LabelLoop`.

It draws the loop's state (its status line, the chips to label next, the detection
under review, the learning curve) when it changes, and turns its buttons into the
loop's operations through :meth:`~wcembed.explore.state.labelling.LabelLoop.attempt`, so a refusal is
said on the panel's own status line. It keeps no state of its own.
:class:`~wcembed.explore.views.view.Explorer` shows it under the map and outlines the
suggested chips on the map (:attr:`LabelPanel.outline`).
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable
from pathlib import Path

import ipywidgets as w
from ipyleaflet import GeoJSON

from wcembed.explore.compute.classify import with_footprints
from wcembed.explore.views.figures import curve_figure
from wcembed.explore.views.styles import TEXT_LINE
from wcembed.tools.plots import figure_png

LABEL_NEXT_STYLE = {"color": "#ffa500", "weight": 3, "dashArray": "6 4", "fillOpacity": 0.0}
"""How the suggested chips are outlined on the map (orange, dashed)."""


class LabelPanel:
    """Retrain, label next, review detections, the learning curve and saving the labels, as widgets.

    Parameters
    ----------
    loop : wcembed.explore.state.labelling.LabelLoop
        The state shown (``session.labelling``).
    thumbnail : callable
        ``thumbnail(chip, caption) -> html``: a chip's card (e.g. :meth:`Explorer.thumbnail_html`).
    labels_path : str or Path
        Where the "save labels" button writes the labels (GeoJSON) unless its box is changed.
    """

    def __init__(
        self, loop, thumbnail: Callable[[str, str], str], labels_path: str | Path = "outputs/labels.geojson"
    ) -> None:
        self.loop, self.thumbnail = loop, thumbnail
        act = loop.attempt
        self.outline = GeoJSON(
            data={"type": "FeatureCollection", "features": []}, name="label next", style=LABEL_NEXT_STYLE
        )
        self.status = w.HTML(layout=w.Layout(min_height=TEXT_LINE))
        self.status.add_class("wcembed-label-status")
        self.retrain_button = w.Button(description="retrain", icon="refresh", tooltip="train on the labels so far")
        self.retrain_button.on_click(lambda _: act(loop.retrain))
        self.cards = w.HBox(layout=w.Layout(flex_flow="row wrap"))
        self.cards.add_class("wcembed-label-next")
        self.review_card = w.HTML()
        self.accept_button = w.Button(description="accept", icon="check", button_style="success")
        self.reject_button = w.Button(description="reject", icon="times", button_style="danger")
        self.skip_button = w.Button(description="skip", icon="forward")
        self.accept_button.on_click(lambda _: act(loop.accept))
        self.reject_button.on_click(lambda _: act(loop.reject))
        self.skip_button.on_click(lambda _: act(loop.skip))
        self.save_path = w.Text(value=str(labels_path), description="labels to", layout=w.Layout(width="360px"))
        self.save_button = w.Button(description="save labels", icon="save", tooltip="write the labels as GeoJSON")
        self.save_button.on_click(lambda _: act(self.save))
        self.curve = w.Image(format="png", value=self.curve_png())
        self._view = None
        loop.observe(lambda _: self._draw_status(), names=["status", "busy"])
        loop.observe(lambda _: self._draw_suggestions(), names="suggestions")
        loop.observe(lambda _: self._draw_review(), names=["queue", "scores"])
        loop.observe(lambda _: setattr(self.curve, "value", self.curve_png()), names="history")
        self._draw_status()
        self._draw_review()

    def curve_png(self) -> bytes:
        """The learning curve as PNG bytes (:func:`~wcembed.explore.views.figures.curve_figure`)."""
        return figure_png(curve_figure(self.loop.history))

    def save(self) -> Path:
        """Write the labels to the path in the box; the panel's status line says where."""
        path = Path(self.save_path.value).expanduser()
        self.loop.save(path)
        self.loop.status = f"{len(self.loop.labels)} labels written to {path}"
        return path

    def widget(self):
        """The panel: retrain, status, the chips to label next, the detection under review, the curve, save."""
        if self._view is None:
            review = w.VBox([self.review_card, w.HBox([self.accept_button, self.reject_button, self.skip_button])])
            self._view = w.VBox(
                [
                    w.HTML("<b>Labelling</b>: positive/negative modes label a click; retrain learns from them"),
                    w.HBox([self.retrain_button, self.status]),
                    w.HTML("<b>Label next</b> (uncertain, spread out; outlined in orange on the map)"),
                    self.cards,
                    w.HBox([w.VBox([w.HTML("<b>Review detections</b>"), review]), self.curve]),
                    w.HBox([self.save_path, self.save_button]),
                ]
            )
            self._view.add_class("wcembed-panel")
        return self._view

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """The live panel, and the learning curve as a picture for readers without a kernel."""
        bundle = self.widget()._repr_mimebundle_(include=include, exclude=exclude)
        bundle["image/png"] = base64.b64encode(self.curve_png()).decode()
        return bundle

    # ------------------------------------------------------------------ drawing
    def _draw_status(self) -> None:
        busy = self.loop.busy
        self.retrain_button.disabled = busy
        self.retrain_button.description = "training ..." if busy else "retrain"
        self.status.value = html.escape(self.loop.status)

    def _draw_suggestions(self) -> None:
        s, act = self.loop.suggestions, self.loop.attempt
        index = self.loop.scope.index
        self.outline.data = (
            json.loads(with_footprints(s[["chip_id", "score"]], index.chip_size, index.origin).to_json())
            if s is not None and len(s)
            else {"type": "FeatureCollection", "features": []}
        )
        cards = []
        for _, row in s.iterrows() if s is not None else ():
            chip = row["chip_id"]
            yes = w.Button(icon="check", tooltip="positive", button_style="success", layout=w.Layout(width="62px"))
            no = w.Button(icon="times", tooltip="negative", button_style="danger", layout=w.Layout(width="62px"))
            yes.on_click(lambda _, c=chip: act(self.loop.label, c, "positive"))
            no.on_click(lambda _, c=chip: act(self.loop.label, c, "negative"))
            caption = f"{chip}<br>score {row['score']:.2f}"
            cards.append(w.VBox([w.HTML(self.thumbnail(chip, caption)), w.HBox([yes, no])]))
        self.cards.children = cards

    def _draw_review(self) -> None:
        loop = self.loop
        chip = loop.current
        if loop.scores is None:
            self.review_card.value = "detections to review appear after the first retrain"
        elif chip is None:
            self.review_card.value = "no detection left to review: retrain, or lower the threshold"
        else:
            size = loop.place_size(chip)
            place = f", the best of {size} touching detected chips" if size > 1 else ""
            caption = f"{chip}: score {loop.score_of(chip):.2f}{place} ({len(loop.queue)} places to review)"
            self.review_card.value = self.thumbnail(chip, caption)
        for b in (self.accept_button, self.reject_button, self.skip_button):
            b.disabled = chip is None
