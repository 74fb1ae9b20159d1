"""Servers the tests and benchmarks run on loopback (test-only packages: RangeHTTPServer, moto).

* :class:`RangeServer`: a static file server with HTTP Range support (what
  GDAL's ``/vsicurl/`` needs) that logs every request (method, path, range,
  status, bytes) and can inject faults, for measuring requests per column and
  testing retries. It runs as a separate process (``python tests/local_servers.py range ...``).
* :func:`moto_s3`: the moto S3 API server (``moto_server``) as a separate
  process (GDAL writes deadlock against moto's in-process server).

Both bind to 127.0.0.1 only and are stopped by PID when the context exits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path

from wcembed.tools.servers import LOOPBACK, free_port, stop, wait_for_port

# --------------------------------------------------------------------------- range server


FAULT_KINDS = ("500", "503", "429", "cut", "reset", "delay:3")
"""Every kind of fault the range server makes (a delay is logged as ``delay``, then the answer that follows it)."""


@dataclass
class RangeServer:
    """A loopback HTTP server with Range support, request log and fault injection.

    Parameters
    ----------
    root : path
        Folder to serve.
    faults : list of (substring, kind, count)
        The first ``count`` requests whose path contains ``substring`` get the fault ``kind``:
        an HTTP status (``500``, ``503``; ``429`` comes with ``Retry-After: 1``), ``"cut"`` (the
        headers of the full response, then half its body, then the connection closed), ``"reset"``
        (the connection closed before any response) or ``"delay:S"`` (the response, after S seconds).
    fault_rate, fault_kinds, seed : float, tuple of str, int
        Besides those, each request gets a fault with probability ``fault_rate``, its kind drawn
        from ``fault_kinds``, from a random stream seeded with ``seed``.
    tls : bool
        Serve HTTPS with a throwaway self-signed certificate for 127.0.0.1 (:attr:`ca_file`); clients
        trust it through ``GDAL_CURL_CA_BUNDLE`` (rasterio's wheels), ``CURL_CA_BUNDLE`` (a system GDAL)
        or ``SSL_CERT_FILE`` (Python), set before the client process starts.

    Examples
    --------
    >>> with RangeServer("outputs/sample") as srv:  # doctest: +SKIP
    ...     url = srv.url          # http://127.0.0.1:PORT
    ...     stats = srv.requests()  # one dict per request
    """

    root: str | Path
    faults: list[tuple[str, int | str, int]] = field(default_factory=list)
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    seed: int = 0
    tls: bool = False

    def __enter__(self) -> RangeServer:
        self.port = free_port()
        self.log = Path(self.root).resolve() / f".requests-{self.port}.jsonl"
        self.log.unlink(missing_ok=True)
        args = [sys.executable, __file__, str(self.root), "--port", str(self.port)]
        args += ["--log", str(self.log)]
        for sub, status, count in self.faults:
            args += ["--fault", f"{sub}:{status}:{count}"]
        if self.fault_rate:
            args += ["--fault-rate", str(self.fault_rate), "--fault-kinds", ",".join(self.fault_kinds)]
            args += ["--seed", str(self.seed)]
        if self.tls:
            self.ca_file = self.log.with_suffix(".pem")
            _self_signed(self.ca_file, self.log.with_suffix(".key"))
            args += ["--tls", str(self.ca_file), str(self.log.with_suffix(".key"))]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.proc)
        return self

    def __exit__(self, *exc) -> None:
        stop(self.proc)
        for path in (self.log, self.log.with_suffix(".pem"), self.log.with_suffix(".key")):
            path.unlink(missing_ok=True)

    @property
    def url(self) -> str:
        """Base URL of the served folder."""
        return f"{'https' if self.tls else 'http'}://{LOOPBACK}:{self.port}"

    def requests(self) -> list[dict]:
        """Requests served so far: ``method``, ``path``, ``range``, ``status``, ``bytes``."""
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


def _self_signed(cert: Path, key: Path) -> None:
    """A throwaway self-signed certificate (and its key) for 127.0.0.1, valid for a day."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    pk = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(pk.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(pk, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        pk.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def _serve_range(
    root: str,
    port: int,
    log: str,
    faults: list[str],
    rate: float = 0.0,
    kinds: list[str] = (),
    seed: int = 0,
    tls: list[str] | None = None,
) -> None:
    import random

    from RangeHTTPServer import RangeRequestHandler

    lock = threading.Lock()
    draw = random.Random(seed)
    remaining = []
    for f in faults:
        sub, rest = f.split(":", 1)
        kind, count = rest.rsplit(":", 1)
        remaining.append([sub, kind, int(count)])

    class Handler(RangeRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _cut(self) -> None:
            """The headers of the whole answer (206 for a range), then half its body, then the connection closed."""
            path = self.translate_path(self.path)
            size = Path(path).stat().st_size
            start, end = 0, size - 1
            wanted = self.headers.get("Range", "")
            if wanted.startswith("bytes="):
                a, _, b = wanted[6:].split(",")[0].partition("-")
                start, end = int(a or 0), min(int(b) if b else size - 1, size - 1)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(end - start + 1))
            self.end_headers()
            half = (end - start + 1) // 2
            self._record("cut", half)
            try:
                if self.command == "GET":
                    with open(path, "rb") as fh:
                        fh.seek(start)
                        self.wfile.write(fh.read(half))
                    self.wfile.flush()
            except OSError:  # the client may already have gone
                pass
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

        def _record(self, status: int | str, nbytes: int) -> None:
            entry = {"method": self.command, "path": self.path, "range": self.headers.get("Range")}
            entry.update(status=status, bytes=nbytes)
            with lock, open(log, "a") as fh:
                fh.write(json.dumps(entry) + "\n")

        def _fault(self) -> bool:
            """Answer with the next scheduled fault for this path, if any; True when the request is done."""
            with lock:
                for f in remaining:
                    if f[0] in self.path and f[2] > 0:
                        f[2] -= 1
                        kind = f[1]
                        break
                else:
                    if not (rate and draw.random() < rate):
                        return False
                    kind = draw.choice(kinds)
            if kind.startswith("delay:"):
                time.sleep(float(kind.split(":")[1]))
                self._record("delay", 0)  # then the normal response, if the client has not given up
                return False
            if kind == "reset":
                self._record("reset", 0)
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return True
            if kind == "cut":
                self._cut()
                return True
            status = int(kind)
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "1")
            self.send_header("Content-Length", "0")
            self.end_headers()
            self._record(status, 0)
            return True

        def do_GET(self) -> None:
            if self._fault():
                return
            stamp, path = self.headers.get("If-Range"), self.translate_path(self.path)
            # HTTP If-Range (which RangeRequestHandler leaves out): a file changed since is answered whole
            if stamp is not None and os.path.isfile(path) and stamp != self.date_time_string(os.stat(path).st_mtime):
                del self.headers["Range"]
            counter = _CountingWriter(self.wfile)
            self.wfile = counter
            super().do_GET()
            self._record(getattr(self, "_status", 200), counter.n)

        def do_HEAD(self) -> None:
            if self._fault():
                return
            super().do_HEAD()
            self._record(getattr(self, "_status", 200), 0)

        def send_response(self, code, message=None) -> None:
            self._status = code
            super().send_response(code, message)

    os.chdir(root)
    server = ThreadingHTTPServer((LOOPBACK, port), Handler)
    if tls:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        # the handshake happens in the handler's thread, not in the accept loop
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    server.serve_forever()


