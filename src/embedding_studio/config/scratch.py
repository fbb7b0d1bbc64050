"""Scratch directories for large temporary files (model copies), under the data directory, not /tmp.

A fine-tuning task keeps a copy of its initial model on disk for its trials, and each saved model passes
through a directory on its way to MLflow: hundreds of MB for MiniLM, GB for larger models. /tmp is often a
small RAM-backed tmpfs, and a process killed with SIGKILL (OOM, a CI timeout) never runs its cleanup, so
those copies piled up there. Here each directory holds a lock its process keeps for as long as it uses it;
the kernel drops the lock when the process dies, however it dies, so the next scratch directory made on the
machine removes the ones whose owner is gone (a pid would be reused, by PID 1 in every container restart).
"""

from __future__ import annotations

import fcntl
import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from embedding_studio.config.settings import get_settings

logger = logging.getLogger(__name__)

OWNER_LOCK = ".owner-lock"


def scratch_root() -> Path:
    return get_settings().data_dir / "scratch"


@contextmanager
def scratch_directory(prefix: str) -> Iterator[Path]:
    """A new empty directory, removed on exit, and by a later process if this one is killed first."""
    remove_abandoned_scratch()
    root = scratch_root()
    root.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    with (directory / OWNER_LOCK).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            yield directory
        finally:
            shutil.rmtree(directory, ignore_errors=True)


def remove_abandoned_scratch() -> list[Path]:
    """Remove the scratch directories whose owning process has died; returns them."""
    root = scratch_root()
    if not root.is_dir():
        return []
    removed: list[Path] = []
    for directory in root.iterdir():
        try:
            with (directory / OWNER_LOCK).open("r") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, FileNotFoundError, NotADirectoryError):
            continue  # in use, being set up or removed by its owner, or not ours
        shutil.rmtree(directory, ignore_errors=True)
        logger.info("removed %s, left behind by a process that died", directory)
        removed.append(directory)
    return removed
