"""Whole-region layers: a value per chip is a raster aligned with the chip grid.

The chips of a year form a regular grid, so one chip is one pixel of a raster
in EPSG:4326 whose pixel is ``chip_size / 12000`` degree (0.0427° for 512 px
chips) and whose origin is the grid's: the pixel of chip ``(column, row)`` is
centred on the chip's centre. At CONUS scale a year is a 1,383 x ~600 px image:
a map layer costs one small PNG instead of half a million polygons.

* :class:`ChipRaster`: per-chip values (one band, or three for RGB) as that raster,
  written as a Cloud-Optimized GeoTIFF (:meth:`ChipRaster.to_cog`) or drawn on a
  Web Mercator map for the map's view, each chip a crisp square (:meth:`ChipRaster.view_png`),
  with a legend that says what the layer is.

The layers' values come from a year's unit vectors (:mod:`wcembed.explore.compute.vectors`).

Example
-------
>>> layer = ChipRaster.from_chips([1156, 1157], [288, 288], np.array([0.2, 0.9]), name="example")
>>> layer.values.shape
(1, 2)
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from affine import Affine

from wcembed.core.errors import BadParameterError
from wcembed.core.grid import CHIP_PX, CONUS_ORIGIN, parse_chip_id
from wcembed.core.product import PX_PER_DEGREE, TILE_CRS
from wcembed.explore.data.table import DEFAULT_SET

if TYPE_CHECKING:
    pass

WEB_MERCATOR = "EPSG:3857"
MAP_SUPERSAMPLE = 4
"""Map pixels per chip (along each axis) of a layer warped to Web Mercator, so that chip edges stay sharp."""
EARTH_RADIUS_M = 6_378_137.0
"""The Web Mercator sphere's radius (EPSG:3857), metres."""
MAX_VIEW_PX = 4096
"""The largest side of an image drawn for the map's view (a screen is smaller)."""


