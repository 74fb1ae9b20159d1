"""The live map: leafmap with WMS imagery, a thin binding of an :class:`~wcembed.explore.state.session.ExploreSession`.

The session holds the state and does the work; this view links its controls to the
session's traits (:func:`traitlets.link`), draws what the session holds when it changes
(:meth:`~traitlets.HasTraits.observe`), and turns a click or a drawn area into the
session's operations through :meth:`~wcembed.explore.state.session.ExploreSession.attempt`,
so a failure becomes the status line, never an exception inside the widget machinery.
It keeps no copy of the state.
"""

from __future__ import annotations

import base64
import html
import logging
from pathlib import Path

import ipywidgets as w
import leafmap
import shapely
from ipyleaflet import DrawControl, GeoJSON, ImageOverlay, WidgetControl, WMSLayer
from traitlets import link

from wcembed.core.errors import BadParameterError, WMSError, WMSTransientError
from wcembed.core.product import LAYER_KINDS, YEARS, layer_name
from wcembed.explore.data.index import DIVERSE_CHIPS
from wcembed.explore.state.regions import REGION_LAYERS
from wcembed.explore.state.scope import CHANGE_YEARS
from wcembed.explore.state.search import LIMITS, MODES
from wcembed.explore.state.session import ExploreSession
from wcembed.explore.views.figures import gallery_figure, map_figure
from wcembed.explore.views.pages import export_html
from wcembed.explore.views.panel import LabelPanel
from wcembed.explore.views.styles import TEXT_LINE, label_style, legend_html, results_geojson
from wcembed.explore.views.wms import WMSClient
from wcembed.tools.plots import figure_png

log = logging.getLogger(__name__)

ONLINE_BASEMAP = "OpenStreetMap"
"""The basemap under the imagery by default (tiles from the internet); ``basemap=None`` draws none."""
CONTROL_WIDTH = "260px"


