"""Real ``embedding-studio worker`` processes for the benchmarks that time work spread over several of them
(``distributed_trials.py``, ``sharded_reindex.py``): start, wait for, count and stop them, one way."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from embedding_studio.db import Database


def start_workers(count: int, env: dict[str, str], log: Path, label: str, queue: str) -> list[subprocess.Popen[bytes]]:
    """``count`` workers on ``queue``, named ``<label>-<n>`` (the name task progress shows), logging to ``log``."""
    handle = log.open("ab")
    command = [sys.executable, "-m", "embedding_studio.cli.main", "worker", "--queues", queue]
    return [
        subprocess.Popen([*command, "--name", f"{label}-{index}"], env=env, stdout=handle, stderr=subprocess.STDOUT)
        for index in range(count)
    ]


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM (a worker finishes its job and deregisters), then SIGKILL whoever is still there after 60 s."""
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def wait_until(condition: Callable[[], bool], timeout: float, what: str, log: Path, poll_s: float = 0.2) -> None:
    """Return once ``condition()`` holds; after ``timeout`` seconds exit with the end of the workers' log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(poll_s)
    raise SystemExit(f"timed out after {timeout:.0f}s: {what}\n{log.read_text(errors='replace')[-3000:]}")


def registered_workers(database: Database) -> int:
    """Workers registered in procrastinate's table: started ones appear, stopped ones leave."""
    with database.connection() as connection:
        row = connection.execute("SELECT count(*) FROM procrastinate_workers").fetchone()
    return int(row[0]) if row else 0
