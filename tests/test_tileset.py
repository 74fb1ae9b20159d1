"""Where the set of existing tiles comes from."""

import geopandas as gpd
import pytest
import shapely
from wcembed.core.errors import BadInputError, EmptyTileSetError
from wcembed.core.product import Tile, tile_key
from wcembed.core.tileset import load_tiles, region_bounds, tiles_from_land_outline


def test_local_folder_listing(tmp_path):
    for name in ("N37W076", "N24W082", "N10E010"):
        p = tmp_path / tile_key(name, 2020)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    (tmp_path / "rgbnir/2020/N37/not_a_tile.tif").write_bytes(b"")
    assert load_tiles(tmp_path, 2020) == ["N24W082", "N37W076"]  # N10E010 is outside CONUS
    assert load_tiles(tmp_path, 2020, region="0,0,20,20") == ["N10E010"]
    with pytest.raises(EmptyTileSetError):
        load_tiles(tmp_path, 2021)


def test_grid_file_with_year_flags(tmp_path):
    names = ["N49W125", "N44W067", "N24W082", "N30W090", "S01E006"]
    gdf = gpd.GeoDataFrame(
        {
            "tile": names,
            "s2_rgbnir_2020": [True, True, True, False, True],
            "s2_rgbnir_2021": [True, False, True, True, True],
        },
        geometry=[shapely.box(*Tile.from_name(n).bounds) for n in names],
        crs="EPSG:4326",
    )
    path = tmp_path / "esa_worldcover_grid_usa.fgb"
    gdf.to_file(path, driver="FlatGeobuf")
    assert load_tiles("https://unused.invalid", 2020, tile_index=str(path)) == ["N24W082", "N44W067", "N49W125"]
    assert load_tiles("/unused", 2021, tile_index=str(path)) == ["N24W082", "N30W090", "N49W125"]
    bad = tmp_path / "bad.fgb"
    gdf.rename(columns={"tile": "name"}).to_file(bad, driver="FlatGeobuf")
    with pytest.raises(BadInputError, match="no 'tile' column"):
        load_tiles("/unused", 2020, tile_index=str(bad))
    with pytest.raises(BadInputError, match="does not exist"):
        load_tiles("/unused", 2020, tile_index=str(tmp_path / "nope.fgb"))


def test_tile_index_over_http_network_failure_is_transient_and_404_is_bad_input(tmp_path):
    from local_servers import RangeServer
    from wcembed.core.errors import TileIndexError, TileIndexTransientError, TransientError

    names = ["N37W076", "N24W082"]
    gdf = gpd.GeoDataFrame({"tile": names}, geometry=[shapely.box(*Tile.from_name(n).bounds) for n in names])
    gdf.set_crs("EPSG:4326").to_file(tmp_path / "index.fgb", driver="FlatGeobuf")
    with RangeServer(tmp_path, faults=[("index.fgb", 503, 1000)]) as srv:
        with pytest.raises(TileIndexTransientError, match="503") as info:
            load_tiles(srv.url, 2020, tile_index=f"{srv.url}/index.fgb")
        assert isinstance(info.value, TransientError)  # a Batch job exits 75 and is retried
    with RangeServer(tmp_path) as srv:
        assert load_tiles(srv.url, 2020, tile_index=f"{srv.url}/index.fgb") == ["N24W082", "N37W076"]
        with pytest.raises(TileIndexError):
            load_tiles(srv.url, 2020, tile_index=f"{srv.url}/missing.fgb")


def test_offline_land_outline_covers_conus_edges():
    tiles = tiles_from_land_outline()
    for needed in ("N24W082", "N44W067", "N48W125", "N37W076", "N40W105", "N25W081"):
        assert needed in tiles
    for water_or_far in ("N35W070", "N27W093", "N30W124"):  # open Atlantic, Gulf, Pacific
        assert water_or_far not in tiles
    assert 900 < len(tiles) < 1100


def test_regions():
    assert region_bounds("conus") == (-125.0, 24.0, -66.0, 50.0)
    assert region_bounds("-76,37,-75,38") == (-76.0, 37.0, -75.0, 38.0)
    with pytest.raises(BadInputError):
        region_bounds("Atlantis")
    with pytest.raises(BadInputError):
        region_bounds((1, 2, 0, 3))
