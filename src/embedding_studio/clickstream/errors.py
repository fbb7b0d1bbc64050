"""Errors of the clickstream store; each names the id that is wrong so a caller can act on it."""

from __future__ import annotations


class ClickstreamError(RuntimeError):
    """Base of every clickstream error the API turns into a 4xx answer."""


class SessionConflictError(ClickstreamError):
    """A session id that is already stored with a different body: ids are the idempotency keys."""

    def __init__(self, session_id: str, differences: list[str]) -> None:
        self.session_id = session_id
        self.differences = differences
        super().__init__(
            f"session {session_id!r} already exists with a different body (differs in: {', '.join(differences)})"
        )


class EventConflictError(ClickstreamError):
    """An event id already stored in its session with a different body: within a session, event ids are
    the idempotency keys, so a different body under the same id is a client bug, never a new click."""

    def __init__(self, session_id: str, differences: dict[str, list[str]]) -> None:
        self.session_id = session_id
        self.differences = differences
        described = ", ".join(
            f"{event_id!r} (differs in: {', '.join(fields)})" for event_id, fields in differences.items()
        )
        noun = "event" if len(differences) == 1 else "events"
        super().__init__(
            f"{noun} {described} of session {session_id!r} already stored with a different body; "
            "send a new event id for a new event"
        )


class UnknownSessionError(ClickstreamError):
    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(f"unknown session {session_id!r}: post the session before its events")


class ItemNotInResultsError(ClickstreamError):
    """An event about an item the user was never shown cannot be a click on a search result."""

    def __init__(self, session_id: str, item_ids: list[str]) -> None:
        self.session_id = session_id
        self.item_ids = item_ids
        names = ", ".join(repr(item_id) for item_id in item_ids)
        super().__init__(f"item(s) {names} not among the results shown in session {session_id!r}")


class UnknownBatchError(ClickstreamError):
    def __init__(self, batch_id: int) -> None:
        self.batch_id = batch_id
        super().__init__(f"unknown clickstream batch {batch_id}")


class InvalidRecordError(ClickstreamError):
    """A session record (bulk body, import line) that cannot be stored, with the reason why."""
