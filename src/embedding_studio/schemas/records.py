"""The shape of a session record as it arrives from outside: the HTTP API, the bulk endpoint, import files.

Validation lives here, at the edge, so the API, the importers and ``bulk_add`` reject the same records
with the same reasons, and the Python client builds the very models the server checks (this module needs
pydantic only, so it installs without the server; ``clickstream.records`` adds the server's parsing).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

MAX_ID_LENGTH = 512
MAX_RESULTS = 10_000
MAX_RANK_OFFSET = 1_000_000

#: A query is text with something in it, or a non-empty JSON object (a structured query); the constraints
#: are in the type so the OpenAPI document refuses what the server refuses.
#: PostgreSQL text cannot hold NUL, so no stored string may contain one.
TextQuery = Annotated[str, StringConstraints(min_length=1, pattern=r"^[^\x00]*[^\s\x00][^\x00]*$")]
NO_NUL = r"^[^\x00]*$"
#: A session's query: text or a structured (JSON object) query. Checked by ``SessionBody._query_is_not_empty``,
#: whose message says what is wrong; the schema carries the same rule for the OpenAPI document.
SessionQuery = Annotated[
    str | dict[str, Any],
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "minLength": 1, "pattern": TextQuery.__metadata__[0].pattern},
                {"type": "object", "minProperties": 1},
            ]
        }
    ),
]


def _as_utc(value: datetime | None) -> datetime | None:
    """Naive timestamps are taken as UTC, so a resent body compares equal to what was stored."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _date_time_text(value: object) -> object:
    """Only an ISO 8601 string (or a datetime, from Python): a bare number is not taken as a timestamp."""
    if not isinstance(value, str | datetime):
        raise ValueError("expected an ISO 8601 date-time string, e.g. 2024-05-01T12:00:00Z")
    return value


Timestamp = Annotated[datetime, BeforeValidator(_date_time_text)]


def _not_a_bool(value: object) -> object:
    """true and false are not numbers: pydantic would read them as 1 and 0, JSON Schema's integer refuses them."""
    if isinstance(value, bool):
        raise ValueError("expected an integer, got a boolean")
    return value


Count = Annotated[int, BeforeValidator(_not_a_bool)]


