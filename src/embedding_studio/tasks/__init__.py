"""Tasks: the task table, the procrastinate queue, and the workers that run fine-tuning, reindex and upserts.

Models are loaded through ``embedding_studio.serving`` (the model cache search uses too)."""

from embedding_studio.tasks.errors import (
    AmbiguousIdError,
    IdempotencyConflictError,
    TaskCanceledError,
    TaskError,
    TaskStateError,
    UnknownTaskError,
)
from embedding_studio.tasks.params import FineTuningTaskParams, LoaderSpec, ReindexTaskParams, UpsertTaskParams
from embedding_studio.tasks.reindex import ReindexResult, index_catalog, run_reindex
from embedding_studio.tasks.repository import TaskRepository
from embedding_studio.tasks.types import ALL_QUEUES, Task, TaskKind, TaskStatus
from embedding_studio.tasks.workers import TaskWorkers

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
    "TaskRepository",
    "TaskStateError",
    "TaskStatus",
    "TaskWorkers",
    "UnknownTaskError",
    "UpsertTaskParams",
    "index_catalog",
    "run_reindex",
]
