"""Pictures and maps of embeddings: PCA colouring, the leafmap explorer."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def first_principal_component(vectors: np.ndarray) -> np.ndarray:
    """Projection of each row of ``vectors`` on their first principal component (0 for fewer than 2 rows)."""
    x = np.asarray(vectors, dtype=np.float64)
    if len(x) < 2:
        return np.zeros(len(x))
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[0]


def read_embeddings(path: str):
    """A GeoParquet file of embeddings as a GeoDataFrame plus its ``(N, D)`` float32 matrix."""
    import io

    import geopandas as gpd
    import pyarrow.parquet as pq

    from wcembed.store import read_bytes

    data = read_bytes(path)
    emb = pq.read_table(io.BytesIO(data), columns=["embeddings"])["embeddings"].combine_chunks()
    dim = emb.type.list_size
    vectors = emb.flatten().to_numpy(zero_copy_only=False).reshape(len(emb), dim)
    names = [n for n in pq.read_schema(io.BytesIO(data)).names if n not in ("embeddings", "bbox")]
    return gpd.read_parquet(io.BytesIO(data), columns=names), vectors


def pca_map(path: str, ax=None):
    """Plot a column file's chips coloured by the first principal component of their embeddings."""
    import matplotlib.pyplot as plt

    gdf, vectors = read_embeddings(path)
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 6))
    if len(gdf) == 0:
        ax.set_title("no chip above the valid threshold")
        return ax
    gdf["pc1"] = first_principal_component(vectors)
    gdf.plot(column="pc1", cmap="viridis", edgecolor="white", linewidth=0.3, legend=True, ax=ax)
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    ax.set_title(f"{len(gdf)} chips, first principal component")
    return ax


# --------------------------------------------------------------------------- the map

RANK_CMAP = "plasma"


def rank_colors(n: int) -> list[str]:
    """Hex colours for ranks 1..n (rank 1 brightest)."""
    import matplotlib

    cmap = matplotlib.colormaps[RANK_CMAP]
    return [matplotlib.colors.to_hex(cmap(0.95 - 0.8 * i / max(n - 1, 1))) for i in range(n)]