class Explorer:
    """A leafmap map with WMS imagery of a session: click a place, see the most similar places.

    Parameters
    ----------
    session : ExploreSession
        The state shown and changed (its index, year, query, layers, labels).
    wms_url : str
        WMS with ESA's layer names (ESA's own, or :class:`wcembed.explore.views.wms.LocalWMS`).
    center, zoom
        The map's starting view ((lat, lon) in degrees, Leaflet zoom).
    thumbnails : wcembed.explore.views.wms.WMSClient, optional
        Where thumbnails come from (default: a client of ``wms_url``).
    basemap : str or None
        A leafmap basemap name under the imagery (default OpenStreetMap, fetched from the internet);
        None for no basemap (offline, or where nothing but the WMS may be reached).

    Notes
    -----
    A click on the map calls the session's :meth:`~ExploreSession.click`, a polygon or rectangle
    drawn on the map its :meth:`~ExploreSession.select_area`; the controls are linked to its
    settings. Code changes the session (``session.set(year=2021)``, ``session.click(lon, lat)``) and
    the map follows. The imagery, the thumbnails and the region layer are of the session's year.

    Examples
    --------
    >>> session = ExploreSession(ChipIndex("outputs/lancedb"))  # doctest: +SKIP
    >>> explorer = Explorer(session, wms_url)  # doctest: +SKIP
    >>> session.click(-75.62, 37.675)  # doctest: +SKIP
    >>> explorer  # the live map, its controls, the gallery and the labelling panel  # doctest: +SKIP
    """

    def __init__(
        self,
        session: ExploreSession,
        wms_url: str,
        *,
        center=None,
        zoom: int = 12,
        thumbnails=None,
        basemap: str | None = ONLINE_BASEMAP,
    ) -> None:
        if not isinstance(session, ExploreSession):
            raise BadParameterError(f"an Explorer shows an ExploreSession, not {type(session).__name__}")
        self.session = s = session
        self.wms_url = wms_url
        self.thumbs = thumbnails or WMSClient(wms_url)
        self.basemap = basemap
        self.map = self._new_map(center or [37.67, -75.62], zoom, measure_control=False)
        self.draw = DrawControl(polygon={"shapeOptions": {"color": "#ffff00"}}, rectangle={"shapeOptions": {}})
        self.draw.polyline, self.draw.circlemarker = {}, {}
        self.draw.on_draw(self.handle_draw)
        self.map.add_control(self.draw)
        offered = set(self.thumbs.layers())
        years = sorted(set(s.index.years) | {s.year}) or list(YEARS)
        self.offered = {(y, k) for y in years for k in LAYER_KINDS if layer_name(y, k) in offered}
        """(year, kind) of the imagery layers the WMS offers."""
        kinds = [k for k in LAYER_KINDS if any(kind == k for _, kind in self.offered)]
        if kinds and s.imagery not in kinds:
            s.imagery = kinds[0]
        self.imagery_layer = WMSLayer(url=wms_url, layers=self.layer or "", name="imagery", format="image/png",
                                      transparent=True, visible=self.layer is not None)  # fmt: skip
        """The one imagery layer on the map: of the year and kind shown (only what is seen is fetched)."""
        self.map.add_layer(self.imagery_layer)
        if "CHIPS" in offered:
            self.map.add_wms_layer(url=wms_url, layers="CHIPS", name="chips", format="image/png", transparent=True)
        empty = {"type": "FeatureCollection", "features": []}
        self.result_layer = GeoJSON(data=empty, name="neighbours", style_callback=lambda f: f["properties"]["style"])
        self.map.add_layer(self.result_layer)
        self.label_layer = GeoJSON(data=s.labels.to_geojson(), name="labels", style_callback=label_style)
        self.map.add_layer(self.label_layer)
        self.region_overlay = ImageOverlay(url="", bounds=((0, 0), (0, 0)), name="region layer", visible=False)
        self.map.add_layer(self.region_overlay)
        self.legend = w.HTML()
        self.compare_box = w.VBox()  # both years of the clicked chip, while the change layer is shown
        self.map.add_control(WidgetControl(widget=self.legend, position="bottomright"))
        self.controls = self._controls(years, kinds)
        """The controls, each linked to the setting of the same name of the model that holds it."""
        self._sliders: dict = {}  # RegionLayer -> its own (threshold, opacity) sliders, linked to it
        self._no_layer = self._slider_pair(None)  # shown, hidden, while no layer is
        self.region_box = w.HBox([self.controls["region"], *self._no_layer], layout=w.Layout(flex_flow="row wrap"))
        self.status = w.HTML(layout=w.Layout(min_height=TEXT_LINE))  # the last operation's outcome
        self.region_status = w.HTML(layout=w.Layout(min_height=TEXT_LINE))  # the region layer's count line
        self.gallery = w.HBox(layout=w.Layout(flex_flow="row wrap"))
        self.gallery.add_class("wcembed-gallery")  # for the browser test, and for a user's CSS
        self.compare_line = w.HTML()  # how much the two sets agree on the query chip
        self.gallery_other = w.HBox(layout=w.Layout(flex_flow="row wrap"))  # the same search in the other set
        self.gallery_other.add_class("wcembed-gallery-other")
        self.explain_box = w.HTML()  # where in a result it is like the query (after an "explain" click)
        self.explain_line = w.HTML()  # why matches cannot be explained (or that the weights are untrained)
        self.panel = LabelPanel(s.labelling, self.thumbnail_html)
        self.map.add_layer(self.panel.outline)
        self._view = None  # the widget(), made once
        self._observe(s)
        self._bind_layer({"old": None, "new": s.layer})
        self._draw_results()
        self.status.value = html.escape(s.status)
        self.explain_line.value = html.escape(s.explaining.note)

    def _controls(self, years: list[int], kinds: list[str]) -> dict:
        """The controls of the settings, each linked to its model's trait; the region is chosen through
        :meth:`~ExploreSession.show_region` (a layer that cannot be made is refused and the dropdown goes back)."""
        s = self.session

        def narrow():  # a layout of its own for each control: one control's layout can change alone
            return w.Layout(width=CONTROL_WIDTH)

        controls = {
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
        owners = {"k": s.search, "mode": s.search, "spread": s.search, "year": s.scope, "imagery": s,
                  "embedding_set": s.scope, "compare_set": s.scope}  # fmt: skip
        for name, owner in owners.items():
            link((owner, {"embedding_set": "name", "compare_set": "beside"}.get(name, name)), (controls[name], "value"))
        controls["region"].observe(self._region_chosen, names="value")
        return controls

    def _regions(self) -> list[str]:
        """The region layers this database can show (agreement only with a second set)."""
        return [r for r in REGION_LAYERS if r != "agreement" or len(self.session.scope.sets) > 1]

    def _besides(self) -> list[tuple[str, str]]:
        """The sets that can be beside the one shown: every other set of the database."""
        scope = self.session.scope
        return [("none", ""), *((n, n) for n in scope.sets if n != scope.name)]

    def _region_chosen(self, change: dict) -> None:
        s = self.session
        s.attempt(s.show_region, change["new"])
        self.controls["region"].value = s.region  # refused: the dropdown shows the region that stays

    def _observe(self, s: ExploreSession) -> None:
        """Draw what the models hold when it changes."""
        self.map.on_interaction(self.handle_interaction)
        self.map.observe(lambda _: self._redraw(self._draw_overlay), names="bounds")  # panned or zoomed
        s.scope.observe(lambda _: self._show_imagery(), names="year")
        s.scope.observe(lambda _: setattr(self.controls["compare_set"], "options", self._besides()), names="name")
        s.observe(lambda _: self._show_imagery(), names="imagery")
        s.observe(lambda c: setattr(self.controls["region"], "value", c["new"]), names="region")
        s.observe(lambda _: self._draw_results(), names="imagery")
        s.search.observe(lambda _: self._draw_results(), names=["results", "results_other"])
        s.search.observe(lambda _: setattr(self.compare_line, "value", html.escape(s.search.compare_line)),
                         names="compare_line")  # fmt: skip
        s.labelling.observe(lambda _: setattr(self.label_layer, "data", s.labels.to_geojson()), names="labels")
        s.observe(lambda _: setattr(self.status, "value", html.escape(s.status)), names="status")
        s.layers.observe(self._bind_layer, names="shown")
        s.layers.observe(lambda _: self._draw_region_line(), names="note")
        s.explaining.observe(lambda _: self._draw_explanation(), names="explanation")
        s.explaining.observe(lambda _: setattr(self.explain_line, "value", html.escape(s.explaining.note)),
                             names="note")  # fmt: skip
        s.observe(lambda _: self._draw_compare(), names=["region", "imagery"])
        s.search.observe(lambda _: self._draw_compare(), names="last")

    def _new_map(self, center, zoom: int, **kw):
        """A leafmap map with this explorer's basemap (none at all when it is None: no tile is ever asked of
        a host but the WMS)."""
        m = leafmap.Map(
            center=center, zoom=zoom, draw_control=False, **kw, **({"basemap": self.basemap} if self.basemap else {})
        )
        if self.basemap is None:
            for layer in [x for x in m.layers if getattr(x, "base", False)]:
                m.remove(layer)  # before the map is drawn
        return m

    # ------------------------------------------------------------------ input
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

        try:
            shape = shapely.geometry.shape(geo_json["geometry"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BadParameterError(f"cannot search this area: {exc}") from None
        return self.session.select_area(shape)

    def _redraw(self, draw) -> None:
        self.session.attempt(draw)

    # ------------------------------------------------------------------ drawing the session
    def _show_imagery(self) -> None:
        """The imagery layer shows the year and kind shown (hidden where the WMS lacks them)."""
        name = self.layer
        if name is not None:
            self.imagery_layer.layers = name
        self.imagery_layer.visible = name is not None

    @property
    def threshold(self):
        """The threshold slider on the map: the shown layer's own (a hidden one while no layer, or an RGB
        layer, has a threshold)."""
        return self.region_box.children[1]

    @property
    def opacity(self):
        """The opacity slider on the map: the shown layer's own (a hidden one while no layer is shown)."""
        return self.region_box.children[2]

    def _slider_pair(self, layer):
        """A layer's own threshold and opacity sliders, linked to it; for None, a hidden pair that keeps their
        place (nothing moves when a layer comes and goes). A layer has its own sliders, so a value the browser
        sends for one layer's slider never reaches another layer."""
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
                threshold.max, threshold.min = hi, lo  # max first: the slider refuses a min above its max
                threshold.step, threshold.value = layer.step, t
                link((layer, "threshold"), (threshold, "value"))
            opacity.value = layer.opacity
            link((layer, "opacity"), (opacity, "value"))
            layer.observe(self._layer_changed, names=["threshold", "opacity"])
        return threshold, opacity

    def _bind_layer(self, change: dict) -> None:
        """A layer is shown: its own sliders take the slots beside the region dropdown (made when it is first
        shown; the sliders of layers no longer kept are let go), and it is drawn."""
        layer, kept = change["new"], set(self.session.layers.by_key.values())
        self._sliders = {held: pair for held, pair in self._sliders.items() if held in kept}
        if layer is not None and layer not in self._sliders:
            self._sliders[layer] = self._slider_pair(layer)
        pair = self._no_layer if layer is None else self._sliders[layer]
        self.region_box.children = [self.controls["region"], *pair]
        self._redraw(self._draw_overlay)

    def _layer_changed(self, change: dict) -> None:
        if change["owner"] is not self.session.layer:
            return  # a layer not shown: drawn when it is
        if change["name"] == "opacity":
            self.region_overlay.opacity = change["new"]
        else:
            self._redraw(self._draw_overlay)

    def _draw_overlay(self) -> None:
        """Draw the region layer for the map's view: an image of what is in view at the map's zoom, each chip
        a crisp square (:meth:`~wcembed.explore.compute.layers.ChipRaster.view_png`), redrawn when the view moves;
        the whole layer while the map has not reported its view (no front end yet)."""
        layer = self.session.layer
        drawn = None
        if layer is not None:
            shown, view = layer.shown(), self._view_bounds()
            drawn = shown.png_data_url() if view is None else shown.view_png(view, self.map.zoom)
        if drawn is None:  # nothing to draw: the overlay is hidden (no empty image in the map)
            self.region_overlay.visible = False
            self.region_overlay.url = ""
        else:
            url, (w, south, e, n) = drawn
            self.region_overlay.bounds = ((south, w), (n, e))
            self.region_overlay.url = url
            self.region_overlay.opacity = layer.opacity
            self.region_overlay.visible = True
        self.legend.value = "" if layer is None else legend_html(layer.raster)
        self._draw_region_line()

    def _draw_region_line(self) -> None:
        self.region_status.value = html.escape(self.session.layers.status)

    def _view_bounds(self) -> tuple[float, float, float, float] | None:
        """The map's view (west, south, east, north; degrees) as its front end last reported it, or None."""
        if not self.map.bounds:
            return None
        (south, west), (north, east) = self.map.bounds
        return west, south, east, north

    def _draw_results(self) -> None:

        s = self.session
        other = s.search.results_other
        self.gallery_other.children = [] if other is None else [
            w.HTML(f"<b>in {html.escape(s.scope.beside)}</b>"),
            *(w.HTML(self.thumbnail_html(r.chip_id, f"#{r.rank} {r.chip_id}<br>d = {r.distance:.4f}"))
              for r in other.itertuples(index=False)),
        ]  # fmt: skip
        if s.results is None:
            self.result_layer.data, self.gallery.children = {"type": "FeatureCollection", "features": []}, []
            return
        self.result_layer.data = results_geojson(s.results, s.search.query)
        rows = list(s.results.itertuples(index=False))
        if s.search.pair_years:
            self.gallery.children = [w.HTML(self.pair_html(row, s.search.pair_years)) for row in rows]
            return
        cards = [w.HTML(self.thumbnail_html(r.chip_id, f"#{r.rank} {r.chip_id}<br>d = {r.distance:.4f}")) for r in rows]
        if s.explaining.explainer is not None:
            cards = [w.VBox([card, self._explain_button(r.chip_id)]) for card, r in zip(cards, rows, strict=True)]
        self.gallery.children = cards

    def _draw_explanation(self) -> None:

        x = self.session.explaining.explanation
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

        button = w.Button(description="explain", tooltip="where in this chip it is like the query", icon="search")
        button.on_click(lambda _: self.session.attempt(self.session.explain, chip))
        return button

    # ------------------------------------------------------------------ views
    def widget(self):
        """The map with its controls, status line, thumbnail gallery and labelling panel (one view, made once)."""

        if self._view is None:
            c = self.controls
            wrap = w.Layout(flex_flow="row wrap")
            sets = [c["embedding_set"], c["compare_set"]] if len(self.session.scope.sets) > 1 else []
            settings = w.HBox([c["k"], c["year"], c["imagery"], *sets, c["spread"]], layout=wrap)
            region = self.region_box
            controls = w.VBox([settings, c["mode"], region])
            controls.add_class("wcembed-controls")
            parts = [controls, self.region_status, self.map, self.status, self.gallery,
                     self.compare_line, self.gallery_other, self.explain_line, self.explain_box, self.compare_box,
                     self.panel.widget()]  # fmt: skip
            self._view = w.VBox(parts)
        return self._view

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """The live map for a front end with widgets, and a picture of it for everything else.

        A notebook read without a kernel (GitHub, nbviewer, an executed copy opened in JupyterLab,
        which does not trust it) cannot draw the widget and shows the picture
        (:func:`wcembed.explore.views.figures.map_figure`) instead of ``VBox(...)`` text. The picture is of the
        moment the map was displayed; when the WMS cannot be reached it is left out.
        """

        bundle = self.widget()._repr_mimebundle_(include=include, exclude=exclude)
        try:
            bundle["image/png"] = base64.b64encode(figure_png(self.figure())).decode()
        except (WMSError, WMSTransientError) as exc:
            log.warning("no static picture of the map: %s", exc)
        return bundle

    def figure(self, size: tuple[int, int] = (900, 520)):
        """The map's view as a static matplotlib figure (:func:`wcembed.explore.views.figures.map_figure`)."""

        return map_figure(self.session, self.thumbs, self.layer, self.map.center, self.map.zoom, size)

    def compare_years(self, chip: str | None = None, years: tuple[int, int] = CHANGE_YEARS, zoom: int = 13):
        """Two maps of a chip (default: the query) side by side, each in one year's imagery with the chip
        outlined; they pan and zoom together (linked in the browser, no kernel round trip)."""

        chip = chip or self.session.query_chip
        if chip is None:
            raise BadParameterError("no chip to compare: click one or name it")
        shape = self.session.index.footprint(chip)
        outline = {"type": "Feature", "geometry": shapely.geometry.mapping(shape), "properties": {}}
        kind, panes = self.session.imagery, []
        for year in years:
            m = self._new_map([shape.centroid.y, shape.centroid.x], zoom, height="320px")
            m.add(WMSLayer(url=self.wms_url, layers=layer_name(year, kind), format="image/png", name=str(year)))
            m.add(GeoJSON(data=outline, style={"color": "#00ffff", "weight": 3, "fillOpacity": 0}))
            panes.append(w.VBox([w.HTML(f"<b>{year}</b> {html.escape(chip)}"), m], layout=w.Layout(width="50%")))
        first, second = (pane.children[1] for pane in panes)
        for name in ("center", "zoom"):
            w.jslink((first, name), (second, name))
        box = w.HBox(panes)
        box.add_class("wcembed-compare")
        return box

    def pair_html(self, row, years: tuple[int, int]) -> str:
        """Both years' 96 px thumbnails of a result side by side, with its rank and score."""
        kind = self.session.imagery
        imgs = "".join(
            self._img(row.geometry.bounds, layer_name(y, kind), 96, f"{row.chip_id} {y}", f' title="{y}"')
            for y in years
        )
        return f"{imgs}<br>#{row.rank} {row.chip_id}<br>score {row.score:.3f}"

    def thumbnail_html(self, chip: str, caption: str) -> str:
        """A 128 px thumbnail of a chip in the session's year and imagery, with a caption below, as an
        ``<img>`` the browser loads from the WMS (with its own cache); a chip outside the imagery's extent
        gets a grey square that says so instead of a blank image."""
        bounds = self.session.index.footprint(chip).bounds
        if self.layer is None or not self.thumbs.covers(self.layer, bounds):
            return (f'<div title="{chip}" style="width:128px;height:128px;background:#ddd;display:flex;'
                    f'align-items:center;justify-content:center;text-align:center;font-size:11px">'
                    f"no imagery here</div>{caption}")  # fmt: skip
        return f"{self._img(bounds, self.layer, 128, chip)}<br>{caption}"

    def _img(self, bounds, layer: str | None, size: int, alt: str, extra: str = "") -> str:
        """An ``<img>`` of a WMS layer over ``bounds`` (degrees)."""
        url = self.thumbs.getmap_url(tuple(bounds), layer, (size, size)) if layer else ""
        return f'<img src="{html.escape(url)}" width="{size}" height="{size}" alt="{alt}"{extra}>'

    @property
    def layer(self) -> str | None:
        """The WMS layer name of the imagery shown: the session's year and kind (None if the WMS lacks it)."""
        s = self.session
        return layer_name(s.year, s.imagery) if (s.year, s.imagery) in self.offered else None

    def gallery_figure(self, size: int = 160):
        """The last results' thumbnails as a static matplotlib figure (for notebooks read without a kernel)."""

        return gallery_figure(self.session.results, self.thumbs, self.layer, size)

    def to_html(self, path: str | Path, *, center=None, zoom: int | None = None) -> Path:
        """The current map (imagery, neighbours, query chip, region layer and its legend, labels) as a
        standalone Leaflet page (:func:`wcembed.explore.views.pages.export_html`)."""

        return export_html(
            path,
            self.session,
            self.wms_url,
            self.layer,
            center=center or list(self.map.center),
            zoom=zoom or int(self.map.zoom),
        )
