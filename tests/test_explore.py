"""The explore map: click handler, WMS imagery in a real headless browser."""

import html
import io
import re
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image
from wcembed import ROOT
from wcembed.explore.state.session import ExploreSession
from wcembed.explore.views.pages import offline_html, screenshot
from wcembed.explore.views.styles import rank_colors
from wcembed.explore.views.view import Explorer
from wcembed.explore.views.wms import WMSClient
from wcembed.tools.plots import first_principal_component

NODE_MODULES = ROOT / ".cache/js/node_modules"


def test_click_handler_updates_results_and_gallery(explore_db):
    grid, index, wms, tmp = explore_db
    ex = Explorer(ExploreSession(index, k=5), wms.url, thumbnails=WMSClient(wms.url, cache_dir=tmp / "thumbs"))
    assert ex.offered == {(2020, "TCC"), (2020, "FCC")}  # no local land-cover map, one year
    imagery = [x for x in ex.map.layers if str(getattr(x, "layers", "")).startswith("WORLDCOVER")]
    assert imagery == [ex.imagery_layer]  # one imagery layer: only what is seen is fetched
    assert ex.controls["imagery"].options == ("TCC", "FCC") and ex.imagery_layer.layers == "WORLDCOVER_2020_S2_TCC"
    lon, lat = grid.chip_center(1156, 288)
    ex.handle_interaction(type="mousemove", coordinates=[lat, lon])  # ignored
    assert ex.session.results is None and ex.result_layer.data["features"] == []
    ex.handle_interaction(type="click", coordinates=[lat, lon])  # what ipyleaflet sends on a click
    assert list(ex.session.results["chip_id"]) == list(index.by_chip("2020-1156-0288", 5, year=2020)["chip_id"])
    feats = ex.result_layer.data["features"]
    assert len(feats) == 6 and feats[0]["properties"]["chip_id"] == "2020-1156-0288"  # query + 5 neighbours
    assert [f["properties"]["style"]["color"] for f in feats[1:]] == rank_colors(5)
    assert len(ex.gallery.children) == 5
    cards = ex.gallery.children  # another search fills the same card widgets: a click sends HTML, not widgets
    ex.handle_interaction(type="click", coordinates=list(grid.chip_center(1157, 289))[::-1])
    assert ex.gallery.children == cards and ex.session.search.last.chips == ("2020-1157-0289",)
    assert all(
        f">#{i + 1} {chip}<" in card.value
        for i, (card, chip) in enumerate(zip(cards, ex.session.results["chip_id"], strict=True))
    )
    ex.handle_interaction(type="click", coordinates=[lat, lon])
    src = re.search(r'<img src="([^"]+)"', ex.gallery.children[0].value)[1]
    png = urllib.request.urlopen(html.unescape(src), timeout=60).read()  # what the browser fetches
    assert png.startswith(b"\x89PNG") and Image.open(io.BytesIO(png)).size == (128, 128)
    ex.controls["mode"].value = "positive"  # the toggle buttons, as a user sets them
    assert ex.session.search.mode == "positive"
    ex.handle_interaction(type="click", coordinates=[lat, lon])
    ex.session.search.mode = "negative"  # code sets the session; the buttons follow
    assert ex.controls["mode"].value == "negative"
    nlon, nlat = grid.chip_center(1158, 290)
    ex.handle_interaction(type="click", coordinates=[nlat, nlon])
    assert ex.session.labelling.negatives == ["2020-1158-0290"] and "negatives 1" in ex.status.value
    assert "2020-1158-0290" not in set(ex.session.results["chip_id"])
    ex.session.search.mode = "search"
    assert ex.session.click(-80.0, 30.0) is None and "no chip" in ex.status.value
    ex.controls["imagery"].value = "FCC"  # the imagery shown and the thumbnails follow the choice
    assert ex.imagery_layer.layers == "WORLDCOVER_2020_S2_FCC" and ex.imagery_layer.visible
    assert "WORLDCOVER_2020_S2_FCC" in ex.gallery.children[0].value
    far = ex.thumbnail_html("2020-0100-0100", "far away")  # a chip outside the WMS's imagery: said, no blank image
    assert "no imagery here" in far and "<img" not in far  # outside the extent: no image asked for
    near = ex.thumbnail_html("2020-1156-0288", "x")  # inside: the image over the square that shows where it has no data
    assert near.index("no imagery here") < near.index("<img") and "position:absolute" in near


