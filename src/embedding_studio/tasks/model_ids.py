"""A shortened model id completed from the models this installation knows: the indexed ones and the
fine-tuning tasks' best runs.

It stays in ``tasks`` (not beside the model cache in ``serving``) because the candidates come from the task
table: ``serving`` sits below ``tasks`` and reads no task.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from embedding_studio.tasks.errors import AmbiguousIdError

if TYPE_CHECKING:
    from embedding_studio.tasks.repository import TaskRepository
    from embedding_studio.vectordb import VectorStore

_RUN_ID_PREFIX = re.compile(r"^[0-9a-f]{4,31}$")


def resolve_model_id(tasks: TaskRepository, store: VectorStore, id_or_prefix: str) -> str:
    """The model an id names, where a shortened MLflow run id is completed from the runs Embedding Studio knows.

    Run ids are 32 hex characters that people copy from ``models list`` or ``--follow`` and shorten, as with
    git; they are completed from the indexed models and the fine-tuning tasks' best runs. Names and paths
    are never completed: "all" must not quietly become all-MiniLM-L6-v2. An ambiguous prefix is refused.
    """
    if not _RUN_ID_PREFIX.match(id_or_prefix) or Path(id_or_prefix).expanduser().exists():
        return id_or_prefix
    candidates = {record.id for record in store.list_models() if record.id.startswith(id_or_prefix)}
    candidates.update(tasks.best_run_ids_starting_with(id_or_prefix))
    if len(candidates) > 1:
        raise AmbiguousIdError("model", id_or_prefix, sorted(candidates))
    return candidates.pop() if candidates else id_or_prefix
