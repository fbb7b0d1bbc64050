"""The one engine and the one session factory of the process.

Every package reaches PostgreSQL through :func:`get_engine` / :func:`session_scope`, so the URL
is resolved in one place: ``DATABASE_URL`` when set, otherwise the embedded server.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from threading import Lock

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from embedding_studio.config import Settings, get_settings
from embedding_studio.db.embedded import start_embedded_postgres
from embedding_studio.db.errors import DatabaseUnavailableError


class Base(DeclarativeBase):
    """Declarative base shared by the tables of every package."""


_engine: Engine | None = None
_session_factory: sessionmaker[Session] | None = None
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
    global _engine, _session_factory
    with _lock:
        if _engine is None:
            url = resolve_database_url()
            engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
            try:
                with engine.connect() as connection:
                    connection.execute(text("select 1"))
            except OperationalError as error:
                engine.dispose()
                raise DatabaseUnavailableError(
                    f"cannot connect to the database at {engine.url.render_as_string(hide_password=True)}: "
                    f"{error.orig}. Check DATABASE_URL, or unset it to use the embedded server."
                ) from error
            _engine = engine
            _session_factory = sessionmaker(bind=_engine, expire_on_commit=False)
        return _engine


def get_session_factory() -> sessionmaker[Session]:
    get_engine()
    assert _session_factory is not None
    return _session_factory


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits when the block ends and rolls back on any exception."""
    session = get_session_factory()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_engine() -> None:
    """Close every pooled connection and forget the engine (tests, forked workers)."""
    global _engine, _session_factory
    with _lock:
        if _engine is not None:
            _engine.dispose()
        _engine = None
        _session_factory = None


_FINGERPRINT_SQL = text(
    "SELECT pg_postmaster_start_time()::text || '|' || current_database() || '|' || "
    "(SELECT oid FROM pg_database WHERE datname = current_database())::text"
)


def database_fingerprint() -> str:
    """A short id of the database this process talks to, equal in every process connected to the same one.

    ``/health`` reports the API's, so the CLI can tell that a server answering on the configured port serves
    *its* database (and not another data directory's demo) before sending searches there. Built from the
    server's start time and the database's name and oid: readable by any role, unique in practice.
    """
    import hashlib

    with get_engine().connect() as connection:
        identity = connection.execute(_FINGERPRINT_SQL).scalar_one()
    return hashlib.sha256(str(identity).encode("utf-8")).hexdigest()[:16]
