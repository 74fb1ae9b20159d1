"""Static pictures of the explorer (its map, the results' thumbnails), for notebooks read without a kernel."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np


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
    bounds = [tuple(g.bounds) for g in results.geometry]
    with ThreadPoolExecutor(max_workers=8) as pool:  # the WMS answers each request in its own process
        pngs = list(pool.map(lambda b: thumbs.thumbnail(b, layer, (size, size)), bounds))
    for ax, (_, row), png in zip(axes.ravel(), results.iterrows(), pngs, strict=False):
        ax.imshow(Image.open(io.BytesIO(png)))
        ax.set_title(f"#{row['rank']} d={row['distance']:.4f}\n{row['chip_id']}", fontsize=8)
    fig.tight_layout()
    return fig


def map_figure(session, thumbs, layer: str | None, center, zoom: float, size: tuple[int, int] = (900, 520)):
    """A picture of a map of an :class:`~wcembed.explore.session.ExploreSession`, drawn in EPSG:4326.

    The view is ``center`` ((lat, lon), degrees) at Leaflet ``zoom`` in a nominal ``size`` in screen
    pixels (Web Mercator pixels, so the extent matches Leaflet's); in it: the imagery ``layer`` from the
    WMS client ``thumbs``, the session's region layer with its threshold and opacity, the labelled chips,
    the neighbours coloured by rank and the query chip. Used as the picture an executed notebook keeps of
    the live map (:meth:`wcembed.explore.view.Explorer.figure`).
    """
    import matplotlib.pyplot as plt
    from PIL import Image

    from wcembed.explore.styles import label_features, results_geojson

    lat, lon = (float(v) for v in center)
    w, h = size
    deg = 360 / (256 * 2 ** float(zoom))  # degrees of longitude per pixel at the map's zoom
    half_w, half_h = w / 2 * deg, h / 2 * deg * np.cos(np.radians(lat))
    west, south, east, north = lon - half_w, lat - half_h, lon + half_w, lat + half_h
    fig, ax = plt.subplots(figsize=(w / 100, h / 100), dpi=100)
    if layer:
        png = thumbs.thumbnail((west, south, east, north), layer, (w, h))
        ax.imshow(Image.open(io.BytesIO(png)), extent=(west, east, south, north))
    shown = session.shown()
    if shown is not None:
        lw, ls, le, ln = shown.bounds
        ax.imshow(shown.rgba(), extent=(lw, le, ls, ln), alpha=session.opacity, interpolation="nearest")
    features = results_geojson(session.results, session.query)["features"][::-1] if session.results is not None else []
    features += label_features(session.labels)  # the query drawn after the results, the labels last
    for f in features:
        ring = np.asarray(f["geometry"]["coordinates"][0])
        style = f["properties"]["style"]
        ax.plot(ring[:, 0], ring[:, 1], color=style["color"], linewidth=style["weight"] * 0.6)
    ax.set_xlim(west, east)
    ax.set_ylim(south, north)
    ax.set_aspect(1 / np.cos(np.radians(lat)))
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    ax.set_title(session.status or "the map", fontsize=9)
    fig.tight_layout()
    return fig
