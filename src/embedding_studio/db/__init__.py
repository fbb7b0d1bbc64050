from embedding_studio.db.engine import (
    Base,
    database_fingerprint,
    dispose_engine,
    get_engine,
    get_session_factory,
    libpq_url,
    resolve_database_url,
    session_scope,
)
from embedding_studio.db.errors import DatabaseUnavailableError
from embedding_studio.db.migrate import upgrade_database

__all__ = [
    "Base",
    "DatabaseUnavailableError",
    "database_fingerprint",
    "dispose_engine",
    "get_engine",
    "get_session_factory",
    "libpq_url",
    "resolve_database_url",
    "session_scope",
    "upgrade_database",
]
