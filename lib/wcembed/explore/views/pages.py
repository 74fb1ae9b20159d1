"""The map as a standalone page: a Leaflet (folium) export and headless-Chromium screenshots."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from wcembed.core.errors import ToolError
from wcembed.explore.views.styles import label_features, legend_html, results_geojson


def export_html(path, session, wms_url: str, layer: str | None, *, center, zoom: int) -> Path:
    """Write a Leaflet page (folium) of an :class:`~wcembed.explore.state.session.ExploreSession`'s map.

    On the page: the WMS imagery ``layer``; the session's region layer with its threshold, opacity and
    legend (warped to Web Mercator, :meth:`wcembed.explore.compute.layers.ChipRaster.png_data_url`); the results
    coloured by rank, the query chip and the labelled chips, styled as the live map styles them.
    ``center``: (lat, lon) in degrees; ``zoom``: Leaflet's.
    """
    import folium  # deferred: only for a page

    m = folium.Map(location=center, zoom_start=zoom, tiles=None, control_scale=True)
    if layer:
        folium.raster_layers.WmsTileLayer(
            url=wms_url, layers=layer, fmt="image/png", transparent=True, name=layer, version="1.3.0"
        ).add_to(m)
    shown = None if session.layer is None else session.layer.shown()
    if shown is not None:
        url, (w, s, e, n) = shown.png_data_url()
        folium.raster_layers.ImageOverlay(
            image=url, bounds=[[s, w], [n, e]], opacity=session.layer.opacity, mercator_project=False
        ).add_to(m)
        box = '<div style="position:fixed;bottom:20px;right:10px;z-index:1000">{}</div>'
        legend = box.format(legend_html(session.layer.raster))
        m.get_root().html.add_child(folium.Element(legend))
    found = results_geojson(session.results, session.search.query)["features"] if session.results is not None else []
    for features in (found, label_features(session.labels)):
        if features:
            data = {"type": "FeatureCollection", "features": features}
            folium.GeoJson(data, style_function=lambda f: f["properties"]["style"]).add_to(m)
    m.save(str(path))
    return Path(path)


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
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        raise ToolError("no Chromium found (Debian: apt-get install chromium)")
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
        raise ToolError(f"Chromium wrote no screenshot of {html_path}")
    return Path(png_path)
