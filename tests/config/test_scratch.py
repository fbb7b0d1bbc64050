"""Scratch directories: gone after use, and gone after their process was SIGKILLed once another one is made."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from embedding_studio.config import reset_settings
from embedding_studio.config.scratch import remove_abandoned_scratch, scratch_directory, scratch_root

HOLD_A_SCRATCH_DIRECTORY = """
import sys, time
from embedding_studio.config.scratch import scratch_directory
with scratch_directory("killed-") as directory:
    (directory / "model.bin").write_bytes(b"weights")
    print(directory, flush=True)
    time.sleep(60)
"""


@pytest.fixture()
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("EMBEDDING_STUDIO_DATA_DIR", str(tmp_path))
    reset_settings()
    yield tmp_path
    reset_settings()


def test_a_scratch_directory_lives_in_the_data_dir_and_is_removed_after_use(data_dir: Path) -> None:
    with scratch_directory("upload-") as directory:
        assert directory.parent == data_dir / "scratch" and directory.is_dir()
        assert remove_abandoned_scratch() == []  # its owner, this process, is alive
    assert not directory.exists()


def test_the_directory_of_a_killed_process_is_removed_and_a_live_one_kept(data_dir: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD_A_SCRATCH_DIRECTORY], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        killed_directory = Path(holder.stdout.readline().strip())
        assert killed_directory.parent == scratch_root()
        assert remove_abandoned_scratch() == []  # the holder is alive
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    finally:
        holder.kill()
    assert (killed_directory / "model.bin").exists()  # SIGKILL ran no cleanup
    with scratch_directory("live-") as live:
        assert not killed_directory.exists()  # making a new one removed the dead process's
        assert remove_abandoned_scratch() == [] and live.is_dir()
