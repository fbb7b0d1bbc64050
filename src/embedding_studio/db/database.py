"""The one way to PostgreSQL: a :class:`Database` holds the connection pools and is handed to each repository.

Repositories (``tasks.repository.TaskRepository``, ``clickstream.dao.ClickstreamRepository``, ...) take a
``Database`` in their constructor, as procrastinate's ``JobManager`` takes a connector, so a test or a second
process can hand them another one and nothing below the wiring reaches for a global. The wiring (the API's
dependencies, the CLI, the workers) uses :func:`default_database`, the process's one instance, built from the one
settings object's database URL.

Three kinds of pool live inside, all psycopg 3 and all in autocommit mode (a write that must be atomic runs in
:meth:`Database.transaction`):

- the checked pool of :meth:`Database.connection`: every checkout is checked first, as SQLAlchemy's
  ``pool_pre_ping`` did, because a task may hold on across a database restart;
- named unchecked pools (:meth:`Database.pool`) for hot single-statement paths, where the check costs as much as
  the statement; only idempotent work goes through them (``db.pool.run_idempotent`` retries once);
- an asyncio pool (:meth:`Database.open_async_pool`) the API's lifespan opens, so the clickstream's inserts await
  psycopg on the event loop instead of taking a worker thread.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from embedding_studio.config import Settings
from embedding_studio.db.engine import libpq_url, resolve_database_url
from embedding_studio.db.errors import DatabaseUnavailableError

__all__ = ["Database", "close_default_database", "default_database"]

#: The unchecked pools: one connection kept open, at most 16.
_UNCHECKED_POOL_SIZE = {"min_size": 1, "max_size": 16}
#: The checked pool is the one every repository shares, so it may grow as SQLAlchemy's engine did (10 + 20).
_CHECKED_POOL_SIZE = {"min_size": 1, "max_size": 30}

#: Identifies the server and database (start time, name, oid); readable by any role.
_FINGERPRINT = (
    "SELECT pg_postmaster_start_time()::text || '|' || current_database() || '|' || "
    "(SELECT oid FROM pg_database WHERE datname = current_database())::text"
)

ConfigureConnection = Callable[[psycopg.Connection[Any]], None]


class Database:
    """One PostgreSQL database and the pools of this process that talk to it."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = libpq_url(conninfo)
        self._lock = threading.Lock()
        self._checked: ConnectionPool | None = None
        self._unchecked: dict[str, ConnectionPool] = {}
        self._async_pool: AsyncConnectionPool | None = None

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Database:
        """The database the settings name (``DATABASE_URL``, else the embedded server, started if need be).

        Connects once before answering, so an unreachable server is one explained error here rather than a pool
        timeout in whatever ran first.
        """
        database = cls(resolve_database_url(settings))
        database.check_reachable()
        return database

    @property
    def conninfo(self) -> str:
        """The libpq URL (``postgresql://...``), password included: for procrastinate and raw connections."""
        return self._conninfo

    @property
    def sqlalchemy_url(self) -> str:
        """The same URL for SQLAlchemy with psycopg 3, which the migrations (alembic) and optuna's storage take."""
        return "postgresql+psycopg://" + self._conninfo.split("://", 1)[1]

    def describe(self) -> str:
        """The URL with its password hidden, for messages."""
        if "://" not in self._conninfo:
            return self._conninfo
        parts = conninfo_to_dict(self._conninfo)
        if parts.get("password"):
            scheme, rest = self._conninfo.split("://", 1)
            credentials, _, location = rest.rpartition("@")
            user = credentials.split(":", 1)[0]
            return f"{scheme}://{user}:***@{location}"
        return self._conninfo

    def check_reachable(self) -> None:
        try:
            with psycopg.connect(self._conninfo, autocommit=True) as connection:
                connection.execute("SELECT 1")
        except psycopg.OperationalError as error:
            raise DatabaseUnavailableError(
                f"cannot connect to the database at {self.describe()}: {error}. "
                "Check DATABASE_URL, or unset it to use the embedded server."
            ) from error

    # ------------------------------------------------------------------------------------------ connections

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A checked, pooled connection in autocommit mode: each statement commits on its own."""
        with self._checked_pool().connection() as connection:
            yield connection

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection inside one transaction: committed when the block ends, rolled back on any error."""
        with self._checked_pool().connection() as connection, connection.transaction():
            yield connection

    def pool(self, name: str, configure: ConfigureConnection | None = None) -> ConnectionPool:
        """The unchecked autocommit pool called ``name`` (``configure`` runs once per new connection).

        Its connections are not checked on checkout, which saves a round trip on the hot paths; send only
        idempotent work through ``db.pool.run_idempotent``, which retries once on a dead connection.
        """
        with self._lock:
            pool = self._unchecked.get(name)
            if pool is None:
                pool = ConnectionPool(
                    self._conninfo,
                    configure=configure,
                    open=True,
                    name=name,
                    kwargs={"autocommit": True},
                    **_UNCHECKED_POOL_SIZE,
                )
                self._unchecked[name] = pool
            return pool

    @property
    def async_pool(self) -> AsyncConnectionPool | None:
        """The asyncio pool while :meth:`open_async_pool` holds it open (the API's lifespan), else None."""
        return self._async_pool

    @asynccontextmanager
    async def open_async_pool(self, name: str = "api-hot-path") -> AsyncIterator[AsyncConnectionPool]:
        """An asyncio pool of unchecked autocommit connections, open for as long as the block (the app) runs.

        Awaiting psycopg on the event loop instead of handing each request to a worker thread saves ~0.4 ms of
        CPU per request (clickstream session and events POSTs through the ASGI app: 1.47 ms of CPU through a
        thread, 1.07 ms awaited here).
        """
        pool = AsyncConnectionPool(
            self._conninfo, open=False, name=name, kwargs={"autocommit": True}, **_UNCHECKED_POOL_SIZE
        )
        await pool.open()
        self._async_pool = pool
        try:
            yield pool
        finally:
            self._async_pool = None
            await pool.close()

    def fingerprint(self) -> str:
        """A short id of this database, equal in every process connected to the same one.

        ``/health`` reports the API's, so the CLI can tell that a server answering on the configured port serves
        *its* database (and not another data directory's demo) before sending searches there.
        """
        with self.connection() as connection:
            row = connection.execute(_FINGERPRINT).fetchone()
        assert row is not None
        return hashlib.sha256(str(row[0]).encode("utf-8")).hexdigest()[:16]

    def close(self) -> None:
        """Close every pool (tests that swap databases, workers shutting down, ``db stop``)."""
        with self._lock:
            pools = [*self._unchecked.values(), *([self._checked] if self._checked else [])]
            self._unchecked.clear()
            self._checked = None
        for pool in pools:
            pool.close()

    def _checked_pool(self) -> ConnectionPool:
        with self._lock:
            if self._checked is None:
                self._checked = ConnectionPool(
                    self._conninfo,
                    open=True,
                    name="checked",
                    check=ConnectionPool.check_connection,
                    kwargs={"autocommit": True},
                    **_CHECKED_POOL_SIZE,
                )
            return self._checked

    def __repr__(self) -> str:
        return f"Database({self.describe()!r})"


_default: Database | None = None
_default_lock = threading.Lock()


def default_database() -> Database:
    """The process's one ``Database``, built on first use from the settings: for the wiring that hands it down."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Database.from_settings()
        return _default


def close_default_database() -> None:
    """Close and forget the process's ``Database`` (tests that swap databases, forked workers, ``db stop``)."""
    global _default
    with _default_lock:
        database, _default = _default, None
    if database is not None:
        database.close()
