"""Whole-region layers: the chip grid as a raster, its COG, its map image, and the layers built on it."""

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from builders import tiny_model
from PIL import Image
from wcembed.core.errors import BadParameterError
from wcembed.core.grid import CHIP_PX, CONUS_ORIGIN, chip_at, chip_bounds
from wcembed.core.product import PX_PER_DEGREE
from wcembed.explore.compute.layers import ChipRaster
from wcembed.explore.compute.vectors import ChangePairs, YearVectors, change

# chips at the corners of the CONUS grid and across tile edges (a 512 px chip straddles 1-degree tiles)
CHIPS = [(0, 0), (1382, 0), (0, 609), (1382, 609), (1148, 287), (1149, 287), (23, 23), (24, 23)]


def _raster(**kw):
    cols, rows = zip(*CHIPS, strict=True)
    return ChipRaster.from_chips(cols, rows, np.arange(len(CHIPS), dtype=np.float32), name="test", **kw)


def test_the_pixel_of_a_chip_lies_at_the_chip_centre():
    layer = _raster()
    assert (layer.column0, layer.row0) == (0, 0) and layer.shape == (610, 1383)
    assert layer.chip_deg == CHIP_PX / PX_PER_DEGREE
    for i, (c, r) in enumerate(CHIPS):
        w, s, e, n = chip_bounds(c, r)
        lon, lat = layer.transform * (c - layer.column0 + 0.5, r - layer.row0 + 0.5)
        assert lon == pytest.approx((w + e) / 2, abs=1e-9) and lat == pytest.approx((s + n) / 2, abs=1e-9)
        assert layer.value_at(lon, lat) == i and chip_at(lon, lat) == (c, r)
    assert np.isnan(layer.value_at(-100.0, 40.0))  # a pixel without a chip is NaN
    assert layer.bounds == pytest.approx((CONUS_ORIGIN[0], 50 - 610 * layer.chip_deg, -125 + 1383 * layer.chip_deg, 50))


def test_cog_georeferencing_equals_the_grid_and_values_round_trip(tmp_path):
    layer = _raster(description="synthetic values")
    path = layer.to_cog(tmp_path / "layer.tif")
    with rasterio.open(path) as ds:
        assert ds.crs.to_epsg() == 4326 and ds.transform.almost_equals(layer.transform, precision=1e-12)
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and ds.overviews(1)
        got = ds.read(1)
        assert ds.tags()["description"] == "synthetic values"
    np.testing.assert_array_equal(got, layer.values)  # NaN where no chip, in the same places
    rio = Path(sys.executable).with_name("rio")  # rasterio's command line, as a GIS user would look
    info = json.loads(subprocess.run([rio, "info", str(path)], capture_output=True, text=True, check=True).stdout)
    assert info["transform"][:6] == pytest.approx([layer.chip_deg, 0.0, -125.0, 0.0, -layer.chip_deg, 50.0], abs=1e-12)
    assert info["crs"] == "EPSG:4326" and np.isnan(info["nodata"])
    assert not list(tmp_path.glob(".*partial"))


def test_the_map_image_puts_each_chip_under_its_own_colour():
    from pyproj import Transformer

    cols, rows = np.meshgrid(np.arange(1140, 1170), np.arange(280, 300))
    values = np.random.default_rng(0).random(cols.size).astype(np.float32)
    layer = ChipRaster.from_chips(cols.ravel(), rows.ravel(), values, cmap="viridis")
    image, (w, s, e, n) = layer.to_mercator()
    png, bounds = layer.png()  # what the map is sent: a palette PNG, the same colours
    assert bounds == (w, s, e, n) and layer.map_supersample() == 4
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png)).convert("RGBA")), image)
    to_merc = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    (x0, x1), (y0, y1) = to_merc.transform([w, e], [s, n])
    rgba = layer.rgba()
    for c, r in [(1140, 280), (1169, 299), (1155, 290), (1156, 290), (1155, 291)]:
        cw, cs, ce, cn = chip_bounds(c, r)
        inset = 0.15 * (ce - cw)  # more than half a map pixel (1/8 chip): closer to an edge, either chip is right
        for lon, lat in [((cw + ce) / 2, (cs + cn) / 2), (cw + inset, cn - inset), (ce - inset, cs + inset)]:
            x, y = to_merc.transform(lon, lat)
            px = int((x - x0) / (x1 - x0) * image.shape[1])
            py = int((y1 - y) / (y1 - y0) * image.shape[0])
            assert tuple(image[py, px]) == tuple(rgba[r - 280, c - 1140]), (c, r, lon, lat)


