"""The live map: leafmap with WMS imagery, bound to an :class:`~wcembed.explore.session.ExploreSession`.

The session holds the state and does the work; this view draws it with ipyleaflet and
ipywidgets and turns the user's input (a click, a drawn area, a control) into the
session's operations. Every callback goes through :meth:`ExploreSession.attempt`, so a
failure becomes the status line, never an exception inside the widget machinery.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

import numpy as np

from wcembed.errors import BadParameterError, WMSError, WMSTransientError
from wcembed.explore.index import DIVERSE_CHIPS
from wcembed.explore.session import CHANGE_YEARS, MODES, REGION_LAYERS, ExploreSession
from wcembed.explore.styles import label_style, results_geojson
from wcembed.product import LAYER_KINDS, YEARS, layer_name

log = logging.getLogger(__name__)

_SESSION_API = frozenset(
    {
        "index", "labels", "results", "query", "region_layers", "changes", "positives", "negatives", "explainer",
        "click", "select_area", "show_similarity", "show_scores", "show_change", "change_pairs", "changed_like",
        "show_pca", "show_region", "add_labels", "toggle_label", "save_labels", "load_labels", "vectors", "explain",
        "diverse",
    }
)  # fmt: skip
"""What the view passes through to its session, so that code written against the map reads the same."""


class Explorer:
    """A leafmap map with WMS imagery: click a place, see the most similar places.

    Parameters
    ----------
    index : wcembed.explore.index.ChipIndex
    wms_url : str
        WMS with ESA's layer names (ESA's own, or :class:`wcembed.explore.wms.LocalWMS`).
    year : int
        Year searched and shown.
    k : int
        Number of neighbours.
    center, zoom
        The map's starting view ((lat, lon) in degrees, Leaflet zoom).
    thumbnails : wcembed.explore.wms.WMSClient, optional
        Where thumbnails come from (default: a client of ``wms_url``).
    explainer : wcembed.explore.explain.MatchExplainer, optional
        Each result card gets an "explain" button.
    session : ExploreSession, optional
        The state to show (default: a new session of ``index``, ``year``, ``k``, ``explainer``).

    A click on the map calls the session's :meth:`~ExploreSession.click`, a polygon or rectangle
    drawn on the map its :meth:`~ExploreSession.select_area`; the controls change its settings and
    the region layer shown. Code calls the same operations on :attr:`session` (or on the view,
    which passes them through) and the map follows.

    Whole-region layers (:mod:`wcembed.explore.layers`) are drawn as one image over the chips; the
    threshold slider hides values below it and moves only when the user (or :meth:`ExploreSession.set`)
    moves it.

    Examples
    --------
    >>> explorer = Explorer(ChipIndex("outputs/lancedb"), wms_url)  # doctest: +SKIP
    >>> explorer.click(-75.62, 37.675)  # doctest: +SKIP
    >>> explorer.widget()  # doctest: +SKIP
    """

    def __init__(
        self,
        index,
        wms_url: str,
        year: int = 2020,
        k: int = 10,
        center=None,
        zoom: int = 12,
        thumbnails=None,
        explainer=None,
        session: ExploreSession | None = None,
    ) -> None:
        import ipywidgets as w
        import leafmap
        from ipyleaflet import DrawControl, GeoJSON, ImageOverlay, WidgetControl

        from wcembed.explore.wms import WMSClient

        self.session = session or ExploreSession(index, year, k, explainer=explainer)
        s = self.session
        self.wms_url = wms_url
        self.thumbs = thumbnails or WMSClient(wms_url)
        self.map = leafmap.Map(center=center or [37.67, -75.62], zoom=zoom, draw_control=False, measure_control=False)
        self.draw = DrawControl(polygon={"shapeOptions": {"color": "#ffff00"}}, rectangle={"shapeOptions": {}})
        self.draw.polyline, self.draw.circlemarker = {}, {}
        self.draw.on_draw(self.handle_draw)
        self.map.add_control(self.draw)
        offered = set(self.thumbs.layers())
        self.layers = {kind: layer_name(s.year, kind) for kind in LAYER_KINDS if layer_name(s.year, kind) in offered}
        """Imagery layer kind (``TCC``, ``FCC``, ``MAP``) to the WMS layer name, for the layers the WMS offers."""
        for kind, name in self.layers.items():
            self.map.add_wms_layer(
                url=wms_url, layers=name, name=name, format="image/png", transparent=True, shown=kind == "TCC"
            )
        if "CHIPS" in offered:
            self.map.add_wms_layer(url=wms_url, layers="CHIPS", name="chips", format="image/png", transparent=True)
        empty = {"type": "FeatureCollection", "features": []}
        self.result_layer = GeoJSON(data=empty, name="neighbours", style_callback=lambda f: f["properties"]["style"])
        self.map.add_layer(self.result_layer)
        self.label_layer = GeoJSON(data=s.labels.to_geojson(), name="labels", style_callback=label_style)
        self.map.add_layer(self.label_layer)
        self.region_overlay = ImageOverlay(url="", bounds=((0, 0), (0, 0)), opacity=s.opacity, name="region layer")
        self.map.add_layer(self.region_overlay)
        self.legend = w.HTML()
        self.compare_box = w.VBox()  # both years of the clicked chip, while the change layer is shown
        self.map.add_control(WidgetControl(widget=self.legend, position="bottomright"))
        self.k = w.IntSlider(value=s.k, min=1, max=50, description="k")
        self.year_box = w.Dropdown(options=list(YEARS), value=s.year, description="year")
        self.layer_box = w.Dropdown(
            options=list(self.layers), value="TCC" if "TCC" in self.layers else None, description="layer"
        )
        self.mode = w.ToggleButtons(options=list(MODES), value=s.mode)
        self.spread = w.Checkbox(
            value=s.spread, description="spread out", tooltip=f"results at least {DIVERSE_CHIPS} chips apart",
            indent=False,
        )  # fmt: skip
        self.status = w.HTML()  # the last operation's outcome
        self.region_status = w.HTML()  # how many chips the region layer shows
        self.gallery = w.HBox(layout=w.Layout(flex_flow="row wrap"))
        self.gallery.add_class("wcembed-gallery")  # for the browser test, and for a user's CSS
        self.explain_box = w.HTML()  # where in a result it is like the query (after an "explain" click)
        self.region_box = w.Dropdown(options=REGION_LAYERS, value=s.region, description="region")
        self.threshold = w.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.01, description="show ≥")
        self.opacity = w.FloatSlider(value=s.opacity, min=0.0, max=1.0, step=0.05, description="opacity")
        self._syncing = False  # True while the view writes the session's state into its controls
        for control, setting in ((self.k, "k"), (self.year_box, "year"), (self.mode, "mode"), (self.spread, "spread"),
                                 (self.opacity, "opacity")):  # fmt: skip
            control.observe(lambda ch, setting=setting: self._user(s.set, **{setting: ch["new"]}), names="value")
        self.threshold.observe(self._threshold_moved, names="value")
        self.region_box.observe(lambda ch: self._user(s.show_region, ch["new"]), names="value")
        self.layer_box.observe(lambda ch: self._show_layer(ch["new"]), names="value")
        self.map.on_interaction(self.handle_interaction)
        self.map.observe(self._moved, names="bounds")  # panned or zoomed: the region layer of the new view
        self._view = None  # the widget(), made once
        s.subscribe(self._render)
        self._render(set(_RENDERERS))

    def __getattr__(self, name: str):
        if name in _SESSION_API:
            return getattr(self.session, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ------------------------------------------------------------------ input
    def _user(self, operation, *args, **kwargs) -> None:
        """A control moved: run the session's operation (errors to the status line), unless the view itself is
        writing the session's state into the controls."""
        if not self._syncing:
            self.session.attempt(operation, *args, **kwargs)
            self._sync_controls()  # a refused value or a layer that could not be made: the controls say what holds

    def _threshold_moved(self, change: dict) -> None:
        """The threshold slider moved. Its front end snaps a value it is given to its step grid and sends that
        back; a move within half a step of the session's threshold is that echo, not the user, and is ignored
        (else every new layer's range would move the threshold a little: issue 29)."""
        if abs(change["new"] - self.session.threshold) >= self.threshold.step / 2:
            self._user(self.session.set, threshold=change["new"])

    def handle_interaction(self, **event) -> None:
        """ipyleaflet's interaction callback: a click at ``coordinates`` (lat, lon) selects a chip."""
        if event.get("type") == "click":
            lat, lon = event["coordinates"]
            self.session.attempt(self.session.click, lon, lat)

    def handle_draw(self, target=None, action: str = "created", geo_json: dict | None = None) -> None:
        """ipyleaflet's draw callback: a drawn polygon or rectangle selects the chips under it."""
        if action == "created" and geo_json:
            try:
                self.session.attempt(self._select_drawn, geo_json)
            finally:
                self.draw.clear()

    def _select_drawn(self, geo_json: dict):
        import shapely

        try:
            shape = shapely.geometry.shape(geo_json["geometry"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BadParameterError(f"cannot search this area: {exc}") from None
        return self.session.select_area(shape)

    def _show_layer(self, kind: str) -> None:
        for layer in self.map.layers:
            if layer.name in self.layers.values():
                layer.visible = layer.name == self.layers.get(kind)

    # ------------------------------------------------------------------ drawing the session
    def _render(self, changed: set[str]) -> None:
        for draw in dict.fromkeys(draw for aspect, draw in _RENDERERS.items() if aspect in changed):
            draw(self)  # once each, in a fixed order
        if changed & {"year", "k", "mode", "spread", "region", "threshold", "opacity"}:
            self._sync_controls()

    def _sync_controls(self) -> None:
        """Write the session's settings into the controls, without their observers acting on it."""
        s = self.session
        self._syncing = True
        try:
            self.k.value, self.year_box.value, self.mode.value, self.spread.value = s.k, s.year, s.mode, s.spread
            self.region_box.value, self.opacity.value = s.region, s.opacity
            self._sync_threshold()
        finally:
            self._syncing = False

    def _sync_threshold(self) -> None:
        layer, t, slider = self.session.region_layer, self.session.threshold, self.threshold
        rgb = layer is not None and layer.values.ndim == 3
        slider.disabled = layer is None or rgb
        if layer is None or rgb:
            return
        # the slider spans the layer's values and the threshold (it never moves the threshold to fit), in steps
        # of a power of ten about a hundredth of the range, its ends on that grid
        lo, hi = min(float(layer.vmin), t), max(float(layer.vmax), t)
        step = 10.0 ** np.floor(np.log10((hi - lo) / 100)) if hi > lo else 0.01
        lo, hi = np.floor(lo / step) * step, np.ceil(hi / step) * step
        # widen first, then narrow: the slider refuses a min above its max at every step
        slider.min, slider.max = min(lo, slider.min), max(hi, slider.max)
        slider.value = t
        slider.min, slider.max, slider.step = lo, hi, step

    def _draw_overlay(self) -> None:
        """Draw the region layer for the map's view: an image of what is in view at the map's zoom, each chip
        a crisp square (:meth:`~wcembed.explore.layers.ChipRaster.view_png`), redrawn when the view moves;
        the whole layer while the map has not reported its view (no front end yet)."""
        s = self.session
        shown = s.shown()
        drawn = None
        if shown is not None:
            view = self._view_bounds()
            drawn = shown.png_data_url() if view is None else shown.view_png(view, self.map.zoom)
        if drawn is None:
            self.region_overlay.url = ""
        else:
            url, (w, south, e, n) = drawn
            self.region_overlay.bounds = ((south, w), (n, e))
            self.region_overlay.url = url
        self.legend.value = "" if shown is None else s.region_layer.legend_html()
        self.region_status.value = html.escape(s.region_status)

    def _view_bounds(self) -> tuple[float, float, float, float] | None:
        """The map's view (west, south, east, north; degrees) as its front end last reported it, or None."""
        if not self.map.bounds:
            return None
        (south, west), (north, east) = self.map.bounds
        return west, south, east, north

    def _moved(self, change: dict) -> None:
        if self.session.region_layer is not None:
            self.session.attempt(self._draw_overlay)

    def _draw_results(self) -> None:
        import ipywidgets as w

        s = self.session
        if s.results is None:
            self.result_layer.data, self.gallery.children = {"type": "FeatureCollection", "features": []}, []
            return
        self.result_layer.data = results_geojson(s.results, s.query)
        rows = list(s.results.itertuples(index=False))
        if s.pair_years:
            self.gallery.children = [w.HTML(self.pair_html(row, s.pair_years)) for row in rows]
            return
        cards = [
            w.HTML(self.thumbnail_html(r.chip_id, r.geometry.bounds, f"#{r.rank} {r.chip_id}<br>d = {r.distance:.4f}"))
            for r in rows
        ]
        if s.explainer is not None:
            cards = [w.VBox([card, self._explain_button(r.chip_id)]) for card, r in zip(cards, rows, strict=True)]
        self.gallery.children = cards

    def _draw_explanation(self) -> None:
        import base64

        x = self.session.explanation
        if x is None:
            self.explain_box.value = ""
            return
        note = " (UNTRAINED weights: not Clay's view)" if x.untrained else ""
        self.explain_box.value = (
            f'<img src="data:image/png;base64,{base64.b64encode(x.png).decode()}" width="256" height="256" '
            f'alt="where {x.result} is like {x.query}"><br>where {html.escape(x.result)} is like '
            f"{html.escape(x.query)}: bright patches match some part of it best{note} ({x.seconds:.1f} s)"
        )

    def _draw_compare(self) -> None:
        chip = self.session.compare_chip
        self.compare_box.children = [] if chip is None else [self.compare_years(chip)]

    def _explain_button(self, chip: str):
        import ipywidgets as w

        button = w.Button(description="explain", tooltip="where in this chip it is like the query", icon="search")
        button.on_click(lambda _: self.session.attempt(self.session.explain, chip))
        return button

    # ------------------------------------------------------------------ views
    def widget(self):
        """The map with its controls, status line and thumbnail gallery (one view, made once)."""
        import ipywidgets as w

        if self._view is None:
            controls = w.HBox([self.k, self.year_box, self.layer_box, self.mode, self.spread])
            region = w.HBox([self.region_box, self.threshold, self.opacity, self.region_status])
            parts = [controls, region, self.map, self.status, self.gallery, self.explain_box, self.compare_box]
            self._view = w.VBox(parts)
        return self._view

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """The live map for a front end with widgets, and a picture of it for everything else.

        A notebook read without a kernel (GitHub, nbviewer, an executed copy opened in JupyterLab,
        which does not trust it) cannot draw the widget and shows the picture
        (:func:`wcembed.explore.figures.map_figure`) instead of ``VBox(...)`` text. The picture is of the
        moment the map was displayed; when the WMS cannot be reached it is left out.
        """
        import base64

        from wcembed.plots import figure_png

        bundle = self.widget()._repr_mimebundle_(include=include, exclude=exclude)
        try:
            bundle["image/png"] = base64.b64encode(figure_png(self.figure())).decode()
        except (WMSError, WMSTransientError) as exc:
            log.warning("no static picture of the map: %s", exc)
        return bundle

    def figure(self, size: tuple[int, int] = (900, 520)):
        """The map's view as a static matplotlib figure (:func:`wcembed.explore.figures.map_figure`)."""
        from wcembed.explore.figures import map_figure

        return map_figure(self.session, self.thumbs, self.layer, self.map.center, self.map.zoom, size)

    def compare_years(self, chip: str | None = None, years: tuple[int, int] = CHANGE_YEARS, zoom: int = 14):
        """A split map of a chip (default: the query) in two years' imagery, left and right of a slider."""
        import leafmap
        import shapely
        from ipyleaflet import GeoJSON, SplitMapControl, WMSLayer

        chip = chip or self.session.query_chip
        if chip is None:
            raise BadParameterError("no chip to compare: click one or name it")
        shape = self.session.index.footprint(chip)
        m = leafmap.Map(center=[shape.centroid.y, shape.centroid.x], zoom=zoom, draw_control=False)
        left, right = (
            WMSLayer(url=self.wms_url, layers=layer_name(y, "TCC"), format="image/png", transparent=True, name=str(y))
            for y in years
        )
        m.add_control(SplitMapControl(left_layer=left, right_layer=right))
        outline = {"type": "Feature", "geometry": shapely.geometry.mapping(shape), "properties": {}}
        m.add_layer(GeoJSON(data=outline, style={"color": "#00ffff", "weight": 3, "fillOpacity": 0}))
        return m

    def pair_html(self, row, years: tuple[int, int]) -> str:
        """Both years' 96 px thumbnails of a result side by side, with its rank and score."""
        kind = self.layer_box.value or "TCC"
        imgs = "".join(
            self._img(row.geometry.bounds, layer_name(y, kind), 96, f"{row.chip_id} {y}", f' title="{y}"')
            for y in years
        )
        return f"{imgs}<br>#{row.rank} {row.chip_id}<br>score {row.score:.3f}"

    def thumbnail_html(self, chip: str, bounds, caption: str) -> str:
        """A 128 px thumbnail of a chip (``bounds``: west, south, east, north in degrees) with a caption below,
        as an ``<img>`` the browser loads from the WMS (lazily, with its own cache)."""
        return f"{self._img(bounds, self.layer, 128, chip)}<br>{caption}"

    def _img(self, bounds, layer: str | None, size: int, alt: str, extra: str = "") -> str:
        """An ``<img>`` of a WMS layer over ``bounds`` (degrees) that the browser loads lazily."""
        url = self.thumbs.getmap_url(tuple(bounds), layer, (size, size)) if layer else ""
        return f'<img src="{html.escape(url)}" width="{size}" height="{size}" loading="lazy" alt="{alt}"{extra}>'

    @property
    def layer(self) -> str | None:
        """The WMS layer name of the imagery shown (the layer dropdown's choice, else the first offered)."""
        return self.layers.get(self.layer_box.value or "TCC", next(iter(self.layers.values()), None))

    def gallery_figure(self, size: int = 160):
        """The last results' thumbnails as a static matplotlib figure (for notebooks read without a kernel)."""
        from wcembed.explore.figures import gallery_figure

        return gallery_figure(self.session.results, self.thumbs, self.layer, size)

    def to_html(self, path: str | Path, *, center=None, zoom: int | None = None) -> Path:
        """The current map (imagery, neighbours, query chip, region layer and its legend, labels) as a
        standalone Leaflet page (:func:`wcembed.explore.pages.export_html`)."""
        from wcembed.explore.pages import export_html

        return export_html(
            path,
            self.session,
            self.wms_url,
            self.layer,
            center=center or list(self.map.center),
            zoom=zoom or int(self.map.zoom),
        )


_RENDERERS = {
    "results": Explorer._draw_results,
    "labels": lambda v: setattr(v.label_layer, "data", v.session.labels.to_geojson()),
    "status": lambda v: setattr(v.status, "value", html.escape(v.session.status)),
    "region": Explorer._draw_overlay,
    "threshold": Explorer._draw_overlay,
    "opacity": lambda v: setattr(v.region_overlay, "opacity", v.session.opacity),
    "explanation": Explorer._draw_explanation,
    "compare": Explorer._draw_compare,
}
"""What the view redraws for each aspect of the session that changed."""
