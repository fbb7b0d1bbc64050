"""Starting the API in its own process for a benchmark: a free loopback port, and waiting for /health."""

from __future__ import annotations

import http.client
import subprocess
import time

from embedding_studio.cli.serve import free_port

__all__ = ["free_port", "wait_for_health"]


def wait_for_health(port: int, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode} before answering /health")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server did not answer /health within {timeout:.0f} s")
