"""Plain data the clickstream hands to the rest of the system."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class ClickstreamEvent:
    event_id: str
    session_id: str
    item_id: str
    event_type: str
    created_at: datetime
    payload: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> ClickstreamEvent:
        """The event of a row with ``clickstream.queries.EVENT_COLUMNS``."""
        event_id, session_id, item_id, event_type, created_at, payload = row
        return cls(event_id, session_id, item_id, event_type, created_at, payload)


@dataclass(frozen=True)
class ClickstreamSession:
    """One search: the query, what was shown in order, and what the user did with it."""

    session_id: str
    batch_id: int
    query: str | dict[str, Any]
    results: list[str]
    user_id: str | None
    is_irrelevant: bool
    created_at: datetime
    payload: dict[str, Any] | None = None
    events: list[ClickstreamEvent] = field(default_factory=list)
    #: Results ranked above the first shown one (a later page of a search): ``results[i]`` was shown at
    #: rank ``rank_offset + i + 1``. Position bias is estimated from those true ranks.
    rank_offset: int = 0

    @classmethod
    def from_row(cls, row: Sequence[Any], events: list[ClickstreamEvent] | None = None) -> ClickstreamSession:
        """The session of a row with ``clickstream.queries.SESSION_COLUMNS`` (events are read apart)."""
        session_id, batch_id, query, results, user_id, is_irrelevant, created_at, payload, rank_offset = row
        return cls(
            session_id=session_id,
            batch_id=batch_id,
            query=query,
            results=list(results),
            user_id=user_id,
            is_irrelevant=is_irrelevant,
            created_at=created_at,
            payload=payload,
            events=events if events is not None else [],
            rank_offset=rank_offset,
        )


@dataclass(frozen=True)
class ClickstreamBatch:
    id: int
    status: str  # "collecting" | "released"
    created_at: datetime
    released_at: datetime | None
    session_count: int = 0

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> ClickstreamBatch:
        """The batch of a row of ``clickstream.queries.SELECT_BATCHES_WITH_COUNT``."""
        batch_id, status, created_at, released_at, session_count = row
        return cls(batch_id, status, created_at, released_at, session_count)


@dataclass(frozen=True)
class FineTuningInput:
    """A session as fine-tuning sees it: query, shown results with 1-based ranks, clicked ids.

    ``ranks[item_id]`` is the rank the item was shown at (its page's offset included, so a second
    page of 10 starts at 11, not 1); ``events`` holds the ids of clicked
    items (each once); ``is_irrelevant`` marks a session the user flagged as having no good result.
    """

    session_id: str
    query: str | dict[str, Any]
    results: list[str]
    ranks: dict[str, int]
    events: list[str]
    is_irrelevant: bool = False
    timestamp: datetime | None = None

    @property
    def not_events(self) -> list[str]:
        clicked = set(self.events)
        return [item_id for item_id in self.results if item_id not in clicked]


@dataclass(frozen=True)
class RejectedRecord:
    """A record of a bulk request or import file that was not stored, and why."""

    index: int
    session_id: str | None
    reason: str


@dataclass
class BulkResult:
    inserted: int = 0
    duplicates: int = 0
    events_inserted: int = 0
    rejected: list[RejectedRecord] = field(default_factory=list)

    def merge(self, other: BulkResult, index_offset: int = 0) -> None:
        """Add up the result of a later chunk; its record indexes are shifted to whole-file positions."""
        self.inserted += other.inserted
        self.duplicates += other.duplicates
        self.events_inserted += other.events_inserted
        self.rejected.extend(
            RejectedRecord(record.index + index_offset, record.session_id, record.reason) for record in other.rejected
        )


@dataclass(frozen=True)
class ReleaseResult:
    released_batch_id: int
    session_count: int
    next_batch_id: int


@dataclass(frozen=True)
class BatchStats:
    """How much a batch holds to learn from."""

    batch_id: int
    status: str
    session_count: int
    event_count: int
    click_count: int
    sessions_with_clicks: int
    irrelevant_count: int
    user_count: int
