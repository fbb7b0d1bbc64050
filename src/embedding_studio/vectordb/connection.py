"""The vector store's connections: the ``"vectordb"`` pool of the :class:`~embedding_studio.db.Database` it is handed.

Search is the hot path: an unchecked pool of autocommit connections (``Database.pool``) with the pgvector type
registered once and ``hnsw.ef_search`` set once per connection lets one query answer with one round trip. Bulk
writes use ``COPY ... FORMAT BINARY`` on the same connections.
"""

from __future__ import annotations

from typing import Any

import psycopg
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool

from embedding_studio.db import Database
from embedding_studio.vectordb import queries

DEFAULT_EF_SEARCH = 100
POOL_NAME = "vectordb"

__all__ = ["DEFAULT_EF_SEARCH", "POOL_NAME", "vectordb_pool"]


def _configure(connection: psycopg.Connection[Any]) -> None:
    register_vector(connection)
    connection.execute(queries.with_literals(queries.SET_EF_SEARCH, ef_search=DEFAULT_EF_SEARCH))


def vectordb_pool(database: Database) -> ConnectionPool:
    """The database's ``"vectordb"`` pool: pgvector's type registered and ``hnsw.ef_search`` set on each connection."""
    return database.pool(POOL_NAME, configure=_configure)
