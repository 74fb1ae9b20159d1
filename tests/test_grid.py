"""The chip grid, pinned with hand-computed cases (DESIGN.md section 3)."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.windows import Window
from wcembed.core.errors import BadColumnError, BadInputError, BadYearError, EmptyTileSetError
from wcembed.core.grid import Grid, chip_id, chip_ids
from wcembed.core.product import Tile, tile_filename, tile_url

CHIP_DEG = 512 / 12000


def test_tile_names_in_all_four_hemispheres():
    cases = {"N49W125": (49, -125), "S01E006": (-1, 6), "N00E000": (0, 0), "S34W071": (-34, -71), "N37E139": (37, 139)}
    for name, (lat, lon) in cases.items():
        t = Tile.from_name(name)
        assert (t.lat, t.lon) == (lat, lon)
        assert t.name == name
        assert Tile.from_index(*t.index) == t
    assert Tile.from_name("S01E006").bounds == (6, -1, 7, 0)
    for bad in ("N49W12", "X49W125", "N95W125", "n49w125", "N49W185"):
        with pytest.raises(BadInputError):
            Tile.from_name(bad)


def test_tile_urls_for_each_year_and_source():
    assert tile_filename("N49W125", 2020) == "ESA_WorldCover_10m_2020_v100_N49W125_S2RGBNIR.tif"
    assert (
        tile_url("N37W076", 2021, "https://esa-worldcover-s2.s3.amazonaws.com")
        == "https://esa-worldcover-s2.s3.amazonaws.com/rgbnir/2021/N37/ESA_WorldCover_10m_2021_v200_N37W076_S2RGBNIR.tif"
    )
    assert tile_url("S01E006", 2020, "s3://esa-worldcover-s2/").startswith("s3://esa-worldcover-s2/rgbnir/2020/S01/")
    assert (
        tile_url("N37W076", 2020, "/data/wc")
        == "/data/wc/rgbnir/2020/N37/ESA_WorldCover_10m_2020_v100_N37W076_S2RGBNIR.tif"
    )
    with pytest.raises(BadYearError):
        tile_url("N37W076", 2019, "/data")


def test_column_zero_and_last_column_bounds():
    g = Grid(["N49W125", "N44W067", "N24W082"])
    assert g.columns[0] == 0
    w, s, e, n = g.chip_bounds(0, 0)
    assert (w, n) == (-125.0, 50.0)
    assert e == pytest.approx(-125 + CHIP_DEG, abs=1e-12)
    assert s == pytest.approx(50 - CHIP_DEG, abs=1e-12)
    # W067 ends at lon -66: ceil(59 * 12000 / 512) = 1383 columns, the last is 1382
    assert g.columns[-1] == 1382
    w, _, e, _ = g.chip_bounds(1382, 0)
    assert w == pytest.approx(-125 + 1382 * CHIP_DEG, abs=1e-12)  # -66.0346...
    assert w < -66 < e
    # the original scripts' 1359 columns stopped short of the eastern tiles
    assert g.columns[-1] > 1358


def test_eastern_maine_and_key_west_are_chips():
    g = Grid(["N44W067", "N24W082"])
    maine = g.chip_at(-66.95, 44.82)
    assert maine == (1360, 121)  # floor((180-66.95)*12000 - 660000) // 512 = 696600 // 512
    assert maine in g
    w, s, e, n = g.chip_bounds(*maine)
    assert w <= -66.95 < e and s < 44.82 <= n
    keys = g.chip_at(-81.78, 24.55)
    assert keys == (1012, 596)
    assert keys in g
    w, s, e, n = g.chip_bounds(*keys)
    assert w <= -81.78 < e and s < 24.55 <= n
    assert set(g.rows(1012)) >= {596}
    # a chip over a tile that does not exist is not in the grid
    assert g.chip_at(-100.0, 40.0) not in g


def test_chip_spanning_four_tiles_has_the_right_windows():
    g = Grid(["N49W125", "N49W124", "N48W125", "N48W124"])
    # 12000 / 512 = 23.44: column 23 covers grid pixels 11776..12287, across a tile edge
    pieces = g.chip_pieces(23, 23)
    got = [(p.tile, tuple(p.window.flatten()), tuple(p.chip_window.flatten()), p.exists) for p in pieces]
    assert got == [
        ("N49W125", (11776, 11776, 224, 224), (0, 0, 224, 224), True),
        ("N49W124", (0, 11776, 288, 224), (224, 0, 288, 224), True),
        ("N48W125", (11776, 0, 224, 288), (0, 224, 224, 288), True),
        ("N48W124", (0, 0, 288, 288), (224, 224, 288, 288), True),
    ]
    assert len(g.chip_pieces(0, 0)) == 1
    assert len(g.chip_pieces(23, 0)) == 2
    # a missing neighbour is reported, marked as not existing
    g2 = Grid(["N49W125"])
    assert [p.exists for p in g2.chip_pieces(23, 23)] == [True, False, False, False]


def test_centre_is_the_middle_of_the_global_pixel_offsets():
    g = Grid(["N37W076"])
    c, r = g.chip_at(-75.6, 37.7)
    lon, lat = g.chip_center(c, r)
    gx, gy = g.chip_offsets(c, r)
    assert lon == pytest.approx((gx + 256) / 12000 - 180, abs=1e-12)
    assert lat == pytest.approx(90 - (gy + 256) / 12000, abs=1e-12)
    w, s, e, n = g.chip_bounds(c, r)
    assert lon == pytest.approx((w + e) / 2) and lat == pytest.approx((s + n) / 2)


def test_columns_and_rows_come_from_the_tile_set():
    g = Grid(["N37W076"])
    # tile x pixels 49*12000 .. 50*12000 - 1 from the origin
    assert list(g.columns) == list(range(49 * 12000 // 512, (50 * 12000 - 1) // 512 + 1))
    assert list(g.rows(g.columns[0])) == list(range(12 * 12000 // 512, (13 * 12000 - 1) // 512 + 1))
    assert g.n_chips == len(g.columns) * len(g.rows(g.columns[0]))
    assert g.band_at_index(3) == g.columns[3]
    with pytest.raises(BadColumnError):
        g.band_at_index(len(g.columns))
    with pytest.raises(BadColumnError):
        g.rows(0)  # a column with no existing tile is not a column
    with pytest.raises(EmptyTileSetError):
        Grid([])
    with pytest.raises(BadInputError):
        Grid(["N50W125"])  # north of the origin


def test_geodataframe_matches_the_chip_methods():
    g = Grid(["N49W125", "N49W124", "N48W125"])
    gdf = g.to_geodataframe(2021)
    assert len(gdf) == g.n_chips
    assert gdf.crs.to_string() == "OGC:CRS84"  # lon/lat, as every geometry the package writes
    for _, chip in gdf.sample(25, random_state=0).iterrows():
        c, r = int(chip["column"]), int(chip["row"])
        assert chip["chip_id"] == chip_id(2021, c, r)
        assert chip.geometry.equals(g.chip_polygon(c, r))
        assert (chip["lon"], chip["lat"]) == pytest.approx(g.chip_center(c, r))
        assert chip["n_tiles"] == sum(p.exists for p in g.chip_pieces(c, r))
    assert gdf.loc[(gdf.column == 23) & (gdf.row == 23), "n_tiles"].item() == 3


def _covers_each_pixel_once(windows: list[Window]) -> bool:
    a = np.array([w.flatten() for w in windows], dtype=np.int64)  # col, row, width, height
    x0, y0, x1, y1 = a[:, 0], a[:, 1], a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    inside = (x0 >= 0).all() and (y0 >= 0).all() and (x1 <= 12000).all() and (y1 <= 12000).all()
    area = int((a[:, 2] * a[:, 3]).sum()) == 12000 * 12000
    ox = np.minimum(x1[:, None], x1[None]) > np.maximum(x0[:, None], x0[None])
    oy = np.minimum(y1[:, None], y1[None]) > np.maximum(y0[:, None], y0[None])
    overlap = ox & oy
    np.fill_diagonal(overlap, False)
    return bool(inside and area and not overlap.any())


@settings(max_examples=40, deadline=None)
@given(
    chip_size=st.integers(min_value=700, max_value=6000),
    present=st.sets(st.tuples(st.integers(40, 42), st.integers(-120, -118)), min_size=1, max_size=9),
)
def test_chip_windows_cover_every_pixel_of_every_tile_exactly_once(chip_size, present):
    tiles = [Tile(lat, lon) for lat, lon in present]
    g = Grid(tiles, chip_size=chip_size, origin=(-121, 44))
    windows: dict[str, list[Window]] = {t.name: [] for t in tiles}
    for c, r in g.chips():
        for p in g.chip_pieces(c, r):
            assert p.window.width == p.chip_window.width and p.window.height == p.chip_window.height
            if p.exists:
                windows[p.tile].append(p.window)
            else:
                assert p.tile not in windows
    for name, ws in windows.items():
        assert _covers_each_pixel_once(ws), name
    # and every chip touches at least one existing tile
    for c, r in itertools.islice(g.chips(), 500):
        assert any(p.exists for p in g.chip_pieces(c, r))


def test_chip_ids_of_many_chips_are_chip_id_of_each():
    rng = np.random.default_rng(3)
    columns, rows = rng.integers(0, 12_000, 500), rng.integers(0, 700, 500)
    columns[:3] = [0, 9_999, 10_000]  # the widths: zero-padded to 4 digits, wider ones as they are
    got = chip_ids(2021, columns, rows)
    assert got.tolist() == [chip_id(2021, int(c), int(r)) for c, r in zip(columns, rows, strict=True)]