def test_at_chip_zoom_the_view_image_draws_every_chip_as_a_square_on_its_outline():
    """The map's view at zoom 11 (a 512 px chip is ~62 x 78 screen pixels at 37.6° N): each chip's pixels are the
    screen pixels whose centres lie in the chip's outline (Web Mercator arithmetic done here with pyproj)."""
    from pyproj import Transformer

    cols, rows = np.meshgrid(np.arange(1140, 1170), np.arange(280, 300))
    values = np.random.default_rng(0).random(cols.size).astype(np.float32)
    layer = ChipRaster.from_chips(cols.ravel(), rows.ravel(), values, cmap="viridis")
    lon, lat = _centre(1155, 290)
    view = (lon - 0.1, lat - 0.08, lon + 0.1, lat + 0.08)
    image, (w, s, e, n) = layer.view_image(view, zoom=11)
    assert (w, s, e, n) == view and image.shape[1] == 292  # 0.2° at zoom 11: 291.4 screen pixels
    url, bounds = layer.view_png(view, zoom=11)
    assert bounds == view
    png = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGBA"))
    np.testing.assert_array_equal(png, layer.palette()[image])
    to_merc = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    (x0, x1), (y0, y1) = to_merc.transform([w, e], [s, n])
    px = (x1 - x0) / image.shape[1]
    xs, ys = (
        x0 + (np.arange(image.shape[1]) + 0.5) * px,
        y1 - (np.arange(image.shape[0]) + 0.5) * (y1 - y0) / image.shape[0],
    )
    index = layer.colour_index()
    for c, r in [(1155, 290), (1156, 290), (1155, 291), (1154, 289)]:
        (cx0, cx1), (cy0, cy1) = to_merc.transform(chip_bounds(c, r)[::2], chip_bounds(c, r)[1::2])
        inside = np.outer((ys > cy0) & (ys < cy1), (xs > cx0) & (xs < cx1))
        assert 60 * 76 < inside.sum() < 64 * 80  # the chip's outline: ~62 x 78 screen pixels
        assert (image[inside] == index[r - 280, c - 1140]).all(), (c, r)
    assert layer.view_image((0, 0, 1, 1), zoom=11) is None  # nowhere near the chips


def test_layer_from_chip_ids_and_a_bad_id():
    from wcembed.core.errors import BadParameterError

    layer = ChipRaster.from_ids(["2020-1156-0288", "2020-1158-0290"], np.array([0.25, 0.75]))
    assert (layer.column0, layer.row0, layer.shape) == (1156, 288, (3, 3))
    assert layer.value_at(*_centre(1158, 290)) == 0.75 and np.isnan(layer.values[1, 1])
    with pytest.raises(BadParameterError, match="not a chip id: '2020-x-1'"):
        ChipRaster.from_ids(["2020-1156-0288", "2020-x-1"], np.array([0.25, 0.75]))


def test_masked_layer_is_transparent_below_the_threshold():
    layer = _raster(vmin=0, vmax=7)
    shown = layer.masked(4)
    assert np.nansum(shown.values >= 4) == 4 and np.isnan(shown.values).sum() == shown.values.size - 4
    assert (shown.rgba()[..., 3] > 0).sum() == 4


def _year(year, columns, rows, vectors):
    return YearVectors.from_matrix(year, columns, rows, vectors)