@dataclass
class ChipRaster:
    """Values of chips as a raster on their grid (EPSG:4326, one pixel per chip).

    Attributes
    ----------
    values : ndarray
        ``(rows, columns)`` float32, or ``(3, rows, columns)`` for an RGB layer in 0..1;
        NaN where there is no chip (transparent on the map, nodata in the COG).
    column0, row0 : int
        Grid column and row of the raster's first pixel (its north-west corner).
    name, description : str
        Short name and the legend's text (what the values are; whether the weights were untrained).
    vmin, vmax : float
        The colour scale's range.
    cmap : str
        Matplotlib colour map of a one-band layer.
    """

    values: np.ndarray
    column0: int
    row0: int
    name: str = "layer"
    description: str = ""
    vmin: float = 0.0
    vmax: float = 1.0
    cmap: str = "viridis"
    chip_size: int = CHIP_PX
    origin: tuple[float, float] = CONUS_ORIGIN
    meta: dict = field(default_factory=dict)

    @classmethod
    def from_chips(
        cls,
        columns: Sequence[int] | np.ndarray,
        rows: Sequence[int] | np.ndarray,
        values: np.ndarray,
        **kw,
    ) -> ChipRaster:
        """The raster over the chips' extent: pixel ``(row - row0, column - column0)`` holds the chip's value.

        ``values`` is ``(N,)`` or ``(N, 3)`` (RGB) for the ``N`` chips; chips not given are NaN.
        """
        columns, rows = np.asarray(columns, np.int64), np.asarray(rows, np.int64)
        values = np.asarray(values, np.float32)
        if len(columns) == 0:
            raise BadParameterError("no chips to make a layer of")
        if not len(columns) == len(rows) == len(values):
            raise BadParameterError(f"{len(columns)} columns, {len(rows)} rows and {len(values)} values")
        c0, r0 = int(columns.min()), int(rows.min())
        shape = (int(rows.max()) - r0 + 1, int(columns.max()) - c0 + 1)
        bands = () if values.ndim == 1 else (values.shape[1],)
        grid = np.full(bands + shape, np.nan, np.float32)
        if bands:
            grid[:, rows - r0, columns - c0] = values.T
        else:
            grid[rows - r0, columns - c0] = values
        return cls(grid, c0, r0, **kw)

    @classmethod
    def from_ids(cls, chip_ids: Sequence[str], values: np.ndarray, **kw) -> ChipRaster:
        """As :meth:`from_chips`, the chips given by id (``{year}-{column}-{row}``)."""

        parts = pd.Series(list(chip_ids), dtype=object).str.extract(r"^(\d{4})-(\d+)-(\d+)$")
        bad = parts[0].isna()
        if bad.any():
            parse_chip_id(list(chip_ids)[int(np.argmax(bad.to_numpy()))])  # raises, naming the id
        return cls.from_chips(parts[1].astype(np.int64), parts[2].astype(np.int64), values, **kw)

    # ------------------------------------------------------------------ georeferencing
    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, columns)`` of the raster."""
        return self.values.shape[-2:]

    @property
    def chip_deg(self) -> float:
        """Pixel size: one chip, in degrees."""
        return self.chip_size / PX_PER_DEGREE

    @property
    def transform(self) -> Affine:
        """Pixel to (lon, lat) of the raster: the grid's, shifted to ``(column0, row0)``."""
        d = self.chip_deg
        return Affine(d, 0, self.origin[0] + self.column0 * d, 0, -d, self.origin[1] - self.row0 * d)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(west, south, east, north)`` in degrees."""
        rows, cols = self.shape
        w, n = self.transform * (0, 0)
        e, s = self.transform * (cols, rows)
        return w, s, e, n

    def value_at(self, lon: float, lat: float):
        """The value of the chip holding a point (degrees), NaN outside the raster."""
        col, row = (int(np.floor(v)) for v in ~self.transform * (lon, lat))
        rows, cols = self.shape
        if not (0 <= row < rows and 0 <= col < cols):
            return np.nan
        return self.values[..., row, col]

    def masked(self, below: float) -> ChipRaster:
        """The layer with values below ``below`` made transparent (the threshold slider)."""
        values = np.where(self.values >= below, self.values, np.nan)
        return replace(self, values=values.astype(np.float32))

    # ------------------------------------------------------------------ outputs
    def to_cog(self, path: str | Path) -> Path:
        """Write a float32 Cloud-Optimized GeoTIFF (EPSG:4326, nodata NaN, DEFLATE) with the legend's text
        in its tags and band description. Written atomically."""
        import rasterio  # deferred: only to write or window a raster

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        values = self.values if self.values.ndim == 3 else self.values[None]
        profile = {
            "driver": "COG",
            "width": self.shape[1],
            "height": self.shape[0],
            "count": len(values),
            "dtype": "float32",
            "crs": TILE_CRS,
            "transform": self.transform,
            "nodata": np.nan,
            "compress": "deflate",
            "overview_resampling": "nearest",
        }
        tmp = path.with_name(f".{path.name}.partial")
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(values)
            dst.update_tags(
                name=self.name,
                description=self.description,
                chip_size_px=self.chip_size,
                grid_origin=f"{self.origin[0]},{self.origin[1]}",
                **{k: str(v) for k, v in self.meta.items()},
            )
            dst.descriptions = (self.name,) * len(values) if len(values) == 1 else ("red", "green", "blue")
        tmp.replace(path)
        return path

    def palette(self) -> np.ndarray:
        """``(256, 4)`` uint8 colours of a one-band layer: entry 0 transparent (NaN), 1..255 the colour map
        from ``vmin`` to ``vmax``."""
        import matplotlib  # deferred: only to draw

        colours = matplotlib.colormaps[self.cmap](np.linspace(0, 1, 255))
        return np.vstack([np.zeros((1, 4), np.uint8), (colours * 255).round().astype(np.uint8)])

    def colour_index(self) -> np.ndarray:
        """``(rows, columns)`` uint8 index into :meth:`palette` of a one-band layer (0 where NaN)."""
        v = self.values
        span = (self.vmax - self.vmin) or 1.0
        idx = 1 + np.rint(np.clip((np.nan_to_num(v) - self.vmin) / span, 0, 1) * 254).astype(np.uint8)
        idx[np.isnan(v)] = 0
        return idx

    def rgba(self) -> np.ndarray:
        """``(rows, columns, 4)`` uint8: the colour map applied (or the RGB bands), alpha 0 where NaN."""
        v = self.values
        if v.ndim == 2:
            return self.palette()[self.colour_index()]
        rgb = (np.clip(np.nan_to_num(v), 0, 1) * 255).round().astype(np.uint8)
        alpha = np.where(np.isnan(v).any(axis=0), 0, 255).astype(np.uint8)
        return np.concatenate([rgb, alpha[None]]).transpose(1, 2, 0)

    def map_supersample(self) -> int:
        """Map pixels per chip of the Web Mercator image: 4, or 2 for rasters over 1024 chips wide (CONUS),
        which keeps every chip row at least one map pixel high between 24° and 50° N."""
        return MAP_SUPERSAMPLE if self.shape[1] <= 1024 else 2

    def _warp(self, bands: np.ndarray, supersample: int) -> tuple[np.ndarray, tuple[float, float, float, float]]:
        """``(bands, rows, columns)`` uint8 warped (nearest) to Web Mercator; 0 where nothing lands."""
        import rasterio.warp  # deferred: only to write or window a raster
        from rasterio.enums import Resampling
        from rasterio.transform import from_bounds

        w, s, e, n = self.bounds
        (x0, x1), (y0, y1) = rasterio.warp.transform(TILE_CRS, WEB_MERCATOR, [w, e], [s, n])
        width = self.shape[1] * supersample
        height = max(1, round((y1 - y0) / (x1 - x0) * width))
        dst = np.zeros((len(bands), height, width), np.uint8)
        rasterio.warp.reproject(
            bands,
            dst,
            src_transform=self.transform,
            src_crs=TILE_CRS,
            dst_transform=from_bounds(x0, y0, x1, y1, width, height),
            dst_crs=WEB_MERCATOR,
            resampling=Resampling.nearest,
        )
        return dst, (w, s, e, n)

    def _map_image(self, supersample: int | None = None) -> tuple[np.ndarray, tuple[float, float, float, float]]:
        """The image warped to Web Mercator: ``(H, W)`` indices into :meth:`palette` for one band, ``(H, W, 4)``
        RGBA for three; and its bounds in degrees."""
        ss = supersample or self.map_supersample()
        if self.values.ndim == 2:
            idx, bounds = self._warp(self.colour_index()[None], ss)
            return idx[0], bounds
        image, bounds = self._warp(self.rgba().transpose(2, 0, 1), ss)
        return image.transpose(1, 2, 0), bounds

    def to_mercator(self, supersample: int | None = None) -> tuple[np.ndarray, tuple[float, float, float, float]]:
        """The RGBA image warped (nearest) to Web Mercator, and its (west, south, east, north) in degrees.

        An image a Leaflet overlay stretches between those corners puts each chip's colour on the chip:
        ``supersample`` map pixels per chip (:meth:`map_supersample`), each coloured by the chip under its
        centre, so a chip edge is drawn within half a map pixel (1/8 chip at 4).
        """
        image, bounds = self._map_image(supersample)
        return (self.palette()[image] if image.ndim == 2 else image), bounds

    def png(self) -> tuple[bytes, tuple[float, float, float, float]]:
        """The Web Mercator image as PNG bytes (a palette PNG for one band: a byte per pixel) and its bounds."""
        image, bounds = self._map_image()
        return self._png(image), bounds

    def _png(self, image: np.ndarray) -> bytes:
        """PNG bytes of palette indices (one band) or of RGBA."""
        from PIL import Image  # deferred: only to draw

        if image.ndim == 2:
            picture = Image.fromarray(image, "P")
            picture.putpalette(self.palette().ravel().tobytes(), rawmode="RGBA")
        else:
            picture = Image.fromarray(image, "RGBA")
        buf = io.BytesIO()
        picture.save(buf, format="PNG", compress_level=1)
        return buf.getvalue()

    def view_image(
        self, view: tuple[float, float, float, float], zoom: float
    ) -> tuple[np.ndarray, tuple[float, float, float, float]] | None:
        """The layer as a map at Leaflet ``zoom`` shows it in ``view`` (west, south, east, north; degrees):
        one image pixel per screen pixel of Web Mercator, each coloured by the chip under its centre
        (nearest), so that at chip zoom every chip is a crisp square on its outline. Returns the image
        (palette indices for one band, RGBA for three) over the part of the view the layer covers, and
        that part's bounds; None when the view and the layer do not meet."""
        w, s, e, n = self.bounds
        vw, vs, ve, vn = view
        w, s, e, n = max(w, vw), max(s, vs), min(e, ve), min(n, vn)
        if w >= e or s >= n:
            return None
        metres_per_px = 2 * np.pi * EARTH_RADIUS_M / (256 * 2.0**zoom)
        x0, x1 = np.radians([w, e]) * EARTH_RADIUS_M
        y0, y1 = (EARTH_RADIUS_M * np.log(np.tan(np.pi / 4 + np.radians(v) / 2)) for v in (s, n))
        width = min(max(1, int(np.ceil((x1 - x0) / metres_per_px))), MAX_VIEW_PX)
        height = min(max(1, int(np.ceil((y1 - y0) / metres_per_px))), MAX_VIEW_PX)
        xs = x0 + (np.arange(width) + 0.5) * (x1 - x0) / width  # pixel centres, Web Mercator metres
        ys = y1 - (np.arange(height) + 0.5) * (y1 - y0) / height
        lons = np.degrees(xs / EARTH_RADIUS_M)
        lats = np.degrees(2 * np.arctan(np.exp(ys / EARTH_RADIUS_M)) - np.pi / 2)
        cols = np.floor((lons - self.origin[0]) / self.chip_deg).astype(np.int64) - self.column0
        rows = np.floor((self.origin[1] - lats) / self.chip_deg).astype(np.int64) - self.row0
        cols, rows = np.clip(cols, 0, self.shape[1] - 1), np.clip(rows, 0, self.shape[0] - 1)
        c0, r0 = int(cols.min()), int(rows.min())  # only the chips in view are coloured
        part = replace(self, values=self.values[..., r0 : int(rows.max()) + 1, c0 : int(cols.max()) + 1])
        source = part.colour_index() if self.values.ndim == 2 else part.rgba()
        return source[(rows - r0)[:, None], (cols - c0)[None, :]], (w, s, e, n)

    def view_png(self, view: tuple[float, float, float, float], zoom: float):
        """:meth:`view_image` as a ``data:image/png`` URL and its bounds, or None (see there)."""
        made = self.view_image(view, zoom)
        if made is None:
            return None
        image, bounds = made
        return "data:image/png;base64," + base64.b64encode(self._png(image)).decode(), bounds

    def png_data_url(self) -> tuple[str, tuple[float, float, float, float]]:
        """The map image as a ``data:image/png`` URL and its bounds (degrees)."""
        data, bounds = self.png()
        return "data:image/png;base64," + base64.b64encode(data).decode(), bounds


# --------------------------------------------------------------------------- embeddings


def index_note(index) -> str:
    """What a layer's legend adds about the index's embeddings: that their weights were untrained, or are
    unknown (a database without its ``files`` table, built by other means or an older version), and that
    some files are partial (columns embedded only in part); else ""."""

    weights = index.weights
    notes = [] if index.set == DEFAULT_SET else [f"set {index.set}: {', '.join(sorted(weights))}"]
    if "untrained" in weights:
        notes.append("UNTRAINED weights: not Clay embeddings")
    elif weights == {"unknown"}:
        notes.append("weights unknown: the database has no files table")
    partial = index.partial_files
    if partial:
        notes.append(f"PARTIAL: {len(partial)} column files hold only their first rows")
    return "; ".join(notes)
