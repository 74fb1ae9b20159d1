"""The failure policy: one classifier of network failures, exit codes from error types."""

from __future__ import annotations

import http.client
import urllib.error

import botocore.exceptions
import pytest
import requests
from wcembed.core import errors
from wcembed.core.errors import EXIT_BAD_INPUT, EXIT_BUG, EXIT_TRANSIENT, exit_code, failure_kind


def _http_error(code: int) -> urllib.error.HTTPError:
    return urllib.error.HTTPError("http://127.0.0.1/x", code, "status", {}, None)


def _requests_error(code: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = code
    return requests.HTTPError(f"{code}", response=response)


def _client_error(status: int, code: str) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject"
    )


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (_http_error(404), "missing"),
        (_http_error(403), "permanent"),
        (_http_error(429), "transient"),
        (_http_error(503), "transient"),
        (urllib.error.URLError(ConnectionRefusedError(111, "refused")), "transient"),
        (urllib.error.URLError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"), "untrusted"),
        (TimeoutError("timed out"), "transient"),
        (http.client.IncompleteRead(b"", 10), "transient"),
        (ConnectionResetError(104, "reset"), "transient"),
        (_requests_error(500), "transient"),
        (_requests_error(400), "permanent"),
        (requests.ConnectionError("refused"), "transient"),
        (requests.Timeout("slow"), "transient"),
        (_client_error(503, "SlowDown"), "transient"),
        (_client_error(404, "NoSuchKey"), "missing"),
        (_client_error(403, "AccessDenied"), "permanent"),
        (botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), "transient"),
        (RuntimeError("HTTP response code: 502"), "transient"),  # GDAL's words
        (RuntimeError("HTTP response code: 404"), "missing"),
        (RuntimeError("SSL certificate problem: self-signed certificate"), "untrusted"),
        (RuntimeError("not recognized as a supported file format"), "permanent"),
    ],
)
def test_one_classifier_tells_every_library_s_failures_apart(exc, kind):
    assert failure_kind(exc) == kind


def test_exit_codes_come_from_error_types():
    assert exit_code(errors.TileTransientError("x", tile="N37W076", url="u")) == EXIT_TRANSIENT
    assert exit_code(errors.CheckpointDownloadError("x")) == EXIT_TRANSIENT
    assert exit_code(errors.BadYearError("x")) == EXIT_BAD_INPUT
    assert exit_code(KeyError("bug")) == EXIT_BUG

    class Executed(Exception):  # papermill's error for a failed cell names the notebook's exception
        ename = "WMSTransientError"

    assert exit_code(Executed()) == EXIT_TRANSIENT
    Executed.ename = "ValueError"
    assert exit_code(Executed()) == EXIT_BUG
