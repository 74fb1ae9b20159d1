"""Read chips stitched across WorldCover tiles, from a folder, HTTP(S) or S3.

A chip is a ``(4, 512, 512)`` uint16 array in the file's band order (B04 red,
B03 green, B02 blue, B08 NIR; reflectance x 10000) plus a valid mask. A chip
touches 1, 2 or 4 tiles (:meth:`wcembed.grid.Grid.chip_pieces`); each piece is
read from its tile and placed in the chip; pieces on tiles that do not exist
(ocean, outside the tile set) stay nodata (0).

Sources
-------
One string, the same everywhere (:func:`wcembed.product.tile_url` appends the
bucket layout): a local folder mirroring the bucket, an ``http(s)://`` prefix
(GDAL ``/vsicurl/``) or an ``s3://bucket[/prefix]`` (GDAL ``/vsis3/``; unsigned
unless credentials are set; ``AWS_ENDPOINT_URL`` points it at another S3 API,
such as a local test server).

Cost of a column
----------------
The COGs have 1024 x 1024 px blocks, pixel-interleaved, DEFLATE. A
:class:`ChipReader` opens each tile once and keeps it open; it reads whole
block rows of a column (1024 px tall strips, cut to the column's 512 px) and
cuts chips from them, so reading a column north to south fetches each of its
blocks once. But a block column is shared by about three chip columns: column
jobs use :mod:`wcembed.pipeline.bands`, which reads a band of adjacent columns together,
each block once, with this module's :meth:`ChipReader.read_window`.

Errors
------
Transient errors (HTTP 5xx, timeouts, resets) are retried by GDAL and then
by the reader with exponential backoff; if they persist,
:class:`~wcembed.errors.TileTransientError` names the tile and URL. Permanent
errors raise at once: :class:`~wcembed.errors.TileMissingError` (404),
:class:`~wcembed.errors.TileCorruptError` (undecodable or truncated) and
:class:`~wcembed.errors.TileFormatError` (band count, dtype, size, transform,
CRS). The caller decides whether to skip the chip or stop.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from urllib.parse import urlparse

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from wcembed.errors import (
    TileCertificateError,
    TileCorruptError,
    TileFormatError,
    TileMissingError,
    TileTransientError,
    failure_kind,
)
from wcembed.grid import Grid
from wcembed.product import (
    BLOCK_PX,
    ESA_REGION,
    NODATA,
    TILE_CRS,
    TILE_PX,
    Tile,
    check_year,
    gdal_path,
    tile_url,
)

log = logging.getLogger(__name__)


def gdal_options(source: str) -> dict[str, object]:
    """GDAL configuration for reading tiles from ``source``, for a scoped ``rasterio.Env``.

    Cloud-friendly: no directory listing on open, only ``.tif`` probed,
    HTTP retries with backoff for 429/5xx, a 60 s timeout (``GDAL_HTTP_TIMEOUT`` in
    the environment overrides it), a block cache that holds a block row of a
    column. A private CA for an https mirror goes in the environment before the
    process starts: ``GDAL_CURL_CA_BUNDLE`` (rasterio's wheels, which otherwise use
    certifi's bundle) or ``CURL_CA_BUNDLE`` (a system GDAL). For ``s3://``
    sources: unsigned requests unless AWS credentials are in the environment,
    region ``eu-central-1`` unless ``AWS_REGION`` is set, and ``AWS_ENDPOINT_URL``
    (as honoured by boto3) for another S3 API.
    """
    opts: dict[str, object] = {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff",
        "GDAL_HTTP_MAX_RETRY": 4,
        "GDAL_HTTP_RETRY_DELAY": 0.5,
        "GDAL_HTTP_RETRY_CODES": "429,500,502,503,504",
        "GDAL_HTTP_TIMEOUT": int(os.environ.get("GDAL_HTTP_TIMEOUT", 60)),  # seconds; the environment may say less
        "GDAL_HTTP_CONNECTTIMEOUT": 15,
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        "GDAL_HTTP_MULTIPLEX": "YES",
        "GDAL_CACHEMAX": 256,
        "VSI_CACHE": "TRUE",
        "VSI_CACHE_SIZE": 64 * 2**20,
        "GDAL_NUM_THREADS": 1,
    }
    if str(source).startswith("s3://"):
        if not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")):
            opts["AWS_NO_SIGN_REQUEST"] = "YES"
        opts["AWS_REGION"] = os.environ.get("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", ESA_REGION))
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            parsed = urlparse(endpoint)
            opts["AWS_S3_ENDPOINT"] = parsed.netloc or parsed.path
            opts["AWS_HTTPS"] = "NO" if parsed.scheme == "http" else "YES"
            opts["AWS_VIRTUAL_HOSTING"] = "FALSE"
    return opts


def tile_error(exc: Exception, tile: str, url: str) -> Exception:
    """The package's transient or permanent tile error for a GDAL/rasterio error
    (:func:`wcembed.errors.failure_kind`)."""
    msg = str(exc)
    kind = failure_kind(exc)
    if kind == "untrusted":
        return TileCertificateError(
            f"the server's TLS certificate is not trusted (for a private CA set GDAL_CURL_CA_BUNDLE, or "
            f"CURL_CA_BUNDLE with a system GDAL, before the process starts): {msg}",
            tile=tile,
            url=url,
        )
    if kind == "missing":
        return TileMissingError(f"tile file not found: {msg}", tile=tile, url=url)
    if kind == "transient":
        return TileTransientError(f"transient error reading tile: {msg}", tile=tile, url=url)
    return TileCorruptError(f"tile cannot be decoded (corrupt or truncated?): {msg}", tile=tile, url=url)


def check_tile_layout(ds: rasterio.DatasetReader, tile: Tile, url: str) -> None:
    """Raise :class:`TileFormatError` unless ``ds`` is a WorldCover S2 RGBNIR tile for ``tile``."""
    problems = []
    if ds.count != 4:
        problems.append(f"{ds.count} bands, expected 4 (B04, B03, B02, B08)")
    if set(ds.dtypes) != {"uint16"}:
        problems.append(f"dtypes {ds.dtypes}, expected uint16")
    if (ds.width, ds.height) != (TILE_PX, TILE_PX):
        problems.append(f"size {ds.width}x{ds.height}, expected {TILE_PX}x{TILE_PX}")
    if ds.crs is None or ds.crs != rasterio.crs.CRS.from_user_input(TILE_CRS):
        problems.append(f"CRS {ds.crs}, expected {TILE_CRS}")
    expected = tile.transform
    if not np.allclose(tuple(ds.transform)[:6], tuple(expected)[:6], rtol=0, atol=1e-9):
        problems.append(f"transform {tuple(ds.transform)[:6]}, expected {tuple(expected)[:6]}")
    if problems:
        raise TileFormatError("not a WorldCover S2 RGBNIR tile: " + "; ".join(problems), tile=tile.name, url=url)


@dataclass
class Chip:
    """Pixels of one chip.

    Attributes
    ----------
    column, row : int
        Grid position.
    pixels : numpy.ndarray
        ``(4, H, W)`` uint16, bands B04, B03, B02, B08 (reflectance x 10000), 0 = nodata.
    valid : numpy.ndarray
        ``(H, W)`` bool, True where the pixel has data (not 0 in every band).
    """

    column: int
    row: int
    pixels: np.ndarray
    valid: np.ndarray

    @property
    def valid_fraction(self) -> float:
        """Fraction of pixels with data, 0..1."""
        return float(self.valid.mean())


class ChipReader:
    """Reads the chips of a grid for one year, keeping each tile open once.

    Parameters
    ----------
    grid : Grid
        The chip grid (it knows which tiles exist).
    year : int
        2020 or 2021.
    source : str
        Tile source prefix: local folder, ``http(s)://...`` or ``s3://...``.
    retries : int
        Extra attempts after a transient error (with exponential backoff).
    backoff : float
        First backoff delay in seconds (doubles each retry).

    Examples
    --------
    >>> with ChipReader(grid, 2020, "outputs/sample") as reader:  # doctest: +SKIP
    ...     chip = reader.read(1410, 294)
    """

    def __init__(self, grid: Grid, year: int, source: str, *, retries: int = 3, backoff: float = 0.5) -> None:
        self.grid = grid
        self.year = check_year(year)
        self.source = str(source)
        self.retries = retries
        self.backoff = backoff
        self._options = gdal_options(self.source)
        self._open: dict[str, rasterio.DatasetReader] = {}
        self._strips: dict[tuple[str, int, int, int], np.ndarray] = {}
        self.max_strips = 8

    def __enter__(self) -> ChipReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close every open tile and drop the cached strips."""
        for ds in self._open.values():
            ds.close()
        self._open.clear()
        self._strips.clear()

    def url(self, tile: str) -> str:
        """URL (or path) of a tile of this reader's year and source."""
        return tile_url(tile, self.year, self.source)

    def _dataset(self, tile: str) -> rasterio.DatasetReader:
        ds = self._open.get(tile)
        if ds is None:
            url = self.url(tile)
            ds = rasterio.open(gdal_path(url))
            try:
                check_tile_layout(ds, Tile.from_name(tile), url)
            except TileFormatError:
                ds.close()
                raise
            self._open[tile] = ds
        return ds

    def read_window(self, tile: str, window: Window, out: np.ndarray | None = None) -> np.ndarray:
        """Pixels ``(4, h, w)`` of a window of a tile (into ``out`` if given), with retries of transient
        errors (call inside the reader's ``rasterio.Env``)."""
        url = self.url(tile)
        for attempt in range(self.retries + 1):
            try:
                return self._dataset(tile).read(window=window, out=out)
            except RasterioIOError as exc:
                err = tile_error(exc, tile, url)
                stale = self._open.pop(tile, None)
                if stale is not None:
                    stale.close()
                if not isinstance(err, TileTransientError) or attempt == self.retries:
                    raise err from exc
                delay = self.backoff * 2**attempt
                log.warning("transient error on %s (attempt %d), retrying in %.1fs: %s", url, attempt + 1, delay, exc)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _strip(self, tile: str, col_off: int, width: int, block_row: int) -> np.ndarray:
        """A ``(4, <=1024, width)`` strip: one block row of a tile, cut to a column's x-range."""
        key = (tile, col_off, width, block_row)
        strip = self._strips.pop(key, None)
        if strip is None:
            y0 = block_row * BLOCK_PX
            strip = self.read_window(tile, Window(col_off, y0, width, min(BLOCK_PX, TILE_PX - y0)))
        self._strips[key] = strip  # most recently used last
        while len(self._strips) > self.max_strips:
            self._strips.pop(next(iter(self._strips)))
        return strip

    def read(self, column: int, row: int) -> Chip:
        """Read chip ``(column, row)`` stitched from the tiles it touches.

        Reads go through whole block rows of the column (strips): reading a
        column's chips north to south fetches every block once.
        """
        cs = self.grid.chip_size
        pixels = np.zeros((4, cs, cs), dtype=np.uint16)
        with rasterio.Env(**self._options):
            for piece in self.grid.chip_pieces(column, row):
                if piece.exists:
                    self._place(piece, pixels)
        return Chip(column, row, pixels, (pixels != NODATA).any(axis=0))

    def _place(self, piece, pixels: np.ndarray) -> None:
        w, cw = piece.window, piece.chip_window
        for k in range(w.row_off // BLOCK_PX, (w.row_off + w.height - 1) // BLOCK_PX + 1):
            strip = self._strip(piece.tile, w.col_off, w.width, k)
            y0, y1 = max(w.row_off, k * BLOCK_PX), min(w.row_off + w.height, (k + 1) * BLOCK_PX)
            dst = cw.row_off + y0 - w.row_off
            pixels[:, dst : dst + y1 - y0, cw.col_off : cw.col_off + cw.width] = strip[
                :, y0 - k * BLOCK_PX : y1 - k * BLOCK_PX
            ]
