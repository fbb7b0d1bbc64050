"""Session records as the clickstream store parses them: the edge models (``embedding_studio.schemas.records``,
re-exported here) and the parsing that turns a bad record into the store's :class:`InvalidRecordError`."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError

from embedding_studio.clickstream.errors import InvalidRecordError
from embedding_studio.schemas.records import (
    MAX_ID_LENGTH,
    MAX_RANK_OFFSET,
    MAX_RESULTS,
    NO_NUL,
    Count,
    EventRecord,
    SessionBody,
    SessionQuery,
    SessionRecord,
    TextQuery,
    Timestamp,
    describe_repeated_events,
    describe_validation_error,
    distinct_events,
    event_differences,
    reject_nul,
)

__all__ = [
    "MAX_ID_LENGTH",
    "MAX_RANK_OFFSET",
    "MAX_RESULTS",
    "NO_NUL",
    "Count",
    "EventRecord",
    "SessionBody",
    "SessionQuery",
    "SessionRecord",
    "TextQuery",
    "Timestamp",
    "describe_repeated_events",
    "describe_validation_error",
    "distinct_events",
    "event_differences",
    "guess_session_id",
    "parse_session_record",
    "reject_nul",
]


def parse_session_record(raw: object) -> SessionRecord:
    """Validate one raw record; :class:`InvalidRecordError` carries the reason."""
    if isinstance(raw, SessionRecord):
        return raw
    if not isinstance(raw, Mapping):
        raise InvalidRecordError(f"a session record must be a JSON object, got {type(raw).__name__}")
    try:
        return SessionRecord.model_validate(raw)
    except ValidationError as error:
        raise InvalidRecordError(describe_validation_error(error)) from error


def guess_session_id(raw: object) -> str | None:
    """The session id of a rejected record, when it has a usable one, so the rejection can name it."""
    if isinstance(raw, SessionRecord):
        return raw.session_id
    if isinstance(raw, Mapping):
        value = raw.get("session_id")
        if isinstance(value, str) and value:
            return value
    return None
