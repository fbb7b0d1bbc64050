"""What the routes depend on, as ``Annotated`` aliases (the FastAPI full-stack template's ``api/deps.py``).

A route names what it needs in its signature (``pool: HotPathPool``, ``search: Searcher``) instead of reaching
for ``request.app.state`` or a module global, so each route stays thin and a test can replace a dependency with
``app.dependency_overrides[...]``. Every provider here is ``async`` though none awaits: FastAPI runs a sync
dependency on the thread pool, which would cost each request a hop on the search and clickstream hot paths.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, status
from psycopg_pool import AsyncConnectionPool

from embedding_studio.config import Settings, get_settings
from embedding_studio.serving.search import SearchAnswer, search_blue


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


async def hot_path_pool(request: Request) -> AsyncConnectionPool | None:
    """The app's asyncio pool (opened by its lifespan); None in an app run without one, which takes threads."""
    return getattr(request.app.state, "hot_path_pool", None)


HotPathPool = Annotated[AsyncConnectionPool | None, Depends(hot_path_pool)]

#: Search on the blue model with the process's model cache (``serving.search.search_blue``'s signature).
SearchFunction = Callable[..., SearchAnswer]


async def searcher() -> SearchFunction:
    """Search on the blue model: the model cache of this process, the blue pointer read per request."""
    return search_blue


Searcher = Annotated[SearchFunction, Depends(searcher)]

#: Task ids are 32 hex characters; the bound only keeps absurd paths out of the database query.
TaskId = Annotated[str, Path(min_length=1, max_length=100, description="A task id, as answered when it was created.")]
