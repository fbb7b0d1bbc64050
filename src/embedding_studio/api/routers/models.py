"""Models that have collections, the blue one marked, and rollback of the blue model."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status

from embedding_studio.api.deps import Tasks, Vectors
from embedding_studio.api.schemas.errors import INVALID_REQUEST, error_responses
from embedding_studio.api.schemas.tasks import ModelListOut, ModelOut
from embedding_studio.tasks.repository import TaskRepository
from embedding_studio.vectordb import VectorStore

router = APIRouter(prefix="/models", tags=["models"])

ModelId = Annotated[
    str,
    Path(min_length=1, max_length=1000, description="The blue model's id, as GET /models lists it (may contain '/')."),
]


def _models(tasks: TaskRepository, store: VectorStore) -> ModelListOut:
    deployment = store.get_deployment()
    return ModelListOut(
        blue_model_id=deployment.blue_model_id,
        previous_blue_model_id=deployment.previous_blue_model_id,
        models=[
            ModelOut(
                id=record.id,
                dim=record.dim,
                source=record.source,
                state=record.collection_state,
                is_blue=record.is_blue,
                is_previous_blue=record.is_previous_blue,
                item_count=record.item_count,
                created_at=record.created_at,
                trained_batch_ids=tasks.trained_batch_ids(record.id),
            )
            for record in store.list_models()
        ],
    )


@router.get("", response_model=ModelListOut)
def list_models(tasks: Tasks, store: Vectors) -> ModelListOut:
    return _models(tasks, store)


@router.post(
    "/{model_id:path}/rollback",
    response_model=ModelListOut,
    responses=error_responses(
        {
            404: "No collection was ever built with this model.",
            409: "The model is not the blue one, or there is no previous blue model to go back to.",
            422: INVALID_REQUEST,
        }
    ),
)
def rollback_model(model_id: ModelId, tasks: Tasks, store: Vectors) -> ModelListOut:
    """Roll the blue model ``model_id`` back: search flips to the previous blue model in one transaction."""
    if store.get_model_record(model_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"model {model_id!r} has never been indexed")
    store.rollback(from_model_id=model_id)  # RollbackUnavailableError: 409 (api.errors)
    return _models(tasks, store)
