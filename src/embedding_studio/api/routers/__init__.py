"""Routers of the API, one module per resource; ``create_app`` mounts each under /api/v1."""

from fastapi import APIRouter

from embedding_studio.api.routers.clickstream import router as clickstream_router
from embedding_studio.api.routers.fine_tuning import router as fine_tuning_router
from embedding_studio.api.routers.items import router as items_router
from embedding_studio.api.routers.models import router as models_router
from embedding_studio.api.routers.reindex import router as reindex_router
from embedding_studio.api.routers.search import router as search_router

ROUTERS: list[APIRouter] = []
ROUTERS.append(clickstream_router)
ROUTERS.append(fine_tuning_router)
ROUTERS.append(reindex_router)
ROUTERS.append(models_router)
ROUTERS.append(items_router)
ROUTERS.append(search_router)
