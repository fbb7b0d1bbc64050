"""Routers of the API, one module per resource; ``create_app`` mounts each under /api/v1."""

from fastapi import APIRouter

ROUTERS: list[APIRouter] = []
