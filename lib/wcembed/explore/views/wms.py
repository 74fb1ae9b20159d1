"""WMS: an OWSLib client for thumbnails, and a local MapServer for offline imagery.

Layers follow ESA's WorldCover WMS (``https://services.terrascope.be/wms/v2``):
``WORLDCOVER_{year}_S2_TCC`` (true colour), ``WORLDCOVER_{year}_S2_FCC``
(false colour: NIR, red, green) and ``WORLDCOVER_{year}_MAP`` (land cover map).

Offline, :class:`LocalWMS` serves a local tile folder (the sample region) with
MapServer (Debian ``mapserver-bin``/``cgi-mapserver``; conda-forge ``mapserver``)
through a mapfile generated from the folder: one group of layers per year with
the same names as ESA's true- and false-colour layers, plus, when given, a
``CHIPS`` layer drawing chip footprints from a FlatGeobuf (rendered by the
server, so a whole year's 0.5 million chips stay responsive in a browser). The
land-cover map has no local source and is only served by ESA.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import requests

from wcembed.core.errors import (
    BadParameterError,
    EmptyTileSetError,
    ToolError,
    WMSError,
    WMSTransientError,
    failure_kind,
)
from wcembed.core.product import ESA_WMS, TILE_CRS, layer_name, parse_tile_filename
from wcembed.tools.servers import LOOPBACK, check_port_free, free_port, stop, wait_for_port

log = logging.getLogger(__name__)

TCC_SCALE = (200, 2200)
"""Linear stretch of the local true-colour layer (reflectance x 10000 -> 0..255)."""
FCC_SCALE = (200, 4000)
"""Linear stretch of the local false-colour layer."""


# --------------------------------------------------------------------------- client


class WMSClient:
    """Thumbnails of chips from a WMS (OWSLib), with a timeout and an on-disk cache.

    Parameters
    ----------
    url : str
        WMS endpoint; default ESA's.
    cache_dir : path, optional
        Folder for cached PNGs (default ``outputs/cache/wms``); None disables caching.
    timeout : float
        Seconds per request.
    """

    def __init__(self, url: str = ESA_WMS, cache_dir: str | Path | None = "outputs/cache/wms", timeout: float = 30):
        self.url = url
        self.timeout = timeout
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._wms = None

    @property
    def service(self):
        """The OWSLib ``WebMapService`` (capabilities fetched on first use)."""
        if self._wms is None:
            from owslib.wms import WebMapService

            with _network_errors(self.url):
                self._wms = WebMapService(self.url, version="1.3.0", timeout=self.timeout)
        return self._wms

    def layers(self) -> list[str]:
        """Names of the layers the server offers."""
        return list(self.service.contents)

    def covers(self, layer: str, bounds: tuple[float, float, float, float]) -> bool:
        """Whether the layer's extent meets ``bounds`` (west, south, east, north in degrees): its capabilities'
        WGS84 bounding box, or those of its sublayers (a group, as the local MapServer's tiles); True where the
        server does not say."""
        meta = self.service.contents.get(layer)
        parts = (getattr(meta, "children", None) or [meta]) if meta is not None else []
        boxes = [b for b in (getattr(p, "boundingBoxWGS84", None) for p in parts) if b]
        if not boxes:
            return True
        w, s, e, n = bounds
        return any(not (e <= b[0] or w >= b[2] or n <= b[1] or s >= b[3]) for b in boxes)

    def getmap_url(
        self, bounds: tuple[float, float, float, float], layer: str, size: tuple[int, int] = (256, 256)
    ) -> str:
        """A WMS 1.1.1 GetMap URL of ``layer`` over ``bounds`` (west, south, east, north in degrees) as PNG,
        for a browser to fetch (1.1.1 keeps EPSG:4326 in lon/lat order, so no axis-order ambiguity)."""

        query = {
            "SERVICE": "WMS",
            "VERSION": "1.1.1",
            "REQUEST": "GetMap",
            "LAYERS": layer,
            "STYLES": "",
            "SRS": TILE_CRS,
            "BBOX": ",".join(repr(float(b)) for b in bounds),
            "WIDTH": size[0],
            "HEIGHT": size[1],
            "FORMAT": "image/png",
            "TRANSPARENT": "TRUE",
        }
        return f"{self.url}{'&' if '?' in self.url else '?'}{urlencode(query)}"

    def thumbnail(
        self, bounds: tuple[float, float, float, float], layer: str, size: tuple[int, int] = (256, 256)
    ) -> bytes:
        """PNG of ``layer`` over ``bounds`` (west, south, east, north in degrees, EPSG:4326)."""
        key = hashlib.sha256(repr((self.url, layer, tuple(round(b, 9) for b in bounds), size)).encode()).hexdigest()
        cached = self.cache_dir / f"{key}.png" if self.cache_dir else None
        if cached is not None and cached.exists():
            return cached.read_bytes()
        with _network_errors(self.url):
            resp = self.service.getmap(
                layers=[layer],
                srs=TILE_CRS,
                bbox=tuple(bounds),
                size=size,
                format="image/png",
                transparent=True,
                timeout=self.timeout,
            )
            data = resp.read()
        if not data.startswith(b"\x89PNG"):
            raise WMSError(f"WMS {self.url} returned no PNG for {layer}: {data[:200]!r}")
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_bytes(data)
        return data


@contextlib.contextmanager
def _network_errors(url: str):
    """Turn a WMS's failures into :class:`WMSTransientError` (network, HTTP 5xx/429) or :class:`WMSError`
    (other HTTP errors), as :func:`wcembed.core.errors.failure_kind` tells them apart."""

    try:
        yield
    except (requests.RequestException, OSError) as exc:
        kind = WMSTransientError if failure_kind(exc) == "transient" else WMSError
        status = getattr(getattr(exc, "response", None), "status_code", None)
        raise kind(f"WMS {url} {f'answered HTTP {status}' if status else 'cannot be reached'}: {exc}") from exc


# --------------------------------------------------------------------------- local server


UNQUOTABLE = ('"', "'", "\\", "\n", "\r")
"""Characters a path in a mapfile may not hold: MapServer would end the string there (and read the rest as
directives)."""


def quoted(text: str | Path, what: str) -> str:
    """``text`` in double quotes for a mapfile, or :class:`BadParameterError` naming the character it cannot hold."""
    text = str(text)
    bad = next((c for c in UNQUOTABLE if c in text), None)
    if bad is not None:
        raise BadParameterError(f"the {what} {text!r} holds {bad!r}, which a MapServer mapfile cannot quote: rename it")
    return f'"{text}"'


def mapfile(tiles_root: str | Path, url: str, footprints: str | Path | None = None) -> str:
    """A MapServer mapfile serving the WorldCover-layout tiles under ``tiles_root``; :class:`EmptyTileSetError`
    when it holds none (a WMS without imagery is of no use), :class:`BadParameterError` for a path a mapfile
    cannot quote."""
    root = Path(tiles_root).resolve()
    quoted(root, "tile folder")
    layers = []
    tifs = ((parse_tile_filename(p.name), p) for p in root.glob("rgbnir/*/*/*.tif"))
    for (year, tile), tif in sorted(t for t in tifs if t[0] is not None):
        for kind, bands, (lo, hi) in (("TCC", "1,2,3", TCC_SCALE), ("FCC", "4,1,2", FCC_SCALE)):
            layers.append(f"""
  LAYER
    NAME "{kind.lower()}_{year}_{tile}"
    GROUP "{layer_name(year, kind)}"
    TYPE RASTER
    STATUS ON
    DATA {quoted(tif, "tile")}
    PROJECTION "init=epsg:4326" END
    PROCESSING "BANDS={bands}"
    PROCESSING "SCALE={lo},{hi}"
    PROCESSING "NODATA=0"
    PROCESSING "RESAMPLE=NEAREST"
    METADATA "wms_title" "{layer_name(year, kind)}" "wms_srs" "EPSG:4326 EPSG:3857" END
  END""")
    if not layers:
        raise EmptyTileSetError(f"no WorldCover-layout tile (rgbnir/{{year}}/N??/*.tif) under {root}")
    if footprints:
        layers.append(f"""
  LAYER
    NAME "CHIPS"
    TYPE POLYGON
    STATUS ON
    CONNECTIONTYPE FLATGEOBUF
    DATA {quoted(Path(footprints).resolve(), "footprints file")}
    PROJECTION "init=epsg:4326" END
    METADATA "wms_title" "chip footprints" "wms_srs" "EPSG:4326 EPSG:3857" END
    CLASS STYLE OUTLINECOLOR 255 255 0 WIDTH 0.6 END END
  END""")
    return f"""MAP
  NAME "wcembed"
  EXTENT -180 -90 180 90
  SIZE 512 512
  UNITS DD
  PROJECTION "init=epsg:4326" END
  IMAGETYPE "png"
  OUTPUTFORMAT NAME "png" DRIVER AGG/PNG MIMETYPE "image/png" IMAGEMODE RGBA EXTENSION "png" TRANSPARENT ON END
  WEB
    METADATA
      "wms_title" "wcembed local WorldCover WMS"
      "wms_onlineresource" {quoted(url + "?", "URL")}
      "wms_srs" "EPSG:4326 EPSG:3857"
      "wms_enable_request" "*"
    END
  END
{"".join(layers)}
END
"""


class LocalWMS:
    """MapServer (``mapserv`` behind a small CGI gateway) on loopback serving a local tile folder.

    >>> with LocalWMS("outputs/sample") as wms:  # doctest: +SKIP
    ...     WMSClient(wms.url).layers()
    """

    def __init__(
        self, tiles_root: str | Path, workdir: str | Path, footprints: str | Path | None = None, port: int | None = None
    ) -> None:
        self.tiles_root, self.workdir, self.footprints = Path(tiles_root), Path(workdir), footprints
        self.port = port

    def __enter__(self) -> LocalWMS:
        mapserv = shutil.which("mapserv") or "/usr/lib/cgi-bin/mapserv"
        if not Path(mapserv).exists():
            raise ToolError("MapServer is not installed (Debian: mapserver-bin cgi-mapserver)")
        if self.port:
            check_port_free(self.port)  # else the banner would name a port some other server answers on
        self.port = self.port or free_port()
        self.url = f"http://{LOOPBACK}:{self.port}/cgi-bin/mapserv"
        ms = self.workdir.resolve()
        quoted(ms, "work folder")
        ms.mkdir(parents=True, exist_ok=True)
        (ms / "wms.map").write_text(mapfile(self.tiles_root, self.url, self.footprints))
        conf = ms / "mapserver.conf"
        conf.write_text(f'CONFIG\n  ENV\n    MS_MAP_PATTERN "^{ms}/"\n    MS_MAPFILE "{ms / "wms.map"}"\n  END\nEND\n')
        env = {**os.environ, "MAPSERVER_CONFIG_FILE": str(conf)}
        gateway = [sys.executable, "-m", "wcembed.tools.servers", "cgi", mapserv, "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [*gateway, "--parent", str(os.getpid())],  # the gateway ends with this process, also when killed
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.proc)
        log.info("local WMS on %s", self.url)
        return self

    def __exit__(self, *exc) -> None:
        stop(self.proc)
