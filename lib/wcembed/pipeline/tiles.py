"""Open, check and read WorldCover tiles, from a folder, HTTP(S) or S3, with retries.

A :class:`TileReader` reads windows of one year's tiles: ``(4, h, w)`` uint16 in
the file's band order (B04 red, B03 green, B02 blue, B08 NIR; reflectance x
10000; 0 = nodata). It opens each tile once, checks that it is a WorldCover
S2 RGBNIR tile (:func:`check_tile_layout`) and keeps it open. Chips are cut from
these windows by :mod:`wcembed.pipeline.bands`, which plans the reads so that
each 1024 px block is fetched once (:func:`wcembed.pipeline.bands.read_chips`
for a few chips, :class:`~wcembed.pipeline.bands.BandFeed` for columns).

Sources
-------
One string, the same everywhere (:func:`wcembed.core.product.tile_url` appends the
bucket layout): a local folder mirroring the bucket, an ``http(s)://`` prefix
(GDAL ``/vsicurl/``) or an ``s3://bucket[/prefix]`` (GDAL ``/vsis3/``; unsigned
unless credentials are set; ``AWS_ENDPOINT_URL`` points it at another S3 API,
such as a local test server).

Errors
------
Transient errors (HTTP 429 and 5xx, timeouts, resets, cut bodies) are retried by
GDAL and then by the reader with exponential backoff; if they persist,
:class:`~wcembed.core.errors.TileTransientError` names the tile and URL. Permanent
errors raise at once: :class:`~wcembed.core.errors.TileMissingError` (404),
:class:`~wcembed.core.errors.TileCorruptError` (undecodable or truncated),
:class:`~wcembed.core.errors.TileCertificateError` (an untrusted TLS certificate) and
:class:`~wcembed.core.errors.TileFormatError` (band count, dtype, size, transform,
CRS). The caller decides whether to skip the chip or stop.
"""

from __future__ import annotations

import logging
import os
import time
from urllib.parse import urlparse

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from wcembed.core.errors import (
    BadParameterError,
    TileCertificateError,
    TileCorruptError,
    TileFormatError,
    TileMissingError,
    TileTransientError,
    failure_kind,
)
from wcembed.core.product import (
    ESA_REGION,
    TILE_CRS,
    TILE_PX,
    Tile,
    check_year,
    gdal_path,
    tile_url,
)

log = logging.getLogger(__name__)


def _from_environment(name: str, default: int | float, kind: type) -> int | float:
    """A number ≥ 0 from the environment variable ``name`` (``default`` when unset or empty), or
    :class:`BadParameterError` that names the variable and its value."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = -1
    if not value >= 0:  # also NaN
        what = "a whole number" if kind is int else "a number"
        raise BadParameterError(f"{name} in the environment must be {what} ≥ 0, not {text!r}")
    return value


def gdal_options(source: str) -> dict[str, object]:
    """GDAL configuration for reading tiles from ``source``, for a scoped ``rasterio.Env``.

    Cloud-friendly: no directory listing on open, only ``.tif`` probed,
    4 HTTP retries of 429/5xx (GDAL's default codes; timeouts and resets too) 0.5 s apart and doubling
    (``GDAL_HTTP_MAX_RETRY`` and ``GDAL_HTTP_RETRY_DELAY`` in the environment override these), a 60 s
    timeout (``GDAL_HTTP_TIMEOUT`` overrides it), a block cache that holds a block row of a
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
        "GDAL_HTTP_MAX_RETRY": _from_environment("GDAL_HTTP_MAX_RETRY", 4, int),
        "GDAL_HTTP_RETRY_DELAY": _from_environment("GDAL_HTTP_RETRY_DELAY", 0.5, float),  # seconds, doubling
        "GDAL_HTTP_TIMEOUT": _from_environment("GDAL_HTTP_TIMEOUT", 60, int),  # seconds; the environment may say less
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
    (:func:`wcembed.core.errors.failure_kind`)."""
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


class TileReader:
    """Reads windows of one year's tiles, keeping each tile open once (not thread-safe: one per thread).

    Parameters
    ----------
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
    >>> from rasterio.windows import Window
    >>> with TileReader(2020, "outputs/sample") as reader, rasterio.Env(**reader.options):  # doctest: +SKIP
    ...     reader.read_window("N37W076", Window(0, 0, 512, 512)).shape
    (4, 512, 512)
    """

    def __init__(self, year: int, source: str, *, retries: int = 3, backoff: float = 0.5) -> None:
        self.year = check_year(year)
        self.source = str(source)
        self.retries = retries
        self.backoff = backoff
        self.options = gdal_options(self.source)
        self._open: dict[str, rasterio.DatasetReader] = {}

    def __enter__(self) -> TileReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close every open tile."""
        for ds in self._open.values():
            ds.close()
        self._open.clear()

    def url(self, tile: str) -> str:
        """URL (or path) of a tile of this reader's year and source."""
        return tile_url(tile, self.year, self.source)

    def _dataset(self, tile: str, *, again: bool = False) -> rasterio.DatasetReader:
        """The open tile; ``again``: after a failure, asking the server again (GDAL keeps a failed open's
        answer for the rest of the process unless the file is named in ``CPL_VSIL_CURL_NON_CACHED``)."""
        ds = self._open.get(tile)
        if ds is None:
            url = self.url(tile)
            path = gdal_path(url)
            with rasterio.Env(**({"CPL_VSIL_CURL_NON_CACHED": path} if again else {})):
                ds = rasterio.open(path)
            try:
                check_tile_layout(ds, Tile.from_name(tile), url)
            except TileFormatError:
                ds.close()
                raise
            self._open[tile] = ds
        return ds

    def read_window(self, tile: str, window: Window, out: np.ndarray | None = None) -> np.ndarray:
        """Pixels ``(4, h, w)`` of a window of a tile (into ``out`` if given), with retries of transient
        errors (call inside ``rasterio.Env(**reader.options)``)."""
        url = self.url(tile)
        remote = gdal_path(url) != url
        attempt, asked_again = 0, False
        while True:
            try:
                return self._dataset(tile, again=attempt > 0 or asked_again).read(window=window, out=out)
            except RasterioIOError as exc:
                err = tile_error(exc, tile, url)
                stale = self._open.pop(tile, None)
                if stale is not None:
                    stale.close()
                if not isinstance(err, TileTransientError):
                    # GDAL may have answered from what it kept of an earlier open of this URL (a file since
                    # replaced or removed): a permanent error of a remote tile is confirmed once, uncached.
                    if remote and not asked_again:
                        asked_again = True
                        continue
                    raise err from exc
                if attempt == self.retries:
                    raise err from exc
                delay = self.backoff * 2**attempt
                log.warning("transient error on %s (attempt %d), retrying in %.1fs: %s", url, attempt + 1, delay, exc)
                time.sleep(delay)
                attempt += 1