def results_geojson(results, query=None) -> dict:
    """Search results (GeoDataFrame) as GeoJSON whose features carry their style (colour by rank)."""
    import json

    gdf = results[["chip_id", "rank", "distance", "geometry"]].copy()
    gdf["color"] = rank_colors(len(gdf))
    data = json.loads(gdf.to_json())
    for f in data["features"]:
        f["properties"]["style"] = {"color": f["properties"]["color"], "weight": 3, "fillOpacity": 0.15}
    if query is not None:
        q = json.loads(query[["chip_id", "geometry"]].to_json())["features"]
        for f in q:
            f["properties"].update(rank=0, style={"color": "#00ffff", "weight": 4, "fillOpacity": 0.0})
        data["features"] = q + data["features"]
    return data


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

    The map calls :meth:`handle_interaction` on every interaction; a click
    selects the chip under it and runs the search (mode ``search``), or adds it
    as a positive or negative example (modes ``positive``/``negative``) and
    searches with the examples.
    """

    def __init__(
        self, index, wms_url: str, year: int = 2020, k: int = 10, center=None, zoom: int = 12, thumbnails=None
    ) -> None:
        import ipywidgets as w
        import leafmap

        from wcembed.wms import WMSClient, layer_name

        self.index, self.wms_url, self.year = index, wms_url, year
        self.thumbs = thumbnails or WMSClient(wms_url)
        from wcembed.classify import Labels

        self.labels = Labels()
        self.scores = None
        self.results = None
        self.query = None
        self.map = leafmap.Map(center=center or [37.67, -75.62], zoom=zoom, draw_control=False, measure_control=False)
        offered = set(self.thumbs.layers())
        self.layers = {}
        for kind in ("TCC", "FCC", "MAP"):
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
        self.label_layer = GeoJSON(data=self.labels.to_geojson(), name="labels", style_callback=_label_style)
        self.map.add_layer(self.label_layer)
        self.score_layer = GeoJSON(
            data={"type": "FeatureCollection", "features": []},
            name="scores",
            style_callback=lambda f: f["properties"]["style"],
        )
        self.map.add_layer(self.score_layer)
        self.k = w.IntSlider(value=k, min=1, max=50, description="k")
        self.year_box = w.Dropdown(options=[2020, 2021], value=year, description="year")
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
        chip = self.index.chip_at(lon, lat, year)
        if chip is None:
            self.status.value = f"no chip of {year} at {lat:.4f}, {lon:.4f}"
            return None
        if self.mode.value == "search":
            results = self.index.by_chip(chip, self.k.value, year=year)
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
            self.labels.add(chip, label, year=year, bounds=self.index.chips([chip]).geometry.iloc[0].bounds)
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
        """Draw results (coloured by rank) and the query chip; fill the gallery with WMS thumbnails."""
        import ipywidgets as w

        self.results = results
        self.query = self.index.chips([chip])
        self.result_layer.data = results_geojson(results, self.query)
        layer = self.layers.get(self.layer_box.value or "TCC", next(iter(self.layers.values()), None))
        cards = []
        for _, row in results.iterrows():
            png = self.thumbs.thumbnail(tuple(row.geometry.bounds), layer, (128, 128)) if layer else b""
            cards.append(
                w.VBox(
                    [
                        w.Image(value=png, format="png", width=128, height=128),
                        w.HTML(f"#{row['rank']} {row['chip_id']}<br>d = {row['distance']:.4f}"),
                    ]
                )
            )
        self.gallery.children = cards
        self.status.value = (
            f"{len(results)} nearest of {chip} (positives {len(self.positives)}, negatives {len(self.negatives)})"
        )

    def to_html(self, path: str | Path, *, center=None, zoom: int | None = None) -> Path:
        """The current map (WMS layer, neighbours, query chip, scores, labels) as a standalone Leaflet page."""
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


def _label_style(feature: dict) -> dict:
    colour = "#00ff00" if feature["properties"]["label"] == "positive" else "#ff0000"
    return {"color": colour, "weight": 3, "fillOpacity": 0.25, "fillColor": colour}


def scores_geojson(scores, threshold: float) -> dict:
    """Chips whose score is at least ``threshold``, as GeoJSON styled by score (yellow = high)."""
    import json

    import matplotlib

    keep = scores[scores["score"] >= threshold]
    data = json.loads(keep[["chip_id", "score", "geometry"]].to_json())
    cmap = matplotlib.colormaps["inferno"]
    for f in data["features"]:
        c = matplotlib.colors.to_hex(cmap(0.3 + 0.7 * f["properties"]["score"]))
        f["properties"]["style"] = {"color": c, "weight": 1, "fillColor": c, "fillOpacity": 0.45}
    return data


def export_html(
    path, wms_url: str, layer: str | None, results=None, query=None, *, center, zoom: int, extra: list[dict] = ()
) -> Path:
    """Write a Leaflet page (folium) with a WMS layer, search results and extra GeoJSON layers.

    Features of ``extra`` layers carry their style in ``properties.style`` (labels are styled by label).
    """
    import folium

    m = folium.Map(location=center, zoom_start=zoom, tiles=None, control_scale=True)
    if layer:
        folium.raster_layers.WmsTileLayer(
            url=wms_url, layers=layer, fmt="image/png", transparent=True, name=layer, version="1.3.0"
        ).add_to(m)
    layers = [results_geojson(results, query)] if results is not None else []
    for data in [*layers, *(d for d in extra if d.get("features"))]:
        for f in data["features"]:
            if "style" not in f["properties"]:
                f["properties"]["style"] = _label_style(f)
        folium.GeoJson(data, style_function=lambda f: f["properties"]["style"]).add_to(m)
    m.save(str(path))
    return Path(path)


# --------------------------------------------------------------------------- offline screenshots

_CDN = {
    "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/": "leaflet/dist/",
    "https://cdn.jsdelivr.net/npm/bootstrap@5.2.2/dist/": "bootstrap/dist/",
    "https://cdn.jsdelivr.net/npm/@fortawesome/fontawesome-free@6.2.0/": "@fortawesome/fontawesome-free/",
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery/dist/jquery.min.js",
}


def offline_html(html_path: str | Path, node_modules: str | Path) -> Path:
    """Rewrite a map page's CDN links to files installed from npm (``scripts/package.json``).

    Links with no local copy (small plugin stylesheets) are dropped. Returns the new page's path.
    """
    import re

    html = Path(html_path).read_text()
    nm = Path(node_modules).resolve()
    for cdn, local in _CDN.items():
        html = html.replace(cdn, (nm / local).as_uri() + ("/" if local.endswith("/") else ""))
    html = re.sub(r'<(?:script|link)[^>]*(?:src|href)="https?://[^"]*"[^>]*>(?:</script>)?', "", html)
    out = Path(html_path).with_name(Path(html_path).stem + ".offline.html")
    out.write_text(html)
    return out


def screenshot(
    html_path: str | Path, png_path: str | Path, size: tuple[int, int] = (1000, 700), budget_ms: int = 15000
) -> Path:
    """Render a page with headless Chromium (Debian's ``chromium``) to a PNG."""
    import shutil
    import subprocess
    import tempfile

    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        raise FileNotFoundError("no Chromium found (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--allow-file-access-from-files",
            f"--user-data-dir={profile}",
            f"--window-size={size[0]},{size[1]}",
            f"--virtual-time-budget={budget_ms}",
            f"--screenshot={Path(png_path).resolve()}",
            Path(html_path).resolve().as_uri(),
        ]
        subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    if not Path(png_path).exists():
        raise RuntimeError(f"Chromium wrote no screenshot of {html_path}")
    return Path(png_path)


def gallery_figure(results, thumbs, layer: str, size: int = 160):
    """A static figure of the results' WMS thumbnails with rank and distance (for executed notebooks)."""
    import io

    import matplotlib.pyplot as plt
    from PIL import Image

    n = len(results)
    cols = min(n, 5) or 1
    nrows = (n + cols - 1) // cols or 1
    fig, axes = plt.subplots(nrows, cols, figsize=(2.2 * cols, 2.5 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (_, row) in zip(axes.ravel(), results.iterrows(), strict=False):
        png = thumbs.thumbnail(tuple(row.geometry.bounds), layer, (size, size))
        ax.imshow(Image.open(io.BytesIO(png)))
        ax.set_title(f"#{row['rank']} d={row['distance']:.4f}\n{row['chip_id']}", fontsize=8)
    fig.tight_layout()
    return fig


def write_footprints(db: str | Path, path: str | Path) -> Path:
    """All chip footprints of an index as FlatGeobuf, for a server-rendered ``CHIPS`` WMS layer."""
    import geopandas as gpd
    import shapely

    from wcembed.index import ChipIndex

    t = ChipIndex(db).table.to_arrow().select(["chip_id", "year", "geometry"])
    geometry = shapely.from_wkb(t["geometry"].to_numpy(zero_copy_only=False))
    gdf = gpd.GeoDataFrame(t.drop(["geometry"]).to_pandas(), geometry=geometry, crs="EPSG:4326")
    gdf.to_file(path, driver="FlatGeobuf")
    return Path(path)
