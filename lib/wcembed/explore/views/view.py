"""The live map: leafmap with WMS imagery, a thin binding of an :class:`~wcembed.explore.state.session.ExploreSession`.

The session's models hold the state and do the work; this view composes the controls
(:class:`~wcembed.explore.views.controls.Controls`, linked to the models' traits), the gallery
(:class:`~wcembed.explore.views.gallery.Gallery`) and the labelling panel
(:class:`~wcembed.explore.views.panel.LabelPanel`) around the map, draws what the models hold when it changes
(:meth:`~traitlets.HasTraits.observe`), and turns a click or a drawn area into the session's operations through
:meth:`~wcembed.explore.state.session.ExploreSession.attempt`, so a failure becomes the status line, never an
exception inside the widget machinery. It keeps no copy of the state.
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

from wcembed.core.errors import BadParameterError, WMSError, WMSTransientError
from wcembed.core.product import LAYER_KINDS, YEARS, layer_name
from wcembed.explore.state.scope import CHANGE_YEARS
from wcembed.explore.state.session import ExploreSession
from wcembed.explore.views.controls import Controls
from wcembed.explore.views.figures import gallery_figure, map_figure
from wcembed.explore.views.gallery import Gallery, Thumbnails, compare_years
from wcembed.explore.views.pages import export_html
from wcembed.explore.views.panel import LabelPanel
from wcembed.explore.views.styles import TEXT_LINE, label_style, legend_html, results_geojson
from wcembed.explore.views.wms import WMSClient
from wcembed.tools.plots import figure_png

log = logging.getLogger(__name__)

ONLINE_BASEMAP = "OpenStreetMap"
"""The basemap under the imagery by default (tiles from the internet); ``basemap=None`` draws none."""


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
        self.wms_url, self.basemap = wms_url, basemap
        self.thumbs = thumbnails or WMSClient(wms_url)
        offered = set(self.thumbs.layers())
        years = sorted(set(s.index.years) | {s.year}) or list(YEARS)
        self.offered = {(y, k) for y in years for k in LAYER_KINDS if layer_name(y, k) in offered}
        """(year, kind) of the imagery layers the WMS offers."""
        kinds = [k for k in LAYER_KINDS if any(kind == k for _, kind in self.offered)]
        if kinds and s.imagery not in kinds:
            s.imagery = kinds[0]
        self.thumbnails = Thumbnails(s, self.thumbs, self.offered)
        self.map = self._new_map(center or [37.67, -75.62], zoom, measure_control=False)
        self._add_map_layers(offered)
        self.controls_view = Controls(s, years, kinds, self._layer_changed)
        self.controls = self.controls_view.widgets
        """The controls, each linked to the setting of the same name of the model that holds it."""
        self.status = w.HTML(layout=w.Layout(min_height=TEXT_LINE))  # the last operation's outcome
        self.region_status = w.HTML(layout=w.Layout(min_height=TEXT_LINE))  # the region layer's count line
        self.gallery_view = Gallery(s, self.thumbnails)
        g = self.gallery_view
        self.gallery, self.gallery_other, self.compare_line = g.cards, g.other, g.compare_line
        self.explain_box, self.explain_line = g.explain_box, g.explain_line
        self.compare_box = w.VBox()  # both years of the clicked chip, while the change layer is shown
        self.panel = LabelPanel(s.labelling, self.thumbnail_html)
        self.map.add_layer(self.panel.outline)
        self._view = None  # the widget(), made once
        self._observe(s)
        self._bind_layer({"new": s.layer})
        self._draw_results()
        self.status.value = html.escape(s.status)

    def _add_map_layers(self, offered: set[str]) -> None:
        """The one imagery layer (only what is seen is fetched), the chip outlines, results, labels, the region
        layer's overlay and its legend, and the draw control."""
        name = self.imagery_name
        self.imagery_layer = WMSLayer(url=self.wms_url, layers=name or "", name="imagery", format="image/png",
                                      transparent=True, visible=name is not None)  # fmt: skip
        """The one imagery layer on the map: of the year and kind shown."""
        self.map.add_layer(self.imagery_layer)
        if "CHIPS" in offered:
            self.map.add_wms_layer(url=self.wms_url, layers="CHIPS", name="chips", format="image/png", transparent=True)
        empty = {"type": "FeatureCollection", "features": []}
        self.result_layer = GeoJSON(data=empty, name="neighbours", style_callback=lambda f: f["properties"]["style"])
        self.label_layer = GeoJSON(data=self.session.labels.to_geojson(), name="labels", style_callback=label_style)
        self.region_overlay = ImageOverlay(url="", bounds=((0, 0), (0, 0)), name="region layer", visible=False)
        for layer in (self.result_layer, self.label_layer, self.region_overlay):
            self.map.add_layer(layer)
        self.legend = w.HTML()
        self.map.add_control(WidgetControl(widget=self.legend, position="bottomright"))
        self.draw = DrawControl(polygon={"shapeOptions": {"color": "#ffff00"}}, rectangle={"shapeOptions": {}})
        self.draw.polyline, self.draw.circlemarker = {}, {}
        self.draw.on_draw(self.handle_draw)
        self.map.add_control(self.draw)

    def _observe(self, s: ExploreSession) -> None:
        """Draw what the models hold when it changes."""
        self.map.on_interaction(self.handle_interaction)
        self.map.observe(lambda _: self._redraw(self._draw_overlay), names="bounds")  # panned or zoomed
        s.scope.observe(lambda _: self._show_imagery(), names="year")
        s.observe(lambda _: self._show_imagery(), names="imagery")
        s.search.observe(lambda _: self._draw_results(), names="results")
        s.labelling.observe(lambda _: setattr(self.label_layer, "data", s.labels.to_geojson()), names="labels")
        s.observe(lambda _: setattr(self.status, "value", html.escape(s.status)), names="status")
        s.layers.observe(self._bind_layer, names="shown")
        s.layers.observe(lambda _: self._draw_region_line(), names="note")
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
    @property
    def threshold(self) -> w.FloatSlider:
        """The threshold slider on the map: the shown layer's own (see :mod:`wcembed.explore.views.controls`)."""
        return self.controls_view.threshold

    @property
    def opacity(self) -> w.FloatSlider:
        """The opacity slider on the map: the shown layer's own."""
        return self.controls_view.opacity

    def _show_imagery(self) -> None:
        """The imagery layer shows the year and kind shown (hidden where the WMS lacks them)."""
        name = self.imagery_name
        if name is not None:
            self.imagery_layer.layers = name
        self.imagery_layer.visible = name is not None

    def _bind_layer(self, change: dict) -> None:
        """A layer is shown: its own sliders beside the region dropdown, and the layer drawn."""
        self.controls_view.show(change["new"])
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
            url, (west, south, east, north) = drawn
            self.region_overlay.bounds = ((south, west), (north, east))
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
        empty = {"type": "FeatureCollection", "features": []}
        self.result_layer.data = empty if s.results is None else results_geojson(s.results, s.search.query)
        self.gallery_view.draw()

    def _draw_compare(self) -> None:
        chip = self.session.compare_chip
        self.compare_box.children = [] if chip is None else [self.compare_years(chip)]

    # ------------------------------------------------------------------ views
    def widget(self):
        """The map with its controls, status line, thumbnail gallery and labelling panel (one view, made once)."""
        if self._view is None:
            parts = [self.controls_view.widget(), self.region_status, self.map, self.status, self.gallery,
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
        return map_figure(self.session, self.thumbs, self.imagery_name, self.map.center, self.map.zoom, size)

    def compare_years(self, chip: str | None = None, years: tuple[int, int] = CHANGE_YEARS, zoom: int = 13):
        """Two maps of a chip's place (default: the query's) side by side, one year's imagery each
        (:func:`~wcembed.explore.views.gallery.compare_years`)."""
        return compare_years(self.session, self._new_map, self.wms_url, chip, years, zoom)

    def thumbnail_html(self, chip: str, caption: str) -> str:
        """A chip's card: its thumbnail in the year and imagery shown, and a caption
        (:meth:`~wcembed.explore.views.gallery.Thumbnails.card`)."""
        return self.thumbnails.card(chip, caption)

    @property
    def imagery_name(self) -> str | None:
        """The WMS layer name of the imagery shown: the session's year and kind (None if the WMS lacks it)."""
        return self.thumbnails.imagery_name

    def gallery_figure(self, size: int = 160):
        """The last results' thumbnails as a static matplotlib figure (for notebooks read without a kernel)."""
        return gallery_figure(self.session.results, self.thumbs, self.imagery_name, size)

    def to_html(self, path: str | Path, *, center=None, zoom: int | None = None) -> Path:
        """The current map (imagery, neighbours, query chip, region layer and its legend, labels) as a
        standalone Leaflet page (:func:`wcembed.explore.views.pages.export_html`)."""
        return export_html(path, self.session, self.wms_url, self.imagery_name,
                           center=center or list(self.map.center), zoom=zoom or int(self.map.zoom))  # fmt: skip
