"""The FastAPI application: every HTTP route of Embedding Studio, OpenAPI at /docs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field

from embedding_studio.api.deps import require_api_key
from embedding_studio.api.errors import install_error_handlers
from embedding_studio.api.schemas.errors import UNAUTHORIZED, error_responses
from embedding_studio.clickstream.dao import ClickstreamRepository
from embedding_studio.config import get_settings
from embedding_studio.db import default_database, upgrade_database
from embedding_studio.models.device import limit_cpu_threads
from embedding_studio.tasks.repository import TaskRepository
from embedding_studio.vectordb import VectorStore

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


class HealthOut(BaseModel):
    status: str
    database: str
    database_id: str | None = Field(
        default=None,
        description="A short id of the database this server uses: the CLI sends searches here only when its own "
        "database has the same id.",
    )


def create_app(run_migrations: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if run_migrations:
            upgrade_database()
        limit_cpu_threads(get_settings().search_cpu_threads)
        # The one Database of the process, handed to the repositories and the vector store the routes depend on
        # (api.deps); the clickstream's inserts await psycopg on its asyncio pool rather than take a thread.
        database = default_database()
        async with database.open_async_pool("api-hot-path"):
            app.state.database = database
            app.state.clickstream = ClickstreamRepository(database)
            app.state.tasks = TaskRepository(database)
            app.state.vectors = VectorStore(database)
            try:
                yield
            finally:
                app.state.database = None
                app.state.clickstream = None
                app.state.tasks = None
                app.state.vectors = None

    app = FastAPI(
        title="Embedding Studio",
        version="0.1.0",
        description="Clickstream in, a better embedding model in production out.",
        lifespan=lifespan,
    )

    install_error_handlers(app)

    @app.get("/health", tags=["health"], response_model=HealthOut)
    def health() -> dict[str, str]:
        database = getattr(app.state, "database", None) or default_database()
        return {"status": "ok", "database": "ok", "database_id": database.fingerprint()}

    from embedding_studio.api.routers import ROUTERS

    for router in ROUTERS:
        app.include_router(
            router,
            prefix=API_PREFIX,
            dependencies=[Depends(require_api_key)],
            responses=error_responses({401: UNAUTHORIZED}),
        )
    return app