def test_similarity_pca_and_change_layers_on_synthetic_vectors():
    rng = np.random.default_rng(0)
    cols, rows = (a.ravel() for a in np.meshgrid(np.arange(100, 140), np.arange(200, 230)))
    x = rng.normal(size=(len(cols), 32)).astype(np.float32)
    a = _year(2020, cols, rows, x)
    sim = a.similarity(x[17])
    assert sim.value_at(*_centre(cols[17], rows[17])) == pytest.approx(1.0, abs=5e-4)  # VECTOR_DTYPE's rounding
    assert np.nanargmax(sim.values) == np.ravel_multi_index((rows[17] - 200, cols[17] - 100), sim.shape)
    rgb = a.pca_rgb()
    assert rgb.values.shape == (3, 30, 40) and np.nanmin(rgb.values) >= 0 and np.nanmax(rgb.values) <= 1
    changed = rng.choice(len(cols), 25, replace=False)
    y = x.copy()
    y[changed] = rng.normal(size=(25, 32))
    b = _year(2021, cols[::-1], rows[::-1], y[::-1])  # another order: chips are matched by column and row
    layer, table = change(a, b)
    assert set(zip(table["column"][:25], table["row"][:25], strict=True)) == set(
        zip(cols[changed], rows[changed], strict=True)
    )
    assert table["distance"][25:].max() < 1e-6 and table["distance"][:25].min() > 0.1
    assert layer.value_at(*_centre(cols[changed[0]], rows[changed[0]])) == pytest.approx(
        table["distance"][table["column"] == cols[changed[0]]].max(), rel=1e-6
    )


def _centre(column, row):
    w, s, e, n = chip_bounds(int(column), int(row))
    return (w + e) / 2, (s + n) / 2


ALTERED = [(1156, 288), (1157, 289)]  # chips of the sample whose 2021 pixels the test replaces (synthetic change)


def _altered_2021(sample_root, root):
    """A tile folder: the sample's 2020 tile, and a 2021 tile equal to it except ALTERED, whose pixels are
    mirrored left-right (real texture, other content). Synthetic change, made by this test."""
    import shutil

    from rasterio.windows import Window
    from wcembed.core.product import Tile, tile_key
    from wcembed.tools.sample import write_tile

    tile = Tile(37, -76)
    src = Path(sample_root) / tile_key(tile, 2020)
    (root / tile_key(tile, 2020)).parent.mkdir(parents=True)
    shutil.copy(src, root / tile_key(tile, 2020))
    window = Window(3200, 2848, 2720, 2160)  # the scene's extent in the tile
    with rasterio.open(src) as ds:
        data = ds.read(window=window)
    x0 = round((tile.lon - CONUS_ORIGIN[0]) * PX_PER_DEGREE)
    y0 = round((CONUS_ORIGIN[1] - tile.lat - 1) * PX_PER_DEGREE)
    for c, r in ALTERED:
        x, y = c * CHIP_PX - x0 - window.col_off, r * CHIP_PX - y0 - window.row_off
        data[:, y : y + CHIP_PX, x : x + CHIP_PX] = data[:, y : y + CHIP_PX, x : x + CHIP_PX][:, :, ::-1]
    write_tile(root / tile_key(tile, 2021), tile, data, window, overviews=False)
    return root


@pytest.fixture(scope="module")
def two_years(sample_root, tmp_path_factory):
    """An index of the sample's columns 1154..1159 in 2020 and in the altered 2021, and the tile folder."""
    from wcembed.explore.data.index import ChipIndex
    from wcembed.explore.data.ingest import ingest
    from wcembed.pipeline.embed import embed_column

    tmp = tmp_path_factory.mktemp("two_years")
    tiles = _altered_2021(sample_root, tmp / "tiles")
    model = tiny_model()
    for year in (2020, 2021):
        for column in range(1154, 1160):
            embed_column(year, column, output=tmp / "emb", tiles=str(tiles), model=model, progress=False)
    ingest(tmp / "emb", tmp / "db")
    return ChipIndex(tmp / "db"), tiles


@pytest.mark.slow
def test_change_layer_finds_exactly_the_altered_chips(two_years):
    index, _ = two_years
    a, b = YearVectors.load(index, 2020), YearVectors.load(index, 2021)
    assert len(a) == len(b) > 10 and index.untrained
    layer, table = change(a, b)
    top = set(zip(table["column"][:2], table["row"][:2], strict=True))
    assert top == set(ALTERED)
    # unaltered chips differ only through the year's time encoding: far below the altered ones
    assert table["distance"][2:].max() < 0.2 * table["distance"][:2].min()
    assert "UNTRAINED" in layer.description and layer.name == "change 2020 → 2021"
    for c, r in ALTERED:
        assert layer.value_at(*_centre(c, r)) >= table["distance"][1]


