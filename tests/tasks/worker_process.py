"""Helpers for tests that run real worker processes (used by tests/tasks and tests/api)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from embedding_studio.models.tiny import COMMON_WORDS


def write_catalog(path: Path, count: int, seed: int = 0) -> Path:
    """Items whose texts are made of the tiny model's own words, so they tokenize into whole words."""
    words = COMMON_WORDS[:300]
    with path.open("w", encoding="utf-8") as handle:
        for index in range(count):
            text = " ".join(words[(index * 7 + offset * 13 + seed) % len(words)] for offset in range(12))
            handle.write(json.dumps({"_id": f"item-{index}", "title": words[index % len(words)], "text": text}) + "\n")
    return path


def clear_queue() -> None:
    from embedding_studio.db import default_database

    with default_database().transaction() as connection:
        connection.execute("DELETE FROM procrastinate_jobs")
        connection.execute("DELETE FROM procrastinate_workers")


def start_worker(log_path: Path, *extra: str) -> subprocess.Popen[bytes]:
    """``embedding-studio worker`` in its own process, with a short heartbeat so a dead one is seen quickly."""
    command = [
        sys.executable,
        "-m",
        "embedding_studio.cli.main",
        "worker",
        "--heartbeat-interval",
        "0.5",
        "--stalled-after",
        "5",
        "--check-every",
        "0.5",
        *extra,
    ]
    handle = log_path.open("ab")
    return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=dict(os.environ))


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(condition: Callable[[], bool], timeout: float, message: str, log_path: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    log = log_path.read_text(errors="replace")[-4000:] if log_path and log_path.exists() else ""
    raise AssertionError(f"timed out after {timeout}s: {message}\n--- worker log ---\n{log}")
