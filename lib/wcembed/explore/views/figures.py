"""Static pictures of the explorer (its map, the results' thumbnails, a region layer, the learning curve), for
notebooks read without a kernel and for the labelling panel."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from wcembed.explore.views.styles import label_features, results_geojson


def gallery_figure(results, thumbs, layer: str, size: int = 160):
    """A static figure of the results' WMS thumbnails with rank and distance (for executed notebooks)."""
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
    """A picture of a map of an :class:`~wcembed.explore.state.session.ExploreSession`, drawn in EPSG:4326.

    The view is ``center`` ((lat, lon), degrees) at Leaflet ``zoom`` in a nominal ``size`` in screen
    pixels (Web Mercator pixels, so the extent matches Leaflet's); in it: the imagery ``layer`` from the
    WMS client ``thumbs``, the session's region layer with its threshold and opacity, the labelled chips,
    the neighbours coloured by rank and the query chip. Used as the picture an executed notebook keeps of
    the live map (:meth:`wcembed.explore.views.view.Explorer.figure`).
    """
    lat, lon = (float(v) for v in center)
    w, h = size
    deg = 360 / (256 * 2 ** float(zoom))  # degrees of longitude per pixel at the map's zoom
    half_w, half_h = w / 2 * deg, h / 2 * deg * np.cos(np.radians(lat))
    west, south, east, north = lon - half_w, lat - half_h, lon + half_w, lat + half_h
    fig, ax = plt.subplots(figsize=(w / 100, h / 100), dpi=100)
    if layer:
        png = thumbs.thumbnail((west, south, east, north), layer, (w, h))
        ax.imshow(Image.open(io.BytesIO(png)), extent=(west, east, south, north))
    shown = None if session.layer is None else session.layer.shown()
    if shown is not None:
        lw, ls, le, ln = shown.bounds
        ax.imshow(shown.rgba(), extent=(lw, le, ls, ln), alpha=session.layer.opacity, interpolation="nearest")
    features = (
        results_geojson(session.results, session.search.query)["features"][::-1] if session.results is not None else []
    )
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


def layer_figure(raster, ax=None):
    """A static figure of a :class:`~wcembed.explore.compute.layers.ChipRaster` (lon/lat axes in degrees,
    colour bar, title and legend text), for notebooks read without a kernel. Returns the axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    w, s, e, n = raster.bounds
    if raster.values.ndim == 2:
        im = ax.imshow(raster.values, extent=(w, e, s, n), cmap=raster.cmap, vmin=raster.vmin, vmax=raster.vmax)
        ax.figure.colorbar(im, ax=ax, shrink=0.8)
    else:
        ax.imshow(raster.rgba(), extent=(w, e, s, n))
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    ax.set_title(f"{raster.name}\n{raster.description}", fontsize=9, wrap=True)
    return ax


def curve_figure(history):
    """The learning curve of a labelling loop: CV balanced accuracy (spatially blocked, 0..1) against the
    number of labels, one point per training round (``history``: (labels, accuracy) pairs). The y axis holds
    every value a balanced accuracy can take; before the first round the figure says that it comes then."""
    fig, ax = plt.subplots(figsize=(4.2, 2.6), dpi=100)
    if history:
        n, acc = zip(*history, strict=True)
        ax.plot(n, acc, "o-", color="#1f77b4")
        ax.set_xlim(0, max(n) * 1.1 + 1)
    else:
        ax.text(0.5, 0.5, "the curve starts at the first retrain", ha="center", va="center", transform=ax.transAxes)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("labels")
    ax.set_ylabel("balanced accuracy (CV)")
    ax.set_title("learning curve (spatially blocked CV)", fontsize=9)
    fig.tight_layout()
    return fig