@pytest.mark.slow
def test_region_layers_in_the_map(two_years, tmp_path):
    from wcembed.explore.state.session import ExploreSession
    from wcembed.explore.views.view import Explorer
    from wcembed.explore.views.wms import LocalWMS, WMSClient

    index, tiles = two_years
    with LocalWMS(tiles, tmp_path / "ms") as wms:
        s = ExploreSession(index)
        ex = Explorer(s, wms.url, thumbnails=WMSClient(wms.url, cache_dir=None), basemap=None)
        assert not [x for x in ex.map.layers if getattr(x, "base", False)]  # no basemap: nothing from the internet
        ex.controls["region"].value = "similarity"  # before any click: the region line says what to do
        assert "click a chip first" in ex.region_status.value and not ex.region_overlay.visible
        lon, lat = _centre(1156, 288)
        s.click(lon, lat)  # the search, then the similarity of every chip to the clicked one
        sim = s.layer.raster
        assert sim.value_at(lon, lat) == pytest.approx(1.0, abs=5e-4) and ex.region_overlay.visible
        assert "2020-1156-0288" in sim.description and "UNTRAINED" in ex.legend.value
        ex.threshold.value = ex.threshold.max  # only the query chip (similarity 1) stays
        assert ex.region_status.value.startswith("1 chips with similarity 2020")
        with ex.map.hold_trait_notifications():  # the front end reports the view it shows (zoom 12)
            for side, value in zip(
                ("south", "west", "north", "east"), (lat - 0.03, lon - 0.05, lat + 0.03, lon + 0.05), strict=True
            ):
                ex.map.set_trait(side, value)
        assert [tuple(c) for c in ex.region_overlay.bounds] == [(lat - 0.03, lon - 0.05), (lat + 0.03, lon + 0.05)]
        picture = Image.open(io.BytesIO(base64.b64decode(ex.region_overlay.url.split(",", 1)[1])))
        assert picture.width == 292  # 0.1° at zoom 12 is 291.3 screen pixels: one image pixel each
        first = s.layer
        t = ex.threshold.value = s.layer.snap((ex.threshold.min + ex.threshold.max) / 2)
        for place in [(1155, 287), (1158, 290), (1157, 289)]:
            s.click(*_centre(*place))  # each click a new similarity layer with its own slider, at its own start
            start = 0.0 if s.layer.lo <= 0.0 <= s.layer.hi else s.layer.lo
            assert ex.threshold.value == s.layer.threshold == start and first.threshold == t
        t = ex.threshold.value = s.layer.snap((ex.threshold.min + ex.threshold.max) / 2)
        ex.threshold.value = t + 0.3 * ex.threshold.step  # the front end snapping it to its step grid: an echo
        assert s.layer.threshold == t
        ex.threshold.value = t + ex.threshold.step  # the user: one step up
        assert s.layer.threshold == pytest.approx(t + ex.threshold.step)
        ex.opacity.value = 0.4
        assert s.layer.opacity == ex.region_overlay.opacity == 0.4
        ex.controls["mode"].value = "positive"
        s.click(*_centre(1157, 288))
        assert "1 positive and 0 negative" in s.layer.raster.description
        ex.controls["mode"].value = "search"
        s.click(lon, lat)
        assert (
            "WORLDCOVER_2020_S2_TCC" in ex.gallery.children[0].value
            and ex.imagery_layer.layers == "WORLDCOVER_2020_S2_TCC"
        )
        ex.controls["year"].value = 2021  # the year switch: search, layer, legend, imagery and thumbnails follow
        assert s.status.startswith("10 nearest of 2021-1156-0288") and "similarity 2021" in ex.legend.value
        assert (
            "2021-1156-0288" in s.layer.raster.description and "chips with similarity 2021 ≥" in ex.region_status.value
        )
        assert ex.imagery_layer.layers == "WORLDCOVER_2021_S2_TCC" and ex.imagery_layer.visible
        assert "WORLDCOVER_2021_S2_TCC" in ex.gallery.children[0].value
        ex.controls["year"].value = 2020
        assert "similarity 2020" in ex.legend.value and ex.imagery_layer.layers == "WORLDCOVER_2020_S2_TCC"
        ex.controls["region"].value = "change"
        assert set(zip(s.layers.changes["column"][:2], s.layers.changes["row"][:2], strict=True)) == set(ALTERED)
        s.click(*_centre(*ALTERED[0]))  # with the change layer shown, a click compares the chip's two years
        (pair,) = ex.compare_box.children
        assert _compared_years(pair) == ["WORLDCOVER_2020_S2_TCC", "WORLDCOVER_2021_S2_TCC"]
        ex.controls["imagery"].value = "FCC"  # the comparison follows the imagery kind
        (pair,) = ex.compare_box.children
        assert _compared_years(pair) == ["WORLDCOVER_2020_S2_FCC", "WORLDCOVER_2021_S2_FCC"]
        ex.controls["imagery"].value = "TCC"
        ex.controls["region"].value = "embedding colours"
        assert s.layer.rgb and ex.threshold.disabled and not ex.compare_box.children  # no comparison without it
        assert ex.threshold.layout.visibility == "hidden" and ex.opacity.layout.visibility == "visible"
        ex.controls["year"].value = 2021
        assert s.layer.key.years == (2021,) and "embedding colours" in ex.legend.value
        ex.controls["year"].value = 2020
        pair = ex.compare_years("2020-1156-0288")
        assert _compared_years(pair) == ["WORLDCOVER_2020_S2_TCC", "WORLDCOVER_2021_S2_TCC"]
        ex.controls["region"].value = "change"
        page = ex.to_html(tmp_path / "change.html", center=[lat, lon], zoom=12)
    html = page.read_text()
    assert "data:image/png;base64" in html and "change 2020 → 2021" in html
    ex.controls["region"].value = "none"
    assert not ex.region_overlay.visible and not ex.legend.value and not ex.region_status.value  # no stale line
    assert ex.threshold.layout.visibility == ex.opacity.layout.visibility == "hidden"  # no value of no layer
    assert all(c.layout.visibility != "hidden" for c in ex.controls.values())  # the others stay


