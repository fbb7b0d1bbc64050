"""The vector store's own psycopg pool, next to (not through) SQLAlchemy.

Search is the hot path: a pool of autocommit connections with the pgvector type registered once and
``hnsw.ef_search`` set once per connection lets one query answer with one round trip. Bulk writes use
``COPY ... FORMAT BINARY``, which SQLAlchemy does not expose.
"""

from __future__ import annotations

import psycopg
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool

from embedding_studio.db.pool import autocommit_pool, close_autocommit_pools, current_conninfo

DEFAULT_EF_SEARCH = 100

__all__ = ["DEFAULT_EF_SEARCH", "close_pools", "current_conninfo", "get_pool"]


def _configure(connection: psycopg.Connection) -> None:
    register_vector(connection)
    connection.execute(f"SET hnsw.ef_search = {DEFAULT_EF_SEARCH}")


def get_pool() -> ConnectionPool:
    return autocommit_pool("vectordb", configure=_configure)


def close_pools() -> None:
    """Close every pool (tests that swap databases, workers shutting down)."""
    close_autocommit_pools()
