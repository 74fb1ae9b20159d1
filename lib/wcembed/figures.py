"""Static figures of embeddings, for executed notebooks that are read without a kernel."""

from __future__ import annotations

import io

import numpy as np

from wcembed.store import read_column


def first_principal_component(vectors: np.ndarray) -> np.ndarray:
    """Projection of each row of ``vectors`` on their first principal component (0 for fewer than 2 rows)."""
    x = np.asarray(vectors, dtype=np.float64)
    if len(x) < 2:
        return np.zeros(len(x))
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[0]


def pca_map(path: str | list[str], ax=None):
    """Plot the chips of a column file (or of several) coloured by the first principal component of their
    embeddings."""
    import matplotlib.pyplot as plt
    import pandas as pd

    frames = [read_column(p) for p in ([path] if isinstance(path, str) else path)]
    gdf = pd.concat([f[0] for f in frames], ignore_index=True)
    vectors = np.concatenate([f[1] for f in frames])
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


def gallery_figure(results, thumbs, layer: str, size: int = 160):
    """A static figure of the results' WMS thumbnails with rank and distance (for executed notebooks)."""
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


def map_figure(explorer, size: tuple[int, int] = (900, 520)):
    """The explorer's map as a static figure: what its view shows, drawn in EPSG:4326.

    The view is the map's centre and zoom at a nominal ``size`` in screen pixels (Web Mercator
    pixels, so the extent matches Leaflet's); in it: the imagery layer from the WMS, the region
    layer with its threshold and opacity, the query chip, the neighbours coloured by rank and the
    labelled chips. Used as the picture an executed notebook keeps of the live map.
    """
    import matplotlib.pyplot as plt
    from PIL import Image

    from wcembed.styles import label_style, results_geojson

    lat, lon = (float(v) for v in explorer.map.center)
    w, h = size
    deg = 360 / (256 * 2 ** float(explorer.map.zoom))  # degrees of longitude per pixel at the map's zoom
    half_w, half_h = w / 2 * deg, h / 2 * deg * np.cos(np.radians(lat))
    west, south, east, north = lon - half_w, lat - half_h, lon + half_w, lat + half_h
    fig, ax = plt.subplots(figsize=(w / 100, h / 100), dpi=100)
    if explorer.layer:
        png = explorer.thumbs.thumbnail((west, south, east, north), explorer.layer, (w, h))
        ax.imshow(Image.open(io.BytesIO(png)), extent=(west, east, south, north))
    layer = explorer.region_layers.get(explorer.region_box.value)
    if layer is not None:
        shown = layer if layer.values.ndim == 3 else layer.masked(explorer.threshold.value)
        lw, ls, le, ln = shown.bounds
        ax.imshow(shown.rgba(), extent=(lw, le, ls, ln), alpha=explorer.opacity.value, interpolation="nearest")
    features = []
    if explorer.results is not None:
        features += results_geojson(explorer.results, explorer.query)["features"][::-1]  # query drawn last
    features += [{**f, "properties": {**f["properties"], "style": label_style(f)}}
                 for f in explorer.labels.to_geojson()["features"]]  # fmt: skip
    for f in features:
        ring = np.asarray(f["geometry"]["coordinates"][0])
        style = f["properties"]["style"]
        ax.plot(ring[:, 0], ring[:, 1], color=style["color"], linewidth=style["weight"] * 0.6)
    ax.set_xlim(west, east)
    ax.set_ylim(south, north)
    ax.set_aspect(1 / np.cos(np.radians(lat)))
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    ax.set_title(explorer.status.value or "the map", fontsize=9)
    fig.tight_layout()
    return fig


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
