"""The live map: leafmap with WMS imagery, click a place to see the places most like it."""

from __future__ import annotations

import html
import logging
from pathlib import Path

from wcembed.errors import WcEmbedError, WMSError, WMSTransientError
from wcembed.index import DIVERSE_CHIPS
from wcembed.product import CRS, LAYER_KINDS, YEARS, layer_name
from wcembed.styles import label_style, results_geojson

log = logging.getLogger(__name__)

REGION_LAYERS = ("none", "similarity", "scores", "change", "changed like", "embedding colours")
"""Whole-region layers the map can show (:mod:`wcembed.layers`), one at a time."""


class Explorer:
    """A leafmap map with WMS imagery: click a place, see the most similar places.

    Parameters
    ----------
    index : wcembed.index.ChipIndex
    wms_url : str
        WMS with ESA's layer names (ESA's own, or :class:`wcembed.wms.LocalWMS`).
    year : int
        Year searched and shown.
    k : int
        Number of neighbours.

    A click on the map calls :meth:`click`, which selects the chip under it and
    runs the search (mode ``search``), or adds it as a positive or negative
    example (modes ``positive``/``negative``) and searches with the examples.
    A polygon or rectangle drawn on the map calls :meth:`select_area`: its chips
    are the examples of a search, or are all labelled at once.
    Code (and a notebook) calls :meth:`click` and :meth:`select_area` the same way.

    Whole-region layers (:mod:`wcembed.layers`) are drawn as one image over the
    chips: the similarity of every chip of the year to the current query
    (updated at every click while shown), classifier scores, change 2020 → 2021
    and the embedding colours; the threshold slider hides values below it.

    Attributes
    ----------
    results : GeoDataFrame or None
        The last search's neighbours (``rank``, ``chip_id``, ``distance``, footprint).
    labels : wcembed.classify.Labels
        The chips labelled so far.
    layers : dict
        Imagery layer kind (``TCC``, ``FCC``, ``MAP``) to the WMS layer name, for the layers the WMS offers.
    region_layers : dict
        Whole-region layers computed so far (:data:`REGION_LAYERS` name to :class:`~wcembed.layers.ChipRaster`).
    changes : DataFrame or None
        Chips from most to least changed, after :meth:`show_change`; while the change layer is shown,
        a click also puts the chip's two years side by side (:meth:`compare_years`) under the gallery.

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
    ) -> None:
        import ipywidgets as w
        import leafmap

        from wcembed.classify import Labels
        from wcembed.wms import WMSClient

        self.index, self.wms_url, self.year = index, wms_url, year
        self.explainer = explainer  # a wcembed.explain.MatchExplainer: each result card gets an "explain" button
        self.thumbs = thumbnails or WMSClient(wms_url)
        self.labels = Labels()
        self.scores = None
        self.results = None
        self.query = None
        self.map = leafmap.Map(center=center or [37.67, -75.62], zoom=zoom, draw_control=False, measure_control=False)
        from ipyleaflet import DrawControl

        self.draw = DrawControl(polygon={"shapeOptions": {"color": "#ffff00"}}, rectangle={"shapeOptions": {}})
        self.draw.polyline, self.draw.circlemarker = {}, {}
        self.draw.on_draw(self.handle_draw)
        self.map.add_control(self.draw)
        offered = set(self.thumbs.layers())
        self.layers = {}
        for kind in LAYER_KINDS:
            name = layer_name(year, kind)
            if name in offered:
                self.map.add_wms_layer(
                    url=wms_url, layers=name, name=name, format="image/png", transparent=True, shown=kind == "TCC"
                )
                self.layers[kind] = name
        if "CHIPS" in offered:
            self.map.add_wms_layer(url=wms_url, layers="CHIPS", name="chips", format="image/png", transparent=True)
        from ipyleaflet import GeoJSON

        self.result_layer = GeoJSON(
            data={"type": "FeatureCollection", "features": []},
            name="neighbours",
            style_callback=lambda f: f["properties"]["style"],
        )
        self.map.add_layer(self.result_layer)
        self.label_layer = GeoJSON(data=self.labels.to_geojson(), name="labels", style_callback=label_style)
        self.map.add_layer(self.label_layer)
        from ipyleaflet import ImageOverlay, WidgetControl

        self.region_layers: dict = {}
        self.changes = None
        self._vectors: dict = {}  # year -> YearVectors, loaded once
        self._pairs: dict = {}  # (year, year) -> ChangePairs, made once
        self.region_overlay = ImageOverlay(url="", bounds=((0, 0), (0, 0)), opacity=0.7, name="region layer")
        self.map.add_layer(self.region_overlay)
        self.legend = w.HTML()
        self.compare_box = w.VBox()  # both years of the clicked chip, while the change layer is shown
        self.map.add_control(WidgetControl(widget=self.legend, position="bottomright"))
        self.k = w.IntSlider(value=k, min=1, max=50, description="k")
        self.year_box = w.Dropdown(options=list(YEARS), value=year, description="year")
        self.layer_box = w.Dropdown(
            options=list(self.layers), value="TCC" if "TCC" in self.layers else None, description="layer"
        )
        self.mode = w.ToggleButtons(options=["search", "positive", "negative", "changed like"], value="search")
        self.spread = w.Checkbox(
            value=False, description="spread out", tooltip=f"results at least {DIVERSE_CHIPS} chips apart", indent=False
        )
        self.status = w.HTML()  # the last search (or why there was none)
        self.region_status = w.HTML()  # how many chips the region layer shows
        self.gallery = w.HBox(layout=w.Layout(flex_flow="row wrap"))
        self.explain_box = w.HTML()  # where in a result it is like the query (after an "explain" click)
        self.gallery.add_class("wcembed-gallery")  # for the browser test, and for a user's CSS
        self.region_box = w.Dropdown(options=REGION_LAYERS, value="none", description="region")
        self.threshold = w.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.01, description="show ≥")
        self.opacity = w.FloatSlider(value=0.7, min=0.0, max=1.0, step=0.05, description="opacity")
        self.threshold.observe(self.on_threshold, names="value")
        self.opacity.observe(lambda ch: setattr(self.region_overlay, "opacity", ch["new"]), names="value")
        self.region_box.observe(lambda ch: self.show_region(ch["new"]), names="value")
        self.layer_box.observe(lambda ch: self._show_layer(ch["new"]), names="value")
        self.map.on_interaction(self.handle_interaction)
        self._view = None  # the widget(), made once

    def _show_layer(self, kind: str) -> None:
        for layer in self.map.layers:
            if layer.name in self.layers.values():
                layer.visible = layer.name == self.layers.get(kind)

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
        (:func:`wcembed.figures.map_figure`) instead of ``VBox(...)`` text. The picture is of the
        moment the map was displayed; when the WMS cannot be reached it is left out.
        """
        import base64

        from wcembed.figures import figure_png, map_figure

        bundle = self.widget()._repr_mimebundle_(include=include, exclude=exclude)
        try:
            bundle["image/png"] = base64.b64encode(figure_png(map_figure(self))).decode()
        except (WMSError, WMSTransientError) as exc:
            log.warning("no static picture of the map: %s", exc)
        return bundle

    @property
    def positives(self) -> list[str]:
        return self.labels.positives

    @property
    def negatives(self) -> list[str]:
        return self.labels.negatives

    def handle_interaction(self, **event) -> None:
        """ipyleaflet's interaction callback: a click at ``coordinates`` (lat, lon) selects a chip."""
        if event.get("type") != "click":
            return
        lat, lon = event["coordinates"]
        self.click(lon, lat)

    @property
    def diverse(self) -> int:
        """The spacing of results in chips while "spread out" is on (:data:`wcembed.index.DIVERSE_CHIPS`), else 0."""
        return DIVERSE_CHIPS if self.spread.value else 0

    def click(self, lon: float, lat: float):
        """Select the chip at a point and search; returns the results GeoDataFrame (or None)."""
        year = self.year_box.value
        hit = self.index.query_at(lon, lat, year)  # grid arithmetic and one lookup by id
        if hit is None:
            self.status.value = f"no chip of {year} at {lat:.4f}, {lon:.4f}"
            return None
        chip, vector = hit
        if self.mode.value == "changed like":
            return self.changed_like([chip])
        if self.mode.value == "search":
            results = self.index.by_vector(vector, self.k.value, year=year, exclude=[chip], diverse=self.diverse)
        else:
            self.toggle_label(chip, self.mode.value, year)
            if not self.positives:
                self.status.value = "add a positive example first"
                return None
            results = self.index.by_examples(
                self.positives, self.negatives, self.k.value, year=year, diverse=self.diverse
            )
        self.show(results, chip)
        if self.region_box.value == "similarity":
            if self.mode.value == "search":
                self.show_similarity(vector, chip)
            else:
                self._similarity_to_examples(self.positives, self.negatives)
        elif self.region_box.value == "change" and len(self.index.years) > 1:
            self.compare_box.children = [self.compare_years(chip)]
        return results

    def handle_draw(self, target=None, action: str = "created", geo_json: dict | None = None) -> None:
        """ipyleaflet's draw callback: a drawn polygon or rectangle selects the chips under it."""
        if action == "created" and geo_json:
            import shapely

            try:
                self.select_area(shapely.geometry.shape(geo_json["geometry"]))
            except (WcEmbedError, ValueError, KeyError, TypeError, AttributeError) as exc:
                self.status.value = html.escape(f"cannot search this area: {exc}")
            finally:
                self.draw.clear()

    def select_area(self, geometry):
        """Search with every chip of the year under ``geometry`` (a shapely polygon, degrees) as examples.

        In ``positive``/``negative`` mode the chips are labelled so, all in one action, and the search
        uses every label; in ``search`` mode they are the positives of this search only.
        Returns the results GeoDataFrame (or None when the area holds no chip).
        """
        year = self.year_box.value
        chips = self.index.chips_in(geometry, year)
        if not chips:
            self.status.value = f"no chip of {year} under the drawn area"
            return None
        if self.mode.value == "search":
            positives, negatives = chips, []
        else:
            self.add_labels(chips, self.mode.value, year)
            if not self.positives:
                self.status.value = f"{len(chips)} negatives labelled; add a positive example to search"
                return None
            positives, negatives = self.positives, self.negatives
        results = self.index.by_examples(positives, negatives, self.k.value, year=year, diverse=self.diverse)
        self.show(results, chips[0])
        self.status.value += f"; {len(chips)} chips under the drawn area"
        if self.region_box.value == "similarity":
            self._similarity_to_examples(positives, negatives)
        return results

    def _similarity_to_examples(self, positives: list[str], negatives: list[str]) -> None:
        """The similarity layer for a search by examples (its query vector, as ``by_examples`` forms it)."""
        from wcembed.index import query_vector

        vector = query_vector(self.index.vectors(positives), self.index.vectors(negatives) if negatives else None)
        self.show_similarity(vector, f"{len(positives)} positive and {len(negatives)} negative examples")

    def add_labels(self, chips: list[str], label: str, year: int) -> None:
        """Label chips (``"positive"`` or ``"negative"``) and redraw the labels once."""
        for chip in chips:
            self.labels.add(chip, label, year=year, bounds=self.index.footprint(chip).bounds)
        self.label_layer.data = self.labels.to_geojson()

    def toggle_label(self, chip: str, label: str, year: int) -> None:
        """Label a chip (clicking it again with the same label removes the label) and redraw the labels."""
        if self.labels.items.get(chip, {}).get("label") == label:
            self.labels.remove(chip)
            self.label_layer.data = self.labels.to_geojson()
        else:
            self.add_labels([chip], label, year)

    def save_labels(self, path: str | Path) -> Path:
        """Save the labels as GeoJSON."""
        return self.labels.save(path)

    def load_labels(self, path: str | Path) -> None:
        """Load labels from GeoJSON (replacing the current ones) and draw them."""
        from wcembed.classify import Labels

        self.labels = Labels.load(path)
        self.label_layer.data = self.labels.to_geojson()

    # ------------------------------------------------------------------ whole-region layers
    def vectors(self, year: int | None = None):
        """The year's embeddings as a :class:`~wcembed.layers.YearVectors` (loaded from the index once)."""
        from wcembed.layers import YearVectors

        year = int(year or self.year_box.value)
        if year not in self._vectors:
            self._vectors[year] = YearVectors.load(self.index, year)
        return self._vectors[year]

    def show_similarity(self, vector=None, label: str = "the query"):
        """Draw the similarity of every chip of the year to ``vector`` (default: the last query chip's)."""
        if vector is None:
            if self.query is None:
                self.status.value = "click a chip first: similarity is to the query"
                return None
            chip = self.query["chip_id"].iloc[0]
            vector, label = self.index.vectors([chip])[0], chip
        return self._set_region("similarity", self.vectors().similarity(vector, label=label))

    def show_scores(self, scores):
        """Draw classifier scores (a GeoDataFrame with ``chip_id`` and ``score``, e.g. from
        :func:`wcembed.classify.score_index`) as a layer; the threshold slider hides lower scores."""
        from wcembed.layers import ChipRaster, untrained_note

        layer = ChipRaster.from_ids(
            list(scores["chip_id"]),
            scores["score"].to_numpy(),
            name="classifier score",
            description=f"probability of the positive class. {untrained_note(self.index)}".strip(),
            cmap="inferno",
            chip_size=self.index.chip_size,
            origin=self.index.origin,
        )
        self.scores = scores
        return self._set_region("scores", layer, threshold=0.5)

    def show_change(self, years: tuple[int, int] = (YEARS[0], YEARS[1])):
        """Draw the change between two years (cosine distance of each chip's embeddings); the chips from
        most to least changed are in :attr:`changes`."""
        from wcembed.layers import change

        layer, self.changes = change(self.vectors(years[0]), self.vectors(years[1]), self.change_pairs(years))
        return self._set_region("change", layer)

    def change_pairs(self, years: tuple[int, int] = (YEARS[0], YEARS[1])):
        """The chips of two years paired for change queries (:class:`~wcembed.layers.ChangePairs`), made once."""
        from wcembed.layers import ChangePairs

        if years not in self._pairs:
            self._pairs[years] = ChangePairs(self.vectors(years[0]), self.vectors(years[1]))
        return self._pairs[years]

    def changed_like(self, chips: list[str] | None = None, years: tuple[int, int] = (YEARS[0], YEARS[1])):
        """The chips whose change between ``years`` is most like that of ``chips`` (default: the query chip):
        drawn as the "changed like" layer, the top k on the map and in the gallery with both years' thumbnails
        side by side. Returns the results (``chip_id`` of the map's year, ``rank``, ``score``, footprint)."""
        import geopandas as gpd
        import ipywidgets as w

        if not chips:
            if self.query is None:
                self.status.value = "click a chip first: changed like the query"
                return None
            chips = [self.query["chip_id"].iloc[0]]
        try:
            layer, top = self.change_pairs(years).like(chips, k=self.k.value)
        except WcEmbedError as exc:
            self.status.value = html.escape(str(exc))
            return None
        year = self.year_box.value if self.year_box.value in years else years[0]
        ids = list(top[f"chip_{year}"])
        results = gpd.GeoDataFrame(
            {"chip_id": ids, "rank": range(1, len(ids) + 1), "score": top["score"], "distance": 1 - top["score"]},
            geometry=[self.index.footprint(c) for c in ids],
            crs=CRS,
        )
        self.results = results
        self.query = gpd.GeoDataFrame({"chip_id": chips}, geometry=[self.index.footprint(c) for c in chips], crs=CRS)
        self.result_layer.data = results_geojson(results, self.query)
        self._set_region("changed like", layer, threshold=0.0)  # every chip shown: the layer is 0..1
        self.gallery.children = [w.HTML(self.pair_html(row, years)) for row in results.itertuples(index=False)]
        self.status.value = (
            f"{len(results)} chips changed most like {', '.join(chips)} between {years[0]} and {years[1]}"
        )
        return results

    def pair_html(self, row, years: tuple[int, int]) -> str:
        """Both years' 96 px thumbnails of a result side by side, with its rank and score."""
        kind = self.layer_box.value or "TCC"
        imgs = "".join(
            self._img(row.geometry.bounds, layer_name(y, kind), 96, f"{row.chip_id} {y}", f' title="{y}"')
            for y in years
        )
        return f"{imgs}<br>#{row.rank} {row.chip_id}<br>score {row.score:.3f}"

    def show_pca(self):
        """Draw the year's embedding colours: the first three principal components as RGB."""
        return self._set_region("embedding colours", self.vectors().pca_rgb())

    def _set_region(self, name: str, layer, threshold: float | None = None):
        self.region_layers[name] = layer
        if self.region_box.value != name:
            self.region_box.value = name  # its observer draws the layer
        else:
            self.show_region(name)
        if threshold is not None:
            self.threshold.value = threshold
        return layer

    def show_region(self, name: str) -> None:
        """Draw the named whole-region layer (``"none"`` hides it), the threshold slider spanning its values."""
        layer = self.region_layers.get(name)
        if layer is None:
            self.region_overlay.url, self.legend.value = "", ""
            if name == "similarity":
                self.show_similarity()
            elif name == "change":
                self.show_change()
            elif name == "changed like":
                self.changed_like()
            elif name == "embedding colours":
                self.show_pca()
            return
        rgb = layer.values.ndim == 3
        self.threshold.disabled = rgb
        if not rgb:
            lo, hi = float(layer.vmin), float(layer.vmax)
            # widen first, then narrow: the slider refuses a min above its max at every step
            self.threshold.min, self.threshold.max = min(lo, self.threshold.min), max(hi, self.threshold.max)
            self.threshold.min, self.threshold.max = lo, hi
            self.threshold.step = (hi - lo) / 100 or 0.01
            if not lo <= self.threshold.value <= hi:
                self.threshold.value = lo
        self.on_threshold({"new": self.threshold.value})

    def on_threshold(self, change: dict) -> None:
        """The threshold slider's observer: redraw the region layer with values below it hidden."""
        layer = self.region_layers.get(self.region_box.value)
        if layer is None:
            return
        shown = layer if layer.values.ndim == 3 else layer.masked(change["new"])
        url, (w, s, e, n) = shown.png_data_url()
        self.region_overlay.bounds = ((s, w), (n, e))
        self.region_overlay.url = url
        self.legend.value = layer.legend_html()
        if layer.values.ndim == 2:
            import numpy as np

            n_shown = int(np.count_nonzero(~np.isnan(shown.values)))
            self.region_status.value = f"{n_shown} chips with {layer.name} ≥ {change['new']:.3g}"

    def compare_years(self, chip: str | None = None, years: tuple[int, int] = (YEARS[0], YEARS[1]), zoom: int = 14):
        """A split map of a chip (default: the query) in two years' imagery, left and right of a slider."""
        import leafmap
        import shapely
        from ipyleaflet import GeoJSON, SplitMapControl, WMSLayer

        chip = chip or (self.query["chip_id"].iloc[0] if self.query is not None else None)
        if chip is None:
            raise ValueError("no chip: click one or name it")
        shape = self.index.footprint(chip)
        m = leafmap.Map(center=[shape.centroid.y, shape.centroid.x], zoom=zoom, draw_control=False)
        left, right = (
            WMSLayer(url=self.wms_url, layers=layer_name(y, "TCC"), format="image/png", transparent=True, name=str(y))
            for y in years
        )
        m.add_control(SplitMapControl(left_layer=left, right_layer=right))
        outline = {"type": "Feature", "geometry": shapely.geometry.mapping(shape), "properties": {}}
        m.add_layer(GeoJSON(data=outline, style={"color": "#00ffff", "weight": 3, "fillOpacity": 0}))
        return m

    def show(self, results, chip: str) -> None:
        """Draw results (coloured by rank) and the query chip; fill the gallery with WMS thumbnails.

        Thumbnails are ``<img>`` tags with WMS GetMap URLs: the browser fetches them,
        in parallel and with its own cache, so a click never waits for the WMS.
        """
        import geopandas as gpd
        import ipywidgets as w

        self.results = results
        self.query = gpd.GeoDataFrame({"chip_id": [chip]}, geometry=[self.index.footprint(chip)], crs=CRS)
        self.result_layer.data = results_geojson(results, self.query)
        cards = [
            w.HTML(
                self.thumbnail_html(
                    row["chip_id"], row.geometry.bounds, f"#{row['rank']} {row['chip_id']}<br>d = {row['distance']:.4f}"
                )
            )
            for _, row in results.iterrows()
        ]
        if self.explainer is not None:
            cards = [w.VBox([card, self._explain_button(c)]) for card, c in zip(cards, results["chip_id"], strict=True)]
        self.gallery.children = cards
        self.status.value = (
            f"{len(results)} nearest of {chip} (positives {len(self.positives)}, negatives {len(self.negatives)})"
        )

    def _explain_button(self, chip: str):
        import ipywidgets as w

        button = w.Button(description="explain", tooltip="where in this chip it is like the query", icon="search")
        button.on_click(lambda _: self.explain(chip))
        return button

    def explain(self, result: str, how: str = "best"):
        """Where in chip ``result`` it is like the query chip: the encoder's patch tokens of both chips
        (:class:`~wcembed.explain.MatchExplainer`), drawn as a heatmap over the result's imagery in the
        explain box. Returns the ``(16, 16)`` heatmap (None without an explainer or a query)."""
        import base64
        import time

        if self.explainer is None:
            self.status.value = "no explainer: give the explorer the tile source and the weights (explainer=...)"
            return None
        if self.query is None:
            self.status.value = "click a chip first: a match is explained against the query"
            return None
        query = self.query["chip_id"].iloc[0]
        t0 = time.perf_counter()
        try:
            heat = self.explainer.explain(query, result, how=how)
            png = self.explainer.picture(result, heat)
        except WcEmbedError as exc:
            self.status.value = html.escape(f"cannot explain {result}: {exc}")
            return None
        note = " (UNTRAINED weights: not Clay's view)" if self.index.untrained else ""
        self.explain_box.value = (
            f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" width="256" height="256" '
            f'alt="where {result} is like {query}"><br>where {html.escape(result)} is like {html.escape(query)}: '
            f"bright patches match some part of it best{note} ({time.perf_counter() - t0:.1f} s)"
        )
        return heat

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
        """The WMS layer name of the imagery shown (the layer dropdown's choice)."""
        return self.layers.get(self.layer_box.value or "TCC", next(iter(self.layers.values()), None))

    def gallery_figure(self, size: int = 160):
        """The last results' thumbnails as a static matplotlib figure (for notebooks read without a kernel)."""
        from wcembed.figures import gallery_figure

        return gallery_figure(self.results, self.thumbs, self.layer, size)

    def _region_overlay_for_page(self):
        if not self.region_overlay.url:
            return None
        (s, w), (n, e) = self.region_overlay.bounds
        return {"url": self.region_overlay.url, "bounds": [[s, w], [n, e]], "legend": self.legend.value,
                "opacity": self.region_overlay.opacity}  # fmt: skip

    def to_html(self, path: str | Path, *, center=None, zoom: int | None = None) -> Path:
        """The current map (WMS layer, neighbours, query chip, region layer and its legend, labels) as a
        standalone Leaflet page."""
        from wcembed.pages import export_html

        return export_html(
            path,
            self.wms_url,
            self.layers.get(self.layer_box.value or "TCC"),
            self.results,
            self.query,
            extra=[self.label_layer.data],
            overlay=self._region_overlay_for_page(),
            center=center or list(self.map.center),
            zoom=zoom or int(self.map.zoom),
        )