def _compared_years(pair) -> list[str]:
    """The WMS layer of each map of a year comparison, checking that the two maps pan and zoom together and
    outline the same chip."""
    from ipyleaflet import GeoJSON, WMSLayer
    from ipywidgets.widgets.widget import _instances
    from ipywidgets.widgets.widget_link import Link

    first, second = (pane.children[1] for pane in pair.children)
    linked = [x for x in _instances.values() if isinstance(x, Link) and {x.source[0], x.target[0]} == {first, second}]
    assert sorted((x.source[1], x.target[1]) for x in linked) == [("center", "center"), ("zoom", "zoom")]
    outlines = [[x.data for x in m.layers if isinstance(x, GeoJSON)] for m in (first, second)]
    assert outlines[0] == outlines[1] and len(outlines[0]) == 1
    return [next(x.layers for x in m.layers if isinstance(x, WMSLayer)) for m in (first, second)]


SAME = [(1155, 288), (1157, 287), (1159, 290)]  # 2021: the same bright built-up patch pasted (synthetic)
OTHER = [(1156, 289), (1158, 288)]  # 2021: turned to water-like values (synthetic)


@pytest.fixture(scope="module")
def changed_alike(sample_root, tmp_path_factory):
    """An index of the sample's columns 1155..1159 in 2020 and in a 2021 copy altered by this test: three
    chips changed the same way, two others another way, the rest unchanged (synthetic changes)."""
    import shutil

    from rasterio.windows import Window
    from wcembed.core.product import Tile, tile_key
    from wcembed.explore.data.index import ChipIndex
    from wcembed.explore.data.ingest import ingest
    from wcembed.pipeline.embed import embed_column
    from wcembed.tools.sample import write_tile

    tmp = tmp_path_factory.mktemp("changed_alike")
    tile = Tile.from_name("N37W076")
    src = Path(sample_root) / tile_key(tile, 2020)
    (tmp / "tiles" / tile_key(tile, 2020)).parent.mkdir(parents=True)
    shutil.copy(src, tmp / "tiles" / tile_key(tile, 2020))
    x0 = round((tile.lon - CONUS_ORIGIN[0]) * PX_PER_DEGREE)
    y0 = round((CONUS_ORIGIN[1] - tile.lat - 1) * PX_PER_DEGREE)
    window = Window(1155 * CHIP_PX - x0, 287 * CHIP_PX - y0, 5 * CHIP_PX, 4 * CHIP_PX)
    with rasterio.open(src) as ds:
        data = ds.read(window=window)
    rng = np.random.default_rng(0)
    roofs = rng.integers(2500, 4200, size=(4, CHIP_PX, CHIP_PX), dtype=np.uint16)  # bright, varied: built-up
    roofs[:, ::64, :] = 900  # streets
    for c, r in SAME:
        x, y = (c - 1155) * CHIP_PX, (r - 287) * CHIP_PX
        data[:, y : y + CHIP_PX, x : x + CHIP_PX] = roofs
    for c, r in OTHER:
        x, y = (c - 1155) * CHIP_PX, (r - 287) * CHIP_PX
        loc = np.array([300, 450, 550, 120])[:, None, None]  # B04, B03, B02, B08: dark, darkest in the near infrared
        water = rng.normal(loc, 25, size=(4, CHIP_PX, CHIP_PX))
        data[:, y : y + CHIP_PX, x : x + CHIP_PX] = np.clip(water, 1, None).astype(np.uint16)
    write_tile(tmp / "tiles" / tile_key(tile, 2021), tile, data, window, overviews=False)
    model = tiny_model()
    for year in (2020, 2021):
        for column in range(1155, 1160):
            embed_column(year, column, output=tmp / "emb", tiles=str(tmp / "tiles"), model=model, progress=False)
    ingest(tmp / "emb", tmp / "db")
    return ChipIndex(tmp / "db")


