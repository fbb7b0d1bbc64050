"""The FastAPI application: every HTTP route of Embedding Studio, OpenAPI at /docs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import text

from embedding_studio.api.auth import require_api_key
from embedding_studio.config import get_settings
from embedding_studio.db import get_engine, upgrade_database
from embedding_studio.db.pool import open_async_autocommit_pool
from embedding_studio.models.device import limit_cpu_threads

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


def _validation_reasons(error: RequestValidationError) -> list[dict[str, object]]:
    reasons = []
    for item in error.errors():
        location = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        reasons.append({"field": location or "body", "reason": item.get("msg", "invalid")})
    return reasons


def create_app(run_migrations: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if run_migrations:
            upgrade_database()
        limit_cpu_threads(get_settings().search_cpu_threads)
        # The clickstream's inserts await psycopg on the event loop (see db.pool) rather than take a thread.
        async with open_async_autocommit_pool("api-hot-path") as pool:
            app.state.hot_path_pool = pool
            try:
                yield
            finally:
                app.state.hot_path_pool = None

    app = FastAPI(
        title="Embedding Studio",
        version="0.1.0",
        description="Clickstream in, a better embedding model in production out.",
        lifespan=lifespan,
    )

    @app.exception_handler(RequestValidationError)
    async def validation_handler(_: Request, error: RequestValidationError) -> JSONResponse:
        reasons = _validation_reasons(error)
        malformed = any(item.get("type") == "json_invalid" for item in error.errors())
        detail = "malformed JSON body" if malformed else "invalid request"
        return JSONResponse(status_code=422, content={"detail": detail, "errors": reasons})

    @app.get("/health", tags=["health"])
    def health() -> dict[str, str]:
        with get_engine().connect() as connection:
            connection.execute(text("select 1"))
        return {"status": "ok", "database": "ok"}

    from embedding_studio.api.routers import ROUTERS

    for router in ROUTERS:
        app.include_router(router, prefix=API_PREFIX, dependencies=[Depends(require_api_key)])
    return app
