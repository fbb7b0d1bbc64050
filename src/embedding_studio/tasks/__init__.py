"""Tasks: the task table, the procrastinate queue, and the workers that run fine-tuning, reindex and upserts."""

from embedding_studio.tasks.errors import (
    AmbiguousIdError,
    IdempotencyConflictError,
    TaskCanceledError,
    TaskError,
    TaskStateError,
    UnknownModelError,
    UnknownTaskError,
)
from embedding_studio.tasks.models import check_model_exists, forget_models, resolve_model
from embedding_studio.tasks.params import FineTuningTaskParams, LoaderSpec, ReindexTaskParams, UpsertTaskParams
from embedding_studio.tasks.reindex import ReindexResult, index_catalog, run_reindex
from embedding_studio.tasks.types import ALL_QUEUES, Task, TaskKind, TaskStatus
from embedding_studio.tasks.workers import fine_tuning_worker, reindex_worker, upsert_worker

__all__ = [
    "ALL_QUEUES",
    "AmbiguousIdError",
    "FineTuningTaskParams",
    "IdempotencyConflictError",
    "LoaderSpec",
    "ReindexResult",
    "ReindexTaskParams",
    "Task",
    "TaskCanceledError",
    "TaskError",
    "TaskKind",
    "TaskStateError",
    "TaskStatus",
    "UnknownModelError",
    "UnknownTaskError",
    "UpsertTaskParams",
    "check_model_exists",
    "fine_tuning_worker",
    "forget_models",
    "index_catalog",
    "reindex_worker",
    "resolve_model",
    "run_reindex",
    "upsert_worker",
]
