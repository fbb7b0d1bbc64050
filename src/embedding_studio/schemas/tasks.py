"""Bodies and answers of the fine-tuning, reindex, models, items and search endpoints, and the task kinds and
statuses they carry.

Data only (pydantic): the server builds the answers from its tasks in ``api.schemas.tasks``, the Python client
parses them with these same models.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from embedding_studio.schemas.params import FineTuningTaskParams, ReindexTaskParams, UpsertItem, UpsertTaskParams
from embedding_studio.schemas.records import MAX_ID_LENGTH, NO_NUL, Count, TextQuery

MAX_ITEMS_PER_REQUEST = 10_000
MAX_AHEAD_SHOWN = 50


class TaskStatus(StrEnum):
    pending = "pending"
    processing = "processing"
    done = "done"
    failed = "failed"
    canceled = "canceled"
    refused = "refused"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({TaskStatus.done, TaskStatus.failed, TaskStatus.canceled, TaskStatus.refused})


class TaskKind(StrEnum):
    fine_tuning = "fine_tuning"
    reindex = "reindex"
    upsert = "upsert"


class FineTuningTaskIn(FineTuningTaskParams):
    idempotency_key: str | None = Field(
        default=None, min_length=1, max_length=200, description="The same key gives the same task back."
    )

    def params(self) -> FineTuningTaskParams:
        return FineTuningTaskParams.model_validate(self.model_dump(exclude={"idempotency_key"}))


class ReindexTaskIn(ReindexTaskParams):
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)

    def params(self) -> ReindexTaskParams:
        return ReindexTaskParams.model_validate(self.model_dump(exclude={"idempotency_key"}))


class TaskCreatedOut(BaseModel):
    id: str
    status: str
    error: str | None = None


class DeploymentOut(BaseModel):
    """The deployment gate's verdict on a fine-tuning task sent with ``deploy_as_blue`` (also in
    ``result.deployment``)."""

    deployed: bool = Field(description="Whether the best model is being deployed (see result.reindex_task_id).")
    reason: str = Field(
        description='Why, e.g. "not deployed: NDCG@10 0.4100 against blue 0.4300" or "deployed: no blue model to '
        'compare with".'
    )
    metric: str | None = Field(default=None, description="The method's main metric the models were compared by.")
    candidate: float | None = Field(default=None, description="The best model's figure on the held-out sessions.")
    blue: float | None = Field(default=None, description="The blue model's figure on the same sessions.")
    blue_model_id: str | None = Field(default=None, description="The blue model compared with.")
    min_gain: float = Field(default=0.0, description="The min_deploy_gain the task was sent with.")
    forced: bool = Field(default=False, description="The force_deploy the task was sent with.")


class QueuedTaskOut(BaseModel):
    id: str
    kind: str = Field(description="fine_tuning, reindex or upsert.")
    queue: str
    status: str = Field(description="running, or waiting (ahead of this task).")


class QueuePositionOut(BaseModel):
    """Where a pending task waits: why it has not started yet."""

    queue: str = Field(description="The queue its job waits in: fine_tuning, reindex or upsert.")
    position: int = Field(ge=1, description="Its place in that queue; 1: the next job a worker of the queue takes.")
    ahead: list[QueuedTaskOut] = Field(
        description="Tasks a worker runs first: the running ones of every queue, then those waiting before it "
        "(other queues' too: a worker takes every queue by default, one job at a time), at most 50."
    )
    ahead_count: int = Field(ge=0, description="How many tasks run first in all (ahead may list fewer).")
    summary: str = Field(
        description='One line, e.g. "waiting: 2nd in the reindex queue, after fine_tuning task '
        '… (running, fine_tuning queue), reindex task … (waiting)".'
    )


class TaskOut(BaseModel):
    id: str
    kind: str
    status: str
    params: dict[str, Any]
    parent_id: str | None
    best_run_id: str | None
    best_model_url: str | None
    error: str | None
    progress: float
    progress_message: str | None
    result: dict[str, Any] | None
    deployment: DeploymentOut | None = Field(
        default=None, description="Fine-tuning with deploy_as_blue, once done: deployed or not, and why."
    )
    queue: QueuePositionOut | None = Field(
        default=None, description="A pending task whose job waits in the queue: its place and what runs first."
    )
    idempotency_key: str | None
    cancel_requested: bool
    attempts: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class TaskListOut(BaseModel):
    tasks: list[TaskOut]


class ModelOut(BaseModel):
    id: str
    dim: int
    source: str
    state: str | None = Field(description="Collection state: building, ready, blue or retired.")
    is_blue: bool
    is_previous_blue: bool = Field(description="The model a rollback of the blue one goes back to.")
    item_count: int
    created_at: datetime
    trained_batch_ids: list[int] | None = Field(
        default=None,
        description="The clickstream batches the fine-tuning that made this model trained on (what since_blue "
        "counts from); null for a model no fine-tuning task made (a base model, a local directory).",
    )


class ModelListOut(BaseModel):
    blue_model_id: str | None
    previous_blue_model_id: str | None
    models: list[ModelOut]


class UpsertIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[UpsertItem] = Field(min_length=1, max_length=MAX_ITEMS_PER_REQUEST)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)

    def params(self) -> UpsertTaskParams:
        return UpsertTaskParams(upserts=self.items)


class DeleteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_ids: list[str] = Field(min_length=1, max_length=MAX_ITEMS_PER_REQUEST)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)

    def params(self) -> UpsertTaskParams:
        return UpsertTaskParams(deletes=self.item_ids)


class SearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The search is recorded as a session, so the query and user id obey the session's rules.
    query: TextQuery = Field(max_length=10_000, description="What the user searched for (not blank).")
    limit: Count = Field(default=10, ge=1, le=1000)
    offset: Count = Field(default=0, ge=0, le=10_000)
    user_id: str | None = Field(default=None, max_length=MAX_ID_LENGTH, pattern=NO_NUL)
    record: bool = Field(
        default=True,
        strict=True,  # the document says boolean: 0 or "no" is refused, not read as false
        description="Record the search as a clickstream session. False for a search no user is shown (a person "
        "trying a query from the CLI, a test): nothing is recorded and session_id is null.",
    )


class SearchResultOut(BaseModel):
    item_id: str
    score: float
    payload: dict[str, Any] | None = Field(
        default=None,
        description="What to show for the item: its title and a snippet of its text (as indexed), the fields the "
        "collection names for display, and the payload it was upserted with; null when there is none.",
        examples=[{"title": "Magpul FMG-9", "snippet": "The Magpul FMG-9 is a prototype for a new generation …"}],
    )


class SearchOut(BaseModel):
    session_id: str | None = Field(
        description="Report clicks on this session (POST /api/v1/clickstream/sessions/{id}/events); null when the "
        "search was not recorded (record=false)."
    )
    model_id: str
    results: list[SearchResultOut]