def nul_location(value: Any, where: str) -> str | None:
    """Where the first key or string with a NUL character sits in a JSON value (``where`` plus its path), or None."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    if isinstance(value, dict):
        for key, inner in value.items():
            found = nul_location(key, f"{where} key {key!r}") or nul_location(inner, f"{where}[{key!r}]")
            if found:
                return found
    elif isinstance(value, list | tuple):
        for position, inner in enumerate(value):
            found = nul_location(inner, f"{where}[{position}]")
            if found:
                return found
    return None


def reject_nul(value: Any, where: str) -> Any:
    """``value`` unchanged, or ValueError naming the first key or string with a NUL character in it.

    PostgreSQL's text and jsonb cannot hold NUL, and a row that fails to insert must be refused before anything
    of its request is stored, so JSON the client sends is checked at the edge, at any depth."""
    found = nul_location(value, where)
    if found:
        raise ValueError(f"{found} must not contain NUL characters (PostgreSQL cannot store them)")
    return value


class EventRecord(BaseModel):
    """One user action on a shown result; ``event_id`` is the client's idempotency key."""

    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=NO_NUL)
    item_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=NO_NUL)
    event_type: str = Field(default="click", min_length=1, max_length=64, pattern=NO_NUL)
    created_at: Timestamp | None = None
    payload: dict[str, Any] | None = None

    @field_validator("created_at")
    @classmethod
    def _created_at_in_utc(cls, value: datetime | None) -> datetime | None:
        return _as_utc(value)

    @field_validator("payload")
    @classmethod
    def _payload_without_nul(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return reject_nul(value, "the event payload")


def event_differences(
    stored_item_id: str,
    stored_event_type: str,
    stored_created_at: datetime | None,
    stored_payload: dict[str, Any] | None,
    event: EventRecord,
) -> list[str]:
    """Fields in which ``event`` disagrees with a stored event of the same id (empty: the same event).

    The one definition of "same event" for the API, the bulk path and the importers. ``created_at``
    counts only when the client sent one: without it the server stamps the event, and a resend must
    still be recognised as the same event.
    """
    differences = []
    if stored_item_id != event.item_id:
        differences.append("item_id")
    if stored_event_type != event.event_type:
        differences.append("event_type")
    if (stored_payload or None) != (event.payload or None):
        differences.append("payload")
    if event.created_at is not None and stored_created_at != event.created_at:
        differences.append("created_at")
    return differences


def distinct_events(events: list[EventRecord]) -> tuple[list[EventRecord], dict[str, list[str]]]:
    """The events of one request with exact repeats dropped, and the ids sent twice with different bodies.

    A request that says two different things under one event id cannot be stored as meant: the
    caller rejects it naming those ids rather than keep whichever came first.
    """
    first: dict[str, EventRecord] = {}
    conflicts: dict[str, list[str]] = {}
    for event in events:
        seen = first.get(event.event_id)
        if seen is None:
            first[event.event_id] = event
            continue
        differences = event_differences(seen.item_id, seen.event_type, seen.created_at, seen.payload, event)
        if differences:
            conflicts.setdefault(event.event_id, differences)
    return list(first.values()), conflicts


def describe_repeated_events(conflicts: dict[str, list[str]]) -> str:
    names = ", ".join(f"{event_id!r} (differs in: {', '.join(fields)})" for event_id, fields in conflicts.items())
    return f"event id(s) {names} sent twice with different bodies: an event id names one event of its session"


class SessionBody(BaseModel):
    """One search as the client saw it: the query and the item ids shown, in order."""

    model_config = ConfigDict(extra="forbid")

    session_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=NO_NUL)
    query: SessionQuery = Field(description="What the user searched for: text (not blank) or a non-empty JSON object.")
    results: list[Annotated[str, StringConstraints(min_length=1, pattern=NO_NUL)]] = Field(
        max_length=MAX_RESULTS,
        json_schema_extra={"uniqueItems": True},  # enforced by _results_are_distinct_ids, with the item named
        description="Item ids in the order they were shown (rank rank_offset + 1 first).",
    )
    rank_offset: Count = Field(
        default=0,
        ge=0,
        le=MAX_RANK_OFFSET,
        description="How many results were ranked above the first shown one (10 for the second page of 10): "
        "result i is counted as shown at rank rank_offset + i when position bias is estimated.",
    )
    user_id: str | None = Field(default=None, max_length=MAX_ID_LENGTH, pattern=NO_NUL)
    created_at: Timestamp | None = None
    payload: dict[str, Any] | None = None

    @field_validator("created_at")
    @classmethod
    def _created_at_in_utc(cls, value: datetime | None) -> datetime | None:
        return _as_utc(value)

    @field_validator("query")
    @classmethod
    def _query_is_not_empty(cls, query: str | dict[str, Any]) -> str | dict[str, Any]:
        if not query or (isinstance(query, str) and not query.strip()):
            raise ValueError("the query must not be empty")
        return reject_nul(query, "the query")

    @field_validator("payload")
    @classmethod
    def _payload_without_nul(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return reject_nul(value, "the session payload")

    @field_validator("results")
    @classmethod
    def _results_are_distinct_ids(cls, results: list[str]) -> list[str]:
        seen: set[str] = set()
        for item_id in results:
            if not item_id:
                raise ValueError("result item ids must not be empty")
            if item_id in seen:
                raise ValueError(f"item {item_id!r} is shown twice: each result appears once, at its rank")
            seen.add(item_id)
        return results


class SessionRecord(SessionBody):
    """A session with its events, as one line of an import file or one entry of a bulk request."""

    events: list[EventRecord] = Field(default_factory=list)
    is_irrelevant: bool = False

    @model_validator(mode="after")
    def _event_ids_name_one_event_each(self) -> SessionRecord:
        self.events, conflicts = distinct_events(self.events)
        if conflicts:
            raise ValueError(describe_repeated_events(conflicts))
        return self

    @model_validator(mode="after")
    def _events_are_on_shown_results(self) -> SessionRecord:
        shown = set(self.results)
        missing = [event.item_id for event in self.events if event.item_id not in shown]
        if missing:
            names = ", ".join(repr(item_id) for item_id in dict.fromkeys(missing))
            raise ValueError(f"event item(s) {names} not among the session's results")
        return self


def describe_validation_error(error: ValidationError) -> str:
    """One line naming every wrong field, for per-record rejections."""
    parts = []
    for item in error.errors():
        location = ".".join(str(part) for part in item.get("loc", ()))
        message = str(item.get("msg", "invalid"))
        message = message.removeprefix("Value error, ")
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts)
