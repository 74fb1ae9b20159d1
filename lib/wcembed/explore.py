"""The live map: leafmap with WMS imagery, click a place to see the places most like it."""

from __future__ import annotations

from pathlib import Path

from wcembed.product import CRS, LAYER_KINDS, YEARS, layer_name
from wcembed.styles import label_style, results_geojson, scores_geojson


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
    Code (and a notebook) calls :meth:`click` the same way.

    Attributes
    ----------
    results : GeoDataFrame or None
        The last search's neighbours (``rank``, ``chip_id``, ``distance``, footprint).
    labels : wcembed.classify.Labels
        The chips labelled so far.
    layers : dict
        Imagery layer kind (``TCC``, ``FCC``, ``MAP``) to the WMS layer name, for the layers the WMS offers.

    Examples
    --------
    >>> explorer = Explorer(ChipIndex("outputs/lancedb"), wms_url)  # doctest: +SKIP
    >>> explorer.click(-75.62, 37.675)  # doctest: +SKIP
    >>> explorer.widget()  # doctest: +SKIP
    """

    def __init__(
        self, index, wms_url: str, year: int = 2020, k: int = 10, center=None, zoom: int = 12, thumbnails=None
    ) -> None:
        import ipywidgets as w
        import leafmap

        from wcembed.classify import Labels
        from wcembed.wms import WMSClient

        self.index, self.wms_url, self.year = index, wms_url, year
        self.thumbs = thumbnails or WMSClient(wms_url)
        self.labels = Labels()
        self.scores = None
        self.results = None
        self.query = None
        self.map = leafmap.Map(center=center or [37.67, -75.62], zoom=zoom, draw_control=False, measure_control=False)
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
        self.score_layer = GeoJSON(
            data={"type": "FeatureCollection", "features": []},
            name="scores",
            style_callback=lambda f: f["properties"]["style"],
        )
        self.map.add_layer(self.score_layer)
        self.k = w.IntSlider(value=k, min=1, max=50, description="k")
        self.year_box = w.Dropdown(options=list(YEARS), value=year, description="year")
        self.layer_box = w.Dropdown(
            options=list(self.layers), value="TCC" if "TCC" in self.layers else None, description="layer"
        )
        self.mode = w.ToggleButtons(options=["search", "positive", "negative"], value="search")
        self.status = w.HTML()
        self.gallery = w.HBox(layout=w.Layout(flex_flow="row wrap"))
        self.threshold = w.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.01, description="score ≥")
        self.threshold.observe(self.on_threshold, names="value")
        self.layer_box.observe(lambda ch: self._show_layer(ch["new"]), names="value")
        self.map.on_interaction(self.handle_interaction)

    def _show_layer(self, kind: str) -> None:
        for layer in self.map.layers:
            if layer.name in self.layers.values():
                layer.visible = layer.name == self.layers.get(kind)

    def widget(self):
        """The map with its controls, status line and thumbnail gallery."""
        import ipywidgets as w

        controls = w.HBox([self.k, self.year_box, self.layer_box, self.mode, self.threshold])
        return w.VBox([controls, self.map, self.status, self.gallery])

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

    def click(self, lon: float, lat: float):
        """Select the chip at a point and search; returns the results GeoDataFrame (or None)."""
        year = self.year_box.value
        hit = self.index.query_at(lon, lat, year)  # grid arithmetic and one lookup by id
        if hit is None:
            self.status.value = f"no chip of {year} at {lat:.4f}, {lon:.4f}"
            return None
        chip, vector = hit
        if self.mode.value == "search":
            results = self.index.by_vector(vector, self.k.value, year=year, exclude=[chip])
        else:
            self.toggle_label(chip, self.mode.value, year)
            if not self.positives:
                self.status.value = "add a positive example first"
                return None
            results = self.index.by_examples(self.positives, self.negatives, self.k.value, year=year)
        self.show(results, chip)
        return results

    def toggle_label(self, chip: str, label: str, year: int) -> None:
        """Label a chip (clicking it again with the same label removes the label) and redraw the labels."""
        if self.labels.items.get(chip, {}).get("label") == label:
            self.labels.remove(chip)
        else:
            self.labels.add(chip, label, year=year, bounds=self.index.footprint(chip).bounds)
        self.label_layer.data = self.labels.to_geojson()

    def save_labels(self, path: str | Path) -> Path:
        """Save the labels as GeoJSON."""
        return self.labels.save(path)

    def load_labels(self, path: str | Path) -> None:
        """Load labels from GeoJSON (replacing the current ones) and draw them."""
        from wcembed.classify import Labels

        self.labels = Labels.load(path)
        self.label_layer.data = self.labels.to_geojson()

    def show_scores(self, scores) -> None:
        """Draw classifier scores (GeoDataFrame with ``score``) above the threshold slider's value."""
        self.scores = scores
        self.on_threshold({"new": self.threshold.value})

    def on_threshold(self, change: dict) -> None:
        """The threshold slider's observer: redraw the chips whose score is at least the new value."""
        if self.scores is None:
            return
        self.score_layer.data = scores_geojson(self.scores, change["new"])
        n = len(self.score_layer.data["features"])
        self.status.value = f"{n} chips with score ≥ {change['new']:.2f}"

    def show(self, results, chip: str) -> None:
        """Draw results (coloured by rank) and the query chip; fill the gallery with WMS thumbnails.

        Thumbnails are ``<img>`` tags with WMS GetMap URLs: the browser fetches them,
        in parallel and with its own cache, so a click never waits for the WMS.
        """
        import html

        import geopandas as gpd
        import ipywidgets as w

        self.results = results
        self.query = gpd.GeoDataFrame({"chip_id": [chip]}, geometry=[self.index.footprint(chip)], crs=CRS)
        self.result_layer.data = results_geojson(results, self.query)
        layer = self.layer
        cards = []
        for _, row in results.iterrows():
            url = self.thumbs.getmap_url(tuple(row.geometry.bounds), layer, (128, 128)) if layer else ""
            cards.append(
                w.HTML(
                    f'<img src="{html.escape(url)}" width="128" height="128" loading="lazy" alt="{row["chip_id"]}">'
                    f"<br>#{row['rank']} {row['chip_id']}<br>d = {row['distance']:.4f}"
                )
            )
        self.gallery.children = cards
        self.status.value = (
            f"{len(results)} nearest of {chip} (positives {len(self.positives)}, negatives {len(self.negatives)})"
        )

    @property
    def layer(self) -> str | None:
        """The WMS layer name of the imagery shown (the layer dropdown's choice)."""
        return self.layers.get(self.layer_box.value or "TCC", next(iter(self.layers.values()), None))

    def gallery_figure(self, size: int = 160):
        """The last results' thumbnails as a static matplotlib figure (for notebooks read without a kernel)."""
        from wcembed.figures import gallery_figure

        return gallery_figure(self.results, self.thumbs, self.layer, size)

    def to_html(self, path: str | Path, *, center=None, zoom: int | None = None) -> Path:
        """The current map (WMS layer, neighbours, query chip, scores, labels) as a standalone Leaflet page."""
        from wcembed.pages import export_html

        return export_html(
            path,
            self.wms_url,
            self.layers.get(self.layer_box.value or "TCC"),
            self.results,
            self.query,
            extra=[self.score_layer.data, self.label_layer.data],
            center=center or list(self.map.center),
            zoom=zoom or int(self.map.zoom),
        )
