from embedding_studio.db.database import Database, close_default_database, default_database
from embedding_studio.db.engine import (
    database_fingerprint,
    dispose_engine,
    get_engine,
    libpq_url,
    resolve_database_url,
)
from embedding_studio.db.errors import DatabaseUnavailableError
from embedding_studio.db.migrate import upgrade_database

__all__ = [
    "Database",
    "DatabaseUnavailableError",
    "close_default_database",
    "database_fingerprint",
    "default_database",
    "dispose_engine",
    "get_engine",
    "libpq_url",
    "resolve_database_url",
    "upgrade_database",
]
