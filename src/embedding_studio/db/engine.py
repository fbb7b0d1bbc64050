"""Where the database URL is resolved, and the SQLAlchemy engine the migrations run on.

Queries go through :class:`embedding_studio.db.database.Database` (psycopg 3). SQLAlchemy stays for Alembic, which
migrates on a SQLAlchemy connection, and for the tools that take a SQLAlchemy URL (optuna's storage); the engine is
built from the default ``Database``'s URL, so both talk to the one database the settings name: ``DATABASE_URL``
when set, otherwise the embedded server.
"""

from __future__ import annotations

from threading import Lock

from sqlalchemy import Engine, create_engine

from embedding_studio.config import Settings, get_settings
from embedding_studio.db.embedded import start_embedded_postgres

_engine: Engine | None = None
_lock = Lock()


def normalize_database_url(url: str) -> str:
    """Make a plain ``postgresql://`` URL use psycopg 3, the driver the project ships with."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def resolve_database_url(settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    if settings.database_url:
        return normalize_database_url(settings.database_url)
    return start_embedded_postgres(settings.embedded_pg_dir)


def libpq_url(sqlalchemy_url: str) -> str:
    """The same URL in the form psycopg/libpq accept (for procrastinate and raw connections)."""
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


def get_engine() -> Engine:
    """The SQLAlchemy engine on the default database: migration tooling, not a query path."""
    from embedding_studio.db.database import default_database

    global _engine
    database = default_database()  # outside the lock: it takes its own, and may start the embedded server
    with _lock:
        if _engine is None:
            _engine = create_engine(database.sqlalchemy_url, pool_pre_ping=True, pool_size=10, max_overflow=20)
        return _engine


def dispose_engine() -> None:
    """Close every pooled connection and forget the engine and the default database (tests, forked workers)."""
    from embedding_studio.db.database import close_default_database

    global _engine
    with _lock:
        if _engine is not None:
            _engine.dispose()
        _engine = None
    close_default_database()


def database_fingerprint() -> str:
    """A short id of the database this process talks to (``Database.fingerprint`` of the default one)."""
    from embedding_studio.db.database import default_database

    return default_database().fingerprint()
