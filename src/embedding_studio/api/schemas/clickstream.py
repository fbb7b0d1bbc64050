"""Bodies and answers of the clickstream endpoints.

Session and event bodies are the clickstream package's own edge models, so the API, the bulk
endpoint and the file importers accept and reject exactly the same records.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from embedding_studio.clickstream.records import EventRecord, SessionBody, SessionRecord

MAX_BULK_RECORDS = 10_000
MAX_EVENTS_PER_REQUEST = 1_000

__all__ = [
    "BatchOut",
    "BulkIn",
    "BulkOut",
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
    events: list[EventRecord] = Field(max_length=MAX_EVENTS_PER_REQUEST)


class EventsOut(BaseModel):
    session_id: str
    inserted: int = Field(description="Events stored now; repeated event ids are ignored.")


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
