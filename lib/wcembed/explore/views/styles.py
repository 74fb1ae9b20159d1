"""How search results, labels and a region layer's legend look on a map: GeoJSON whose features carry
their style, and the legend as HTML.

Used by the live map (:mod:`wcembed.explore.views.view`) and the exported page
(:mod:`wcembed.explore.views.pages`) alike, so both draw the same thing; and the height
of the widgets' status lines (:data:`TEXT_LINE`).
"""

from __future__ import annotations

import html
import json

import matplotlib
import numpy as np

RANK_CMAP = "plasma"

TEXT_LINE = "var(--jp-widgets-inline-height, 28px)"
"""The height of a line of widget text in JupyterLab: a status line keeps it while empty, so that what is
below it (the map) does not move when a line comes and goes."""


def rank_colors(n: int) -> list[str]:
    """Hex colours for ranks 1..n (rank 1 brightest)."""
    cmap = matplotlib.colormaps[RANK_CMAP]
    return [matplotlib.colors.to_hex(cmap(0.95 - 0.8 * i / max(n - 1, 1))) for i in range(n)]


def results_geojson(results, query=None) -> dict:
    """Search results (GeoDataFrame) as GeoJSON whose features carry their style (colour by rank)."""
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


def label_style(feature: dict) -> dict:
    """Style of a labelled chip: green for positive, red for negative."""
    colour = "#00ff00" if feature["properties"]["label"] == "positive" else "#ff0000"
    return {"color": colour, "weight": 3, "fillOpacity": 0.25, "fillColor": colour}


def label_features(labels) -> list[dict]:
    """The labelled chips (a :class:`~wcembed.explore.compute.classify.Labels`) as GeoJSON features styled by label."""
    return [{**f, "properties": {**f["properties"], "style": label_style(f)}} for f in labels.to_geojson()["features"]]


def legend_html(raster) -> str:
    """The legend of a :class:`~wcembed.explore.compute.layers.ChipRaster`: name, description, and a colour bar
    from vmin to vmax (or 'RGB')."""
    if raster.values.ndim == 2:
        cmap = matplotlib.colormaps[raster.cmap]
        stops = ", ".join(matplotlib.colors.to_hex(cmap(t)) for t in np.linspace(0, 1, 9))
        bar = (
            f'<div style="height:10px;width:200px;background:linear-gradient(to right, {stops})"></div>'
            f'<div style="width:200px;display:flex;justify-content:space-between">'
            f"<span>{raster.vmin:.3g}</span><span>{raster.vmax:.3g}</span></div>"
        )
    else:
        bar = "<div>RGB = principal components 1, 2, 3</div>"
    return (
        f'<div style="font:12px sans-serif;background:white;padding:4px;max-width:260px">'
        f"<b>{html.escape(raster.name)}</b><br>{html.escape(raster.description)}{bar}</div>"
    )