class _CountingWriter:
    def __init__(self, raw) -> None:
        self.raw, self.n, self._headers_done = raw, 0, False

    def write(self, data: bytes) -> int:
        if self._headers_done:
            self.n += len(data)
        elif data.endswith(b"\r\n\r\n") or b"\r\n\r\n" in data:
            self._headers_done = True
        return self.raw.write(data)

    def __getattr__(self, name):
        return getattr(self.raw, name)


# --------------------------------------------------------------------------- moto S3


def start_cli(args: list[str], wait_for: str, cwd=None, env=None) -> tuple[subprocess.Popen, str]:
    """Start ``python -m wcembed ARGS``; return the process and its output up to the line holding ``wait_for``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "wcembed", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
        env=env,
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if wait_for in line:  # then keep draining its output, so that a full pipe never blocks it
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc, "".join(lines)
    raise AssertionError(f"exited {proc.wait()} before {wait_for!r}:\n{''.join(lines)}")


def jupyterlab_settings(folder: Path, **tracker) -> dict[str, str]:
    """JupyterLab user settings for a browser run: every cell in the page (no windowing), no news pop-up,
    and ``tracker`` options of the notebook (e.g. ``recordTiming=True``). Returns the environment that
    points JupyterLab at them."""
    for name, value in (("notebook-extension/tracker", {"windowingMode": "none", **tracker}),
                        ("apputils-extension/notification", {"fetchNews": "false"})):  # fmt: skip
        path = Path(folder) / f"@jupyterlab/{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    return {"JUPYTERLAB_SETTINGS_DIR": str(folder)}


def wait_for_url(url: str, timeout: float = 120.0) -> tuple[int, str]:
    """Retry a GET of ``url`` until it answers (a server still starting refuses or resets); its status and body."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status, r.read().decode(errors="replace")
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer in {timeout} s") from None
            time.sleep(0.5)


def interrupt(proc: subprocess.Popen) -> int:
    """Ctrl-C a process; its exit code."""
    import signal

    proc.send_signal(signal.SIGINT)
    return proc.wait(timeout=30)


@contextlib.contextmanager
def moto_s3(buckets: tuple[str, ...] = ()) -> Iterator[str]:
    """Run ``moto_server`` on loopback; yield its endpoint URL.

    Sets nothing globally: callers pass the endpoint (or set ``AWS_ENDPOINT_URL``
    for the duration of their own code). Credentials for it: any, e.g.
    ``testing``/``testing``, region ``us-east-1``.
    """
    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(exe), "-H", LOOPBACK, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, proc)
        endpoint = f"http://{LOOPBACK}:{port}"
        if buckets:
            import boto3

            s3 = boto3.client(
                "s3",
                endpoint_url=endpoint,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                region_name="us-east-1",
            )
            for b in buckets:
                s3.create_bucket(Bucket=b)
        yield endpoint
    finally:
        stop(proc)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python tests/local_servers.py", description="serve a folder with Range")
    parser.add_argument("root")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--fault", action="append", default=[], help="SUBSTRING:KIND:COUNT (see RangeServer)")
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--fault-kinds", default="500")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), default=None)
    args = parser.parse_args(argv)
    kinds = args.fault_kinds.split(",")
    _serve_range(args.root, args.port, args.log, args.fault, args.fault_rate, kinds, args.seed, args.tls)


if __name__ == "__main__":
    main()


def cog_block_bytes(path: str | Path) -> dict[tuple[int, int], int]:
    """Compressed bytes of each stored block ``(x, y)`` of a COG's full-resolution image (sparse
    all-nodata blocks are absent): what a reader that fetches each block once needs, to compare with
    what a :class:`RangeServer` served."""
    import rasterio

    out = {}
    with rasterio.open(path) as ds:
        (bh, bw) = ds.block_shapes[0]
        for y in range(-(-ds.height // bh)):
            for x in range(-(-ds.width // bw)):
                size = ds.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=1)
                if size:
                    out[(x, y)] = int(size)
    return out
