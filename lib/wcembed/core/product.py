"""Facts about the ESA WorldCover Sentinel-2 RGBNIR composites, in one place.

Everything the rest of the package knows about ESA's product lives here: the
years and their product versions, where the files are (bucket, tile index,
WMS), how a tile is named and laid out, the band order and scale, and the
licence. Adding a year touches :data:`VERSIONS` and nothing else.

Tiles are 1 x 1 degree, 12000 x 12000 px (pixel = 1/12000 degree), EPSG:4326,
named after their south-west corner (``N49W125`` covers lat 49..50, lon
-125..-124), stored as Cloud-optimized GeoTIFFs with 1024 px blocks.

Examples
--------
>>> tile_key("N49W125", 2021)
'rgbnir/2021/N49/ESA_WorldCover_10m_2021_v200_N49W125_S2RGBNIR.tif'
>>> parse_tile_filename("ESA_WorldCover_10m_2020_v100_N37W076_S2RGBNIR.tif")
(2020, 'N37W076')
>>> layer_name(2021, "FCC")
'WORLDCOVER_2021_S2_FCC'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from affine import Affine  # rasterio's; imported here so that the command line starts fast

from wcembed.core.errors import BadInputError, BadYearError

if TYPE_CHECKING:
    from affine import Affine

# --------------------------------------------------------------------------- years

VERSIONS: dict[int, str] = {2020: "v100", 2021: "v200"}
"""WorldCover product version of each year's composite."""
YEARS: tuple[int, ...] = tuple(sorted(VERSIONS))
"""Years with a composite."""


def check_year(year: int) -> int:
    """Return ``year`` if it has a WorldCover S2 RGBNIR composite, else raise :class:`BadYearError`."""
    try:
        ok = not isinstance(year, bool) and int(year) == year and int(year) in VERSIONS
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise BadYearError(f"year {year!r} has no WorldCover composite; use one of {list(YEARS)}")
    return int(year)


def attribution(year: int) -> str:
    """The CC-BY 4.0 attribution required for WorldCover data of ``year``."""
    return (
        f"© ESA WorldCover project {year} / Contains modified Copernicus Sentinel data ({year}) "
        "processed by ESA WorldCover consortium"
    )


# --------------------------------------------------------------------------- where the files are

ESA_HTTPS = "https://esa-worldcover-s2.s3.amazonaws.com"
"""Public https URL of the composites bucket (the default tile source)."""
ESA_S3 = "s3://esa-worldcover-s2"
"""The same bucket over S3 (public, unsigned)."""
ESA_REGION = "eu-central-1"
"""AWS region of the bucket."""
ESA_WMS = "https://services.terrascope.be/wms/v2"
"""ESA WorldCover WMS (Terrascope)."""
TILE_INDEX_FILE = "esa_worldcover_grid_composites.fgb"
"""Name of ESA's tile index (FlatGeobuf) inside the bucket."""

# --------------------------------------------------------------------------- pixels

PX_PER_DEGREE = 12000
"""Pixels per degree (pixel = 1/12000 degree)."""
TILE_PX = PX_PER_DEGREE
"""Width and height of a 1 x 1 degree tile in pixels."""
BLOCK_PX = 1024
"""Internal block size of the COGs."""
BANDS = ("B04", "B03", "B02", "B08")
"""Band order of the files (red, green, blue, NIR), and of every chip array."""
REFLECTANCE_SCALE = 0.0001
"""Pixel value x scale = reflectance."""
NODATA = 0
TILE_CRS = "EPSG:4326"
"""CRS of the tiles as ESA publishes them."""
CRS = "OGC:CRS84"
"""CRS of every geometry this package writes: WGS 84 in lon/lat axis order (GeoParquet's default)."""

# --------------------------------------------------------------------------- tiles

_NAME = r"([NS])(\d{2})([EW])(\d{3})"
_NAME_RE = re.compile(rf"^{_NAME}$")
_FILE_RE = re.compile(rf"^ESA_WorldCover_10m_(\d{{4}})_(v\d{{3}})_({_NAME})_S2RGBNIR\.tif$")