@pytest.mark.slow
def test_changed_like_this_ranks_the_same_change_first(changed_alike):
    index = changed_alike
    pairs = ChangePairs(YearVectors.load(index, 2020), YearVectors.load(index, 2021))
    assert len(pairs) == 20
    query = f"2020-{SAME[0][0]:04d}-{SAME[0][1]:04d}"
    layer, top = pairs.like([query], k=19)
    ranked = list(zip(top["column"], top["row"], strict=True))
    assert set(ranked[:2]) == set(SAME[1:])  # the other two of the same change first
    assert set(ranked[2:4]) == set(OTHER)  # then the other change
    assert top["score"][1] > 2 * top["score"][2] and top["score"][4:].max() < 0.5 * top["score"][3]
    assert layer.value_at(*_centre(*SAME[1])) == pytest.approx(top["score"][ranked.index(SAME[1])], rel=1e-5)
    assert "changed like 2020-1155-0288" in layer.name and "UNTRAINED" in layer.description
    with pytest.raises(BadParameterError, match="not embedded in both"):
        pairs.like(["2020-1160-0288"])


@pytest.mark.slow
def test_changed_like_mode_in_the_map(changed_alike, sample_root, tmp_path):
    from wcembed.explore.state.session import ExploreSession
    from wcembed.explore.views.view import Explorer
    from wcembed.explore.views.wms import LocalWMS, WMSClient

    with LocalWMS(sample_root, tmp_path / "ms") as wms:
        s = ExploreSession(changed_alike, k=4)
        ex = Explorer(s, wms.url, thumbnails=WMSClient(wms.url, cache_dir=None))
        ex.controls["mode"].value = "changed like"
        results = s.click(*_centre(*SAME[0]))
        assert set(results["chip_id"][:2]) == {f"2020-{c:04d}-{r:04d}" for c, r in SAME[1:]}
        assert ex.controls["region"].value == "changed like" and "changed like" in ex.legend.value
        card = ex.gallery.children[0].value
        assert card.count("<img") == 2 and "WORLDCOVER_2020" in card and "WORLDCOVER_2021" in card  # both years
        assert "chips changed most like 2020-1155-0288" in ex.status.value
        ex.controls["mode"].value = "search"
        ex.controls["spread"].value = True  # spread out: no two results within 3 chips of each other
        res = s.click(*_centre(*SAME[0]))
        assert "spread out" in ex.status.value  # the status line says it is on, and what it changed
        cr = list(zip(res["column"], res["row"], strict=True))
        assert all(max(abs(a - c), abs(b - d)) >= 3 for i, (a, b) in enumerate(cr) for c, d in cr[i + 1 :])
