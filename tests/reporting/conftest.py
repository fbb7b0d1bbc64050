"""Headless Chromium for the report tests: Debian's package, installed here when it is absent."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")


def _apt_get(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = ["apt-get", *arguments]
    if os.geteuid() != 0 and shutil.which("sudo"):
        command = ["sudo", "-n", *command]
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=900)


@pytest.fixture(scope="session")
def chromium_binary() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    result = _apt_get("install", "-y", "--no-install-recommends", "chromium")
    if result.returncode != 0:
        _apt_get("update")
        for _attempt in range(3):  # another apt may hold the dpkg lock for a while
            result = _apt_get("install", "-y", "--no-install-recommends", "chromium")
            if result.returncode == 0:
                break
            time.sleep(10)
    if not CHROMIUM.exists():
        pytest.fail(f"could not install Debian's chromium package for the report tests:\n{result.stderr[-2000:]}")
    return CHROMIUM


@pytest.fixture(scope="session")
def headless_chromium(chromium_binary: Path) -> Callable[..., list[str]]:
    """Builds a headless Chromium command line with its own profile directory, quiet on the network."""

    def command(profile: Path, *arguments: str) -> list[str]:
        return chromium_command(chromium_binary, profile, *arguments)

    return command


def chromium_command(binary: Path, profile: Path, *arguments: str) -> list[str]:
    return [
        str(binary),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        *arguments,
    ]


@pytest.fixture()
def mlflow_in(tmp_path: Path) -> Iterator[str]:
    """MLFLOW_TRACKING_URI set to a fresh sqlite store for the test, the previous value put back after."""
    from embedding_studio.config import reset_settings

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    reset_settings()
    yield uri
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous
    reset_settings()
