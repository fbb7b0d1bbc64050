"""The vector store's own psycopg pool, next to (not through) SQLAlchemy.

Search is the hot path: a pool of autocommit connections with the pgvector type registered once and
``hnsw.ef_search`` set once per connection lets one query answer with one round trip. Bulk writes use
``COPY ... FORMAT BINARY``, which SQLAlchemy does not expose.
"""

from __future__ import annotations

import threading

import psycopg
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool

from embedding_studio.db import get_engine, libpq_url

DEFAULT_EF_SEARCH = 100

_pools: dict[str, ConnectionPool] = {}
_lock = threading.Lock()


def _configure(connection: psycopg.Connection) -> None:
    register_vector(connection)
    connection.execute(f"SET hnsw.ef_search = {DEFAULT_EF_SEARCH}")


def current_conninfo() -> str:
    """The libpq URL of the database the rest of the process uses (resolved once by ``get_engine``)."""
    return libpq_url(get_engine().url.render_as_string(hide_password=False))


def get_pool() -> ConnectionPool:
    conninfo = current_conninfo()
    with _lock:
        pool = _pools.get(conninfo)
        if pool is None:
            pool = ConnectionPool(
                conninfo,
                min_size=1,
                max_size=16,
                kwargs={"autocommit": True},
                configure=_configure,
                open=True,
                name="vectordb",
            )
            _pools[conninfo] = pool
        return pool


def close_pools() -> None:
    """Close every pool (tests that swap databases, workers shutting down)."""
    with _lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()