@dataclass(frozen=True, order=True)
class Tile:
    """A 1 x 1 degree WorldCover tile, identified by its south-west corner.

    Parameters
    ----------
    lat, lon : int
        Latitude and longitude of the south-west corner in degrees.

    Examples
    --------
    >>> Tile.from_name("S01E006").bounds
    (6, -1, 7, 0)
    >>> Tile(49, -125).name
    'N49W125'
    """

    lat: int
    lon: int

    @classmethod
    def from_name(cls, name: str) -> Tile:
        """Parse an ESA tile name such as ``N49W125`` or ``S01E006``."""
        m = _NAME_RE.match(name)
        if not m:
            raise BadInputError(f"not a WorldCover tile name: {name!r} (expected e.g. N49W125)")
        lat = int(m[2]) * (1 if m[1] == "N" else -1)
        lon = int(m[4]) * (1 if m[3] == "E" else -1)
        if not (-90 <= lat < 90 and -180 <= lon < 180):
            raise BadInputError(f"tile name out of range: {name!r}")
        return cls(lat, lon)

    @classmethod
    def from_index(cls, tx: int, ty: int) -> Tile:
        """The tile at tile column ``tx`` (from lon -180) and tile row ``ty`` (from lat 90)."""
        return cls(89 - ty, tx - 180)

    @property
    def name(self) -> str:
        """ESA name: hemisphere letter, 2-digit latitude, letter, 3-digit longitude."""
        ns = "N" if self.lat >= 0 else "S"
        ew = "E" if self.lon >= 0 else "W"
        return f"{ns}{abs(self.lat):02d}{ew}{abs(self.lon):03d}"

    @property
    def index(self) -> tuple[int, int]:
        """``(tx, ty)``: tile column from lon -180 and tile row from lat 90."""
        return self.lon + 180, 89 - self.lat

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        """``(west, south, east, north)`` in degrees, EPSG:4326."""
        return self.lon, self.lat, self.lon + 1, self.lat + 1

    @property
    def transform(self) -> Affine:
        """The tile's affine transform: pixel (col, row) to (lon, lat) of its north-west corner.

        >>> Tile(37, -76).transform * (0, 0)
        (-76.0, 38.0)
        """

        return Affine(1 / PX_PER_DEGREE, 0, self.lon, 0, -1 / PX_PER_DEGREE, self.lat + 1)

    def __str__(self) -> str:
        return self.name


def as_tile(tile: Tile | str) -> Tile:
    """Accept a :class:`Tile` or its name."""
    return tile if isinstance(tile, Tile) else Tile.from_name(tile)


def tile_filename(tile: Tile | str, year: int) -> str:
    """File name of a tile's composite, e.g. ``ESA_WorldCover_10m_2020_v100_N49W125_S2RGBNIR.tif``."""
    year = check_year(year)
    return f"ESA_WorldCover_10m_{year}_{VERSIONS[year]}_{as_tile(tile).name}_S2RGBNIR.tif"


def parse_tile_filename(name: str) -> tuple[int, str] | None:
    """``(year, tile name)`` of a composite's file name, or None if it is not one (or the version is wrong)."""
    m = _FILE_RE.match(name)
    if not m or VERSIONS.get(int(m[1])) != m[2]:
        return None
    return int(m[1]), m[3]


def tile_key(tile: Tile | str, year: int) -> str:
    """Path of a tile inside the bucket (and inside a local mirror of it),
    e.g. ``rgbnir/2020/N49/ESA_WorldCover_10m_2020_v100_N49W125_S2RGBNIR.tif``."""
    name = as_tile(tile).name
    return f"rgbnir/{check_year(year)}/{name[:3]}/{tile_filename(name, year)}"


def tile_url(tile: Tile | str, year: int, source: str) -> str:
    """URL or path of a tile under a source prefix.

    ``source`` is the one tile-source parameter used everywhere: the https
    bucket URL (:data:`ESA_HTTPS`), ``s3://esa-worldcover-s2``, any http(s)/s3
    URL of a mirror, or a local folder that mirrors the bucket.

    >>> tile_url("N49W125", 2021, "s3://esa-worldcover-s2")
    's3://esa-worldcover-s2/rgbnir/2021/N49/ESA_WorldCover_10m_2021_v200_N49W125_S2RGBNIR.tif'
    """
    return f"{str(source).rstrip('/')}/{tile_key(tile, year)}"


def gdal_path(url: str) -> str:
    """GDAL path of a URL: ``/vsicurl/`` for http(s), ``/vsis3/`` for s3, else as is (a local path)."""
    url = str(url)
    if url.startswith(("http://", "https://")):
        return "/vsicurl/" + url
    if url.startswith("s3://"):
        return "/vsis3/" + url[len("s3://") :]
    return url


# --------------------------------------------------------------------------- WMS layers

LAYER_KINDS = ("TCC", "FCC", "MAP")
"""ESA's WMS layer kinds: true colour, false colour (NIR, red, green), land-cover map."""


def layer_name(year: int, kind: str = "TCC") -> str:
    """ESA's WMS layer name of a year: kind ``TCC``, ``FCC`` or ``MAP``."""
    kind = kind.upper()
    if kind not in LAYER_KINDS:
        raise BadInputError(f"layer kind must be one of {LAYER_KINDS}, not {kind!r}")
    return f"WORLDCOVER_{year}_MAP" if kind == "MAP" else f"WORLDCOVER_{year}_S2_{kind}"
