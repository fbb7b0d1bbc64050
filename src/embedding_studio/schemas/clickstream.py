"""Bodies and answers of the clickstream endpoints.

Session and event bodies are the edge models of ``schemas.records``, so the API, the bulk endpoint, the file
importers and the Python client accept and reject exactly the same records.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

from embedding_studio.schemas.records import (
    EventRecord,
    SessionBody,
    SessionRecord,
    describe_repeated_events,
    distinct_events,
)

MAX_BULK_RECORDS = 10_000
MAX_EVENTS_PER_REQUEST = 1_000

__all__ = [
    "MAX_BULK_RECORDS",
    "MAX_EVENTS_PER_REQUEST",
    "BatchOut",
    "BulkIn",
    "BulkOut",
    "EventOut",
    "EventRecord",
    "EventsIn",
    "EventsOut",
    "IrrelevantOut",
    "RejectedRecordOut",
    "ReleaseOut",
    "SessionBody",
    "SessionCreatedOut",
    "SessionOut",
    "SessionRecord",
]


class SessionCreatedOut(BaseModel):
    session_id: str
    batch_id: int
    created: bool = Field(description="False when the same session had been stored before (nothing duplicated).")


class EventsIn(BaseModel):
    events: list[EventRecord] = Field(
        max_length=MAX_EVENTS_PER_REQUEST,
        description="Event ids are unique within their session: an id sent again with the same body is a "
        "repeat (ignored), with a different body the request is refused (409).",
    )

    @field_validator("events")
    @classmethod
    def _event_ids_name_one_event_each(cls, events: list[EventRecord]) -> list[EventRecord]:
        distinct, conflicts = distinct_events(events)
        if conflicts:
            raise ValueError(describe_repeated_events(conflicts))
        return distinct


class EventsOut(BaseModel):
    session_id: str
    inserted: int = Field(
        description="Events stored now; event ids already stored in the session with the same body "
        "are repeats and not counted."
    )


class IrrelevantOut(BaseModel):
    session_id: str
    is_irrelevant: bool


class EventOut(BaseModel):
    event_id: str
    item_id: str
    event_type: str
    created_at: datetime
    payload: dict[str, Any] | None = None


class SessionOut(BaseModel):
    session_id: str
    batch_id: int
    query: str | dict[str, Any]
    results: list[str]
    user_id: str | None
    is_irrelevant: bool
    created_at: datetime
    payload: dict[str, Any] | None = None
    rank_offset: int = Field(
        description="Results ranked above the first shown one: results[i] was at rank rank_offset + i + 1."
    )
    events: list[EventOut]


class BulkIn(BaseModel):
    """Records are checked one by one (not by this model), so a bad record is rejected alone."""

    sessions: list[Any] = Field(max_length=MAX_BULK_RECORDS)


class RejectedRecordOut(BaseModel):
    index: int = Field(description="Position of the record in the request's `sessions` list.")
    session_id: str | None
    reason: str


class BulkOut(BaseModel):
    inserted: int
    duplicates: int
    events_inserted: int
    rejected: list[RejectedRecordOut]


class ReleaseOut(BaseModel):
    released_batch_id: int
    session_count: int
    next_batch_id: int


class BatchOut(BaseModel):
    id: int
    status: str
    created_at: datetime
    released_at: datetime | None
    session_count: int
