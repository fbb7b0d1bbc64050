"""Routers of the API, one module per resource; ``create_app`` mounts each under /api/v1."""

from fastapi import APIRouter

from embedding_studio.api.routers.clickstream import router as clickstream_router

ROUTERS: list[APIRouter] = []
ROUTERS.append(clickstream_router)
