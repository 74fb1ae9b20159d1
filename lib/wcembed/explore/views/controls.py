"""The map's controls: each linked to the trait of the model that holds its setting, and each region layer's own
threshold and opacity sliders.

A region layer gets sliders of its own, linked to it, when it is first shown; they take the two places beside
the region dropdown while it is shown. So a value the browser sends for one layer's slider (a drag, or an echo
of a range change still in flight) only ever reaches that layer: no threshold leaks into the next layer.
"""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as w
from traitlets import link

from wcembed.explore.data.index import DIVERSE_CHIPS
from wcembed.explore.state.layers import RegionLayer
from wcembed.explore.state.regions import REGION_LAYERS
from wcembed.explore.state.search import LIMITS, MODES
from wcembed.explore.state.session import ExploreSession

CONTROL_WIDTH = "260px"
SCOPE_TRAITS = {"year": "year", "embedding_set": "name", "compare_set": "beside"}


class Controls:
    """The settings' controls (:attr:`widgets`, by setting name) and the shown layer's sliders.

    Parameters
    ----------
    session : ExploreSession
    years, kinds
        The years and imagery kinds offered.
    on_layer : callable
        ``on_layer(change)``: a shown layer's threshold or opacity changed (the map redraws).
    """

    def __init__(self, session: ExploreSession, years: list[int], kinds: list[str], on_layer: Callable) -> None:
        self.session, self.on_layer = session, on_layer

        def narrow():  # a layout of its own for each control: one control's layout can change alone
            return w.Layout(width=CONTROL_WIDTH)

        s = session
        self.widgets = {
            "k": w.BoundedIntText(min=LIMITS["k"][0], max=LIMITS["k"][1], description="k", layout=narrow()),
            "year": w.Dropdown(options=years, description="year", layout=narrow()),
            "imagery": w.Dropdown(options=kinds or ["TCC"], description="imagery", layout=narrow()),
            "mode": w.ToggleButtons(options=list(MODES)),
            "spread": w.Checkbox(
                description="spread out",
                tooltip=f"results at least {DIVERSE_CHIPS} chips apart",
                indent=False,
                layout=w.Layout(width="120px"),
            ),
            "region": w.Dropdown(options=self._regions(), value=s.region, description="region", layout=narrow()),
            "embedding_set": w.Dropdown(options=s.scope.sets, description="set", layout=narrow()),
            "compare_set": w.Dropdown(options=self._besides(), description="beside", layout=narrow()),
        }
        for name in ("k", "mode", "spread"):
            link((s.search, name), (self.widgets[name], "value"))
        for name, trait in SCOPE_TRAITS.items():
            link((s.scope, trait), (self.widgets[name], "value"))
        link((s, "imagery"), (self.widgets["imagery"], "value"))
        self.widgets["region"].observe(self._region_chosen, names="value")
        s.observe(lambda c: setattr(self.widgets["region"], "value", c["new"]), names="region")
        s.scope.observe(lambda _: setattr(self.widgets["compare_set"], "options", self._besides()), names="name")
        self._sliders: dict[RegionLayer, tuple] = {}  # a layer -> its own sliders, linked to it
        self._no_layer = self._slider_pair(None)
        self.region_box = w.HBox([self.widgets["region"], *self._no_layer], layout=w.Layout(flex_flow="row wrap"))

    def _regions(self) -> list[str]:
        """The region layers the database can show (the agreements only with a second set)."""
        return [r for r in REGION_LAYERS if "agreement" not in r or len(self.session.scope.sets) > 1]

    def _besides(self) -> list[tuple[str, str]]:
        """The sets that can be beside the one shown: every other set of the database."""
        scope = self.session.scope
        return [("none", ""), *((n, n) for n in scope.sets if n != scope.name)]

    def _region_chosen(self, change: dict) -> None:
        s = self.session
        s.attempt(s.show_region, change["new"])
        self.widgets["region"].value = s.region  # refused: the dropdown shows the region that stays

    @property
    def threshold(self) -> w.FloatSlider:
        """The threshold slider shown: the shown layer's own (a hidden one while no layer has a threshold)."""
        return self.region_box.children[1]

    @property
    def opacity(self) -> w.FloatSlider:
        """The opacity slider shown: the shown layer's own (a hidden one while no layer is shown)."""
        return self.region_box.children[2]

    def show(self, layer: RegionLayer | None) -> None:
        """Put ``layer``'s own sliders beside the region dropdown (made when it is first shown; the sliders of
        layers no longer kept are let go)."""
        kept = set(self.session.layers.by_key.values())
        self._sliders = {held: pair for held, pair in self._sliders.items() if held in kept}
        if layer is not None and layer not in self._sliders:
            self._sliders[layer] = self._slider_pair(layer)
        pair = self._no_layer if layer is None else self._sliders[layer]
        self.region_box.children = [self.widgets["region"], *pair]

    def _slider_pair(self, layer: RegionLayer | None) -> tuple[w.FloatSlider, w.FloatSlider]:
        """A layer's threshold and opacity sliders, linked to it; for None, a hidden pair that keeps their place
        (nothing moves when a layer comes and goes)."""
        threshold = w.FloatSlider(description="show ≥", layout=w.Layout(width="330px"), readout_format=".3g")
        opacity = w.FloatSlider(min=LIMITS["opacity"][0], max=LIMITS["opacity"][1], step=0.05,
                                description="opacity", layout=w.Layout(width=CONTROL_WIDTH))  # fmt: skip
        threshold.disabled = layer is None or layer.rgb
        opacity.disabled = layer is None
        for control in (threshold, opacity):  # hidden, not removed: its place kept
            control.layout.visibility = "hidden" if control.disabled else "visible"
        if layer is not None:
            if not layer.rgb:
                t = layer.threshold
                lo, hi = min(layer.lo, t), max(layer.hi, t)
                # widen first, then narrow: the slider refuses a min above its max at every step
                threshold.min, threshold.max = min(lo, threshold.min), max(hi, threshold.max)
                threshold.step, threshold.value = layer.step, t
                threshold.min, threshold.max = lo, hi
                tie(layer, "threshold", threshold)
            opacity.value = layer.opacity
            tie(layer, "opacity", opacity)
            layer.observe(self.on_layer, names=["threshold", "opacity"])
        return threshold, opacity

    def widget(self) -> w.VBox:
        """The controls in rows: settings (the set boxes only with several sets), mode, region and sliders."""
        c = self.widgets
        sets = [c["embedding_set"], c["compare_set"]] if len(self.session.scope.sets) > 1 else []
        settings = w.HBox([c["k"], c["year"], c["imagery"], *sets, c["spread"]], layout=w.Layout(flex_flow="row wrap"))
        box = w.VBox([settings, c["mode"], self.region_box])
        box.add_class("wcembed-controls")
        return box


def tie(layer: RegionLayer, name: str, slider: w.FloatSlider) -> None:
    """Link a layer's setting and its slider both ways, the slider always showing the value the layer took (a
    threshold is snapped to the layer's step grid: the snapped value goes back to the slider, where
    :func:`traitlets.link` would leave the slider at the value sent)."""

    def to_layer(change: dict) -> None:
        setattr(layer, name, change["new"])
        if slider.value != getattr(layer, name):
            slider.value = getattr(layer, name)

    slider.observe(to_layer, names="value")
    layer.observe(lambda change: setattr(slider, "value", change["new"]), names=name)
