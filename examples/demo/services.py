"""The processes the demo runs, as a user would: an embedded PostgreSQL, ``embedding-studio serve`` and
``embedding-studio worker``, all configured through their environment for one data directory.

The demo's own process is never reconfigured: its environment and settings stay the user's, and only the
children get the demo's database, data directory, catalog and MLflow store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import httpx

from embedding_studio.cli.errors import UserFacingError
from embedding_studio.client import ApiError, EmbeddingStudioClient

#: Tracking settings of the user's environment that must not reach the demo's servers (it has its own store).
_USER_TRACKING = ("MLFLOW_TRACKING_URI", "EMBEDDING_STUDIO_MLFLOW_TRACKING_URI")


def stop_stale_postgres(pgdata: Path, timeout_s: float = 30.0) -> None:
    """Stop a server a previous demo left running in ``pgdata`` before its files are removed."""
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.is_file():
        return
    import psutil

    try:
        pid = int(pid_file.read_text().splitlines()[0])
        process = psutil.Process(pid)
        if "postgres" not in process.name():
            return
        process.send_signal(signal.SIGINT)  # PostgreSQL's "fast" shutdown
        process.wait(timeout_s)
    except (ValueError, IndexError, psutil.NoSuchProcess, psutil.TimeoutExpired):
        return


def _die_with_parent() -> None:
    """A demo killed outright (SIGKILL, OOM) must not leave its API and worker running (Linux only)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


@contextmanager
def terminate_gracefully() -> Iterator[None]:
    """SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the servers the demo started are stopped."""

    def raise_interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, raise_interrupt)
    except ValueError:  # not the main thread: leave signal handling alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class DemoServices:
    """PostgreSQL (embedded), the API and a worker, all in one data directory; stopped together."""

    def __init__(self, data_dir: Path, port: int, catalog_path: Path) -> None:
        self.data_dir = data_dir
        self.port = port
        self.catalog_path = catalog_path
        self.logs_dir = data_dir / "logs"
        self.api_url = f"http://127.0.0.1:{port}"
        self._server: Any = None
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._log_handles: list[TextIO] = []
        self.environment: dict[str, str] = {}

    @property
    def mlflow_uri(self) -> str:
        """The demo's MLflow store: what its servers use (no tracking URI given: sqlite in the data directory)."""
        return f"sqlite:///{(self.data_dir / 'mlflow.db').as_posix()}"

    def start_database(self) -> str:
        """Start the embedded PostgreSQL and migrate it once, so the API and the worker start on a current schema
        instead of racing each other through the same migrations."""
        from embedding_studio.db.embedded import open_embedded_server
        from embedding_studio.db.engine import normalize_database_url

        pgdata = self.data_dir / "pgdata"
        try:
            self._server = open_embedded_server(pgdata, cleanup_mode="stop")
        except Exception as error:  # the wheel raises plain exceptions with the postgres log inside
            raise UserFacingError(f"could not start the embedded PostgreSQL in {pgdata}: {error}") from error
        url = normalize_database_url(self._server.get_uri())
        self.environment = {
            "DATABASE_URL": url,
            "EMBEDDING_STUDIO_DATA_DIR": str(self.data_dir),
            "EMBEDDING_STUDIO_CATALOG_LOADER": "jsonl_catalog",
            "EMBEDDING_STUDIO_CATALOG_LOADER_OPTIONS": json.dumps({"path": str(self.catalog_path)}),
            "EMBEDDING_STUDIO_API_KEYS": "[]",
            "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        migration = self._spawn("migrate", ["db", "upgrade"])
        if migration.wait() != 0:
            raise UserFacingError(
                f"migrating the demo's database failed; {self.logs_dir / 'migrate.log'} ends "
                f"with:\n{self.log_tail('migrate')}"
            )
        del self._processes["migrate"]
        return url

    def _child_environment(self) -> dict[str, str]:
        environment = {key: value for key, value in os.environ.items() if key not in _USER_TRACKING}
        environment.update(self.environment)
        return environment

    def _spawn(self, name: str, arguments: Sequence[str]) -> subprocess.Popen[bytes]:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log = (self.logs_dir / f"{name}.log").open("w", encoding="utf-8")
        self._log_handles.append(log)
        process = subprocess.Popen(
            [sys.executable, "-m", "embedding_studio.cli.main", *arguments],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self._child_environment(),
            start_new_session=True,  # Ctrl-C in the terminal reaches the demo, which stops its children itself
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self._processes[name] = process
        return process

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.logs_dir / f"{name}.log"
        if not path.is_file():
            return ""
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    def check_alive(self) -> None:
        for name, process in self._processes.items():
            if process.poll() is not None:
                raise UserFacingError(
                    f"the demo's {name} process stopped (exit code {process.returncode}); its log "
                    f"{self.logs_dir / (name + '.log')} ends with:\n{self.log_tail(name)}"
                )

    def start_api(self, client: EmbeddingStudioClient, timeout_s: float = 120.0) -> None:
        """``embedding-studio serve`` on the demo's port; returns once ``/health`` answers through ``client``."""
        self._spawn("api", ["serve", "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                client.health()
                return
            except (httpx.HTTPError, ApiError):
                pass
            time.sleep(0.3)
        raise UserFacingError(
            f"the API did not answer on {self.api_url} within {timeout_s:.0f} s; see {self.logs_dir / 'api.log'}"
        )

    def start_worker(self) -> None:
        self._spawn("worker", ["worker"])

    def stop(self) -> None:
        for process in self._processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in self._processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self._processes.clear()
        for handle in self._log_handles:
            handle.close()
        self._log_handles.clear()
        if self._server is not None:
            self._server.cleanup()
            self._server = None
