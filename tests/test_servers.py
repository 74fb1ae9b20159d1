"""The loopback servers' plumbing: a gateway dies with its parent, a busy port is named."""

import signal
import socket
import subprocess
import sys
import time

from builders import one_line_error, wcembed
from wcembed.tools.servers import LOOPBACK, free_port


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((LOOPBACK, port)) == 0


def test_the_wms_gateway_dies_with_a_killed_serve_wms_and_a_busy_port_is_named(tmp_path, sample_root):
    port = free_port()
    args = ["serve-wms", sample_root, "--port", port, "--workdir", tmp_path / "ms"]
    proc = subprocess.Popen([sys.executable, "-m", "wcembed", *map(str, args)], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not listening(port) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert listening(port), proc.poll()
    busy = one_line_error(wcembed(*args))
    assert f"port {port}" in busy and "in use" in busy
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while listening(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not listening(port)  # the gateway child went with it
