"""Local servers on loopback: the pieces the local WMS (:class:`wcembed.explore.views.wms.LocalWMS`) runs on.

A free port, waiting for a server to listen, stopping it, and a small CGI
gateway that runs MapServer's ``mapserv`` for ``GET /cgi-bin/...`` requests.
Everything binds to 127.0.0.1 only. (The test servers, a logging HTTP Range
server and the moto S3 API, live with the tests: ``tests/local_servers.py``.)
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from wcembed.core.errors import ToolError

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port that is free on loopback right now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    """Block until something listens on ``127.0.0.1:port`` (or raise)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ToolError(f"server process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex((LOOPBACK, port)) == 0:
                return
        time.sleep(0.05)
    raise ToolError(f"nothing listens on {LOOPBACK}:{port} after {timeout}s")


def check_port_free(port: int) -> None:
    """Raise :class:`ToolError` if something already listens on (or holds) ``127.0.0.1:port``."""
    with socket.socket() as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError as exc:
            raise ToolError(f"port {port} on {LOOPBACK} is in use ({exc.strerror}): choose another port") from None


def die_with_parent() -> None:
    """For ``Popen(preexec_fn=...)``: the child gets SIGTERM when the process that started it ends, also when
    that one is killed with SIGKILL (Linux's ``PR_SET_PDEATHSIG``; elsewhere nothing is set)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def _exit_with_parent(parent: int, every_s: float = 0.5) -> None:
    """End this process when its parent ``parent`` is gone (it was killed, even with SIGKILL): a thread
    that watches the parent process id."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def stop(proc: subprocess.Popen) -> None:
    """Terminate a server process (then kill it if it does not stop)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- CGI gateway


def _serve_cgi(script: str, port: int) -> None:
    """Serve ``GET /cgi-bin/<name>?...`` by running a CGI program (MapServer's ``mapserv``).

    Unlike ``http.server --cgi``, the program runs as the current user (the
    stdlib switches to ``nobody`` when run as root, which then cannot read the tiles).
    """

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if not parts.path.startswith("/cgi-bin/"):
                self.send_error(404)
                return
            env = {
                **os.environ,
                "GATEWAY_INTERFACE": "CGI/1.1",
                "REQUEST_METHOD": "GET",
                "QUERY_STRING": parts.query,
                "SCRIPT_NAME": parts.path,
                "SERVER_NAME": LOOPBACK,
                "SERVER_PORT": str(port),
                "SERVER_PROTOCOL": "HTTP/1.1",
            }
            done = subprocess.run([script], env=env, capture_output=True, timeout=120)
            head, _, body = done.stdout.partition(b"\r\n\r\n")
            if not _:
                head, _, body = done.stdout.partition(b"\n\n")
            headers = [h.split(b":", 1) for h in head.splitlines() if b":" in h]
            status = next((int(v.split()[0]) for k, v in headers if k.strip().lower() == b"status"), 200)
            self.send_response(status)
            for k, v in headers:
                if k.strip().lower() != b"status":
                    self.send_header(k.strip().decode(), v.strip().decode())
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    ThreadingHTTPServer((LOOPBACK, port), Handler).serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wcembed.tools.servers")
    sub = parser.add_subparsers(dest="cmd", required=True)
    cgi = sub.add_parser("cgi", help="serve a CGI program (mapserv) under /cgi-bin/ on loopback")
    cgi.add_argument("script")
    cgi.add_argument("--port", type=int, required=True)
    cgi.add_argument("--parent", type=int, default=None, help="exit when this process (the starter) is gone")
    args = parser.parse_args(argv)
    if args.parent is not None:
        _exit_with_parent(args.parent)
    _serve_cgi(args.script, args.port)


if __name__ == "__main__":
    main()