class SlowThumbnails(WMSClient):
    """A WMS client whose image fetches take 300 ms (a WMS on the internet), counting them."""

    fetches = 0

    def thumbnail(self, *args, **kwargs) -> bytes:
        type(self).fetches += 1
        time.sleep(0.3)
        return super().thumbnail(*args, **kwargs)


def test_a_click_fetches_no_thumbnail_in_the_kernel(explore_db):
    """The gallery's images are GetMap URLs the browser loads: a slow WMS cannot hold a click."""
    grid, index, wms, _ = explore_db
    ex = Explorer(ExploreSession(index, k=10), wms.url, thumbnails=SlowThumbnails(wms.url, cache_dir=None))
    results = ex.session.click(*grid.chip_center(1157, 289))
    assert len(results) == 10 and len(ex.gallery.children) == 10
    assert SlowThumbnails.fetches == 0
    bounds = [tuple(g.bounds) for g in results.geometry]
    for card, b in zip(ex.gallery.children, bounds, strict=True):
        assert ex.thumbs.getmap_url(b, ex.imagery_name, (128, 128)) == html.unescape(
            re.search(r'src="([^"]+)"', card.value)[1]
        )


@pytest.mark.slow
def test_map_page_shows_imagery_and_neighbours_in_chromium(explore_db):
    grid, index, wms, tmp = explore_db
    ex = Explorer(ExploreSession(index, k=8), wms.url, thumbnails=WMSClient(wms.url, cache_dir=tmp / "thumbs"))
    lon, lat = grid.chip_center(1156, 288)
    ex.handle_interaction(type="click", coordinates=[lat, lon])
    page = ex.to_html(tmp / "map.html", center=[37.675, -75.62], zoom=12)
    out = ROOT / "outputs" / "test_map.png"
    out.parent.mkdir(exist_ok=True)
    screenshot(offline_html(page, NODE_MODULES), out, size=(1000, 700))
    img = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert img.shape == (700, 1000, 3)
    centre = img[250:450, 350:650]
    background = (np.abs(centre - centre[0, 0]).sum(axis=2) < 6).mean()
    assert background < 0.2, "no imagery where the data is"
    assert centre.std() > 15  # real texture, not a flat colour
    corner = img[5:40, 960:995]  # outside the data: Leaflet's empty background
    assert corner.std() < 10
    colours = {tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in rank_colors(8)}
    hits = sum((np.abs(img - np.array(c)).sum(axis=2) < 30).sum() for c in colours)
    assert hits > 500, "neighbour outlines not drawn"


def test_first_principal_component():
    rng = np.random.default_rng(0)
    x = np.outer(np.linspace(-1, 1, 50), rng.normal(size=8)) + 0.01 * rng.normal(size=(50, 8))
    pc1 = first_principal_component(x)
    assert abs(np.corrcoef(pc1, np.linspace(-1, 1, 50))[0, 1]) > 0.99
    assert first_principal_component(x[:1]).tolist() == [0.0]


def test_the_map_leaves_a_picture_for_readers_without_a_kernel(explore_db):
    """Displayed, the explorer is the live widget plus a PNG of its view: what GitHub, nbviewer and an
    untrusted executed notebook in JupyterLab show instead of ``VBox(...)`` text."""
    import base64

    from wcembed.tools.servers import free_port

    grid, index, wms, _ = explore_db
    session = ExploreSession(index, k=5)
    ex = Explorer(session, wms.url, thumbnails=WMSClient(wms.url, cache_dir=None), center=[37.675, -75.62])
    session.click(*grid.chip_center(1157, 288))
    bundle = ex._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == ex.widget().model_id
    img = np.asarray(Image.open(io.BytesIO(base64.b64decode(bundle["image/png"]))).convert("RGB")).astype(int)
    assert img.std() > 15  # imagery, not a blank axis
    cyan = (np.abs(img - [0, 255, 255]).sum(axis=2) < 40).sum()
    ranks = [tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in rank_colors(5)]
    assert cyan > 50, "query chip not drawn"
    assert sum((np.abs(img - np.array(c)).sum(axis=2) < 30).sum() for c in ranks) > 100, "neighbours not drawn"
    ex.thumbs = WMSClient(f"http://127.0.0.1:{free_port()}/wms", cache_dir=None, timeout=2)  # nothing listens
    bundle = ex._repr_mimebundle_()
    assert "image/png" not in bundle and "application/vnd.jupyter.widget-view+json" in bundle
