"""What the routes depend on, as ``Annotated`` aliases (the FastAPI full-stack template's ``api/deps.py``).

A route names what it needs in its signature (``clickstream: Clickstream``, ``store: Vectors``, ``search: Searcher``)
instead of reaching for ``request.app.state`` or a module global, so each route stays thin and a test can replace a
dependency with ``app.dependency_overrides[...]``. Every provider here is ``async`` though none awaits: FastAPI runs
a sync dependency on the thread pool, which would cost each request a hop on the search and clickstream hot paths.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, status

from embedding_studio.clickstream.dao import ClickstreamRepository
from embedding_studio.config import Settings, get_settings
from embedding_studio.db import Database, default_database
from embedding_studio.serving.search import SearchAnswer, search_blue
from embedding_studio.tasks.repository import TaskRepository
from embedding_studio.vectordb import VectorStore


async def current_settings() -> Settings:
    """The process's one settings object (``config.get_settings``)."""
    return get_settings()


SettingsDep = Annotated[Settings, Depends(current_settings)]


async def require_api_key(request: Request, settings: SettingsDep) -> None:
    """Once any API key is configured, every route but /health needs one (``Authorization: Bearer <key>``)."""
    keys = settings.api_keys
    if not keys:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not any(secrets.compare_digest(token, key) for key in keys):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="invalid API key",
            headers={"WWW-Authenticate": "Bearer"},
        )


#: Mounted on every router by ``create_app``; a route that needs the check alone can name it too.
ApiKey = Annotated[None, Depends(require_api_key)]


async def app_database(request: Request) -> Database:
    """The app's ``Database`` (its lifespan sets it and opens its asyncio pool); the process's default one in an
    app run without the lifespan."""
    database = getattr(request.app.state, "database", None)
    return database if database is not None else default_database()


DatabaseDep = Annotated[Database, Depends(app_database)]


async def clickstream_repository(request: Request) -> ClickstreamRepository:
    """The clickstream tables on the app's database (built once by the lifespan, so a request builds nothing)."""
    repository = getattr(request.app.state, "clickstream", None)
    return repository if repository is not None else ClickstreamRepository(default_database())


Clickstream = Annotated[ClickstreamRepository, Depends(clickstream_repository)]


async def task_repository(request: Request) -> TaskRepository:
    """The task table on the app's database (built once by the lifespan, so a request builds nothing)."""
    repository = getattr(request.app.state, "tasks", None)
    return repository if repository is not None else TaskRepository(default_database())


Tasks = Annotated[TaskRepository, Depends(task_repository)]


async def vector_store(request: Request) -> VectorStore:
    """The vector store on the app's database (built once by the lifespan, so a request builds nothing)."""
    store = getattr(request.app.state, "vectors", None)
    return store if store is not None else VectorStore(default_database())


Vectors = Annotated[VectorStore, Depends(vector_store)]

#: Search on the blue model with the process's model cache (``serving.search.search_blue``'s signature, less the
#: store, which the searcher already holds).
SearchFunction = Callable[..., SearchAnswer]


async def searcher(store: Vectors) -> SearchFunction:
    """Search on the blue model in the app's vector store: the model cache of this process, the blue pointer read
    per request."""
    return functools.partial(search_blue, store=store)


Searcher = Annotated[SearchFunction, Depends(searcher)]

#: Task ids are 32 hex characters; the bound only keeps absurd paths out of the database query.
TaskId = Annotated[str, Path(min_length=1, max_length=100, description="A task id, as answered when it was created.")]
