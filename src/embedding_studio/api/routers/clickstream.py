"""Clickstream collection: sessions, their events, bulk upload, and batch release.

Handlers are ``async`` and are handed the clickstream repository (``api.deps.Clickstream``). The session and
event inserts are awaited on the database's asyncio pool; the rest hand their blocking database work to the
thread pool themselves (``run_in_threadpool``): one hop per request, where a plain ``def`` handler costs FastAPI
a hop to run it and another to serialise its answer. Clickstream errors (unknown session, conflicting ids, an item the
session did not show) pass through to ``api.errors``, which answers each.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from fastapi.concurrency import run_in_threadpool

from embedding_studio.api.deps import Clickstream
from embedding_studio.api.schemas.clickstream import (
    BatchOut,
    BulkIn,
    BulkOut,
    EventsIn,
    EventsOut,
    IrrelevantOut,
    ReleaseOut,
    SessionBody,
    SessionCreatedOut,
    SessionOut,
)
from embedding_studio.api.schemas.errors import INVALID_REQUEST, body_error_responses, error_responses
from embedding_studio.clickstream.records import MAX_ID_LENGTH

router = APIRouter(prefix="/clickstream", tags=["clickstream"])

UNKNOWN_SESSION = "No session with this id has been stored."
UNKNOWN_BATCH = "No clickstream batch with this id."

SessionId = Annotated[
    str, Path(min_length=1, max_length=MAX_ID_LENGTH, description="The client's session id (may contain '/').")
]
BatchId = Annotated[int, Path(ge=1, description="A clickstream batch id.")]


@router.post(
    "/sessions",
    status_code=status.HTTP_201_CREATED,
    response_model=SessionCreatedOut,
    responses={
        200: {"description": "The same session was stored before", "model": SessionCreatedOut},
        **body_error_responses(
            {409: "The session id is stored with a different body (the answer names the fields).", 422: INVALID_REQUEST}
        ),
    },
)
async def add_session(body: SessionBody, clickstream: Clickstream, response: Response) -> SessionCreatedOut:
    """Record one search: the query and the item ids shown, in order. Sending it again changes nothing."""
    session, created = await clickstream.store_session_async(body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return SessionCreatedOut(session_id=session.session_id, batch_id=session.batch_id, created=created)


@router.post(
    "/sessions/{session_id:path}/events",
    status_code=status.HTTP_201_CREATED,
    response_model=EventsOut,
    responses=body_error_responses(
        {
            404: UNKNOWN_SESSION,
            409: "An event id is stored in this session with a different body (nothing was stored).",
            422: INVALID_REQUEST + " Also when an event names an item the session did not show.",
        }
    ),
)
async def add_events(session_id: SessionId, body: EventsIn, clickstream: Clickstream) -> EventsOut:
    """Record clicks (or other events) on results of a stored session; event ids are unique within it.

    Resending an event with the same body changes nothing, so a client may retry freely; an id reused
    for a different event is refused whole rather than half stored.
    """
    inserted = await clickstream.add_events_async(session_id, body.events)
    return EventsOut(session_id=session_id, inserted=inserted)


@router.post(
    "/sessions/{session_id:path}/irrelevant",
    response_model=IrrelevantOut,
    responses=error_responses({404: UNKNOWN_SESSION, 422: INVALID_REQUEST}),
)
async def mark_irrelevant(session_id: SessionId, clickstream: Clickstream) -> IrrelevantOut:
    """The user said none of the results fit: fine-tuning learns from that too."""
    session = await run_in_threadpool(clickstream.mark_irrelevant, session_id)
    return IrrelevantOut(session_id=session.session_id, is_irrelevant=session.is_irrelevant)


# Declared after the session's POST routes: ``{session_id:path}`` matches ``<id>/events`` too, and the first
# route a path matches decides a 405's ``Allow`` header.
@router.get(
    "/sessions/{session_id:path}",
    response_model=SessionOut,
    responses=error_responses({404: UNKNOWN_SESSION, 422: INVALID_REQUEST}),
)
async def get_session(session_id: SessionId, clickstream: Clickstream) -> SessionOut:
    """The stored session with its events."""
    session = await run_in_threadpool(clickstream.get_session, session_id)
    return SessionOut.model_validate(asdict(session))


@router.post("/bulk", response_model=BulkOut, responses=body_error_responses({422: INVALID_REQUEST}))
async def bulk_add(body: BulkIn, clickstream: Clickstream) -> BulkOut:
    """Many sessions with their events at once; each record is accepted or rejected (with a reason) on its own."""
    result = await run_in_threadpool(clickstream.bulk_add, body.sessions)
    return BulkOut.model_validate(asdict(result))


@router.post("/batches/release", response_model=ReleaseOut)
async def release_batch(clickstream: Clickstream) -> ReleaseOut:
    """Close the collecting batch so it can be fine-tuned on; new sessions go to the next batch."""
    return ReleaseOut.model_validate(asdict(await run_in_threadpool(clickstream.release_batch)))


@router.get("/batches", response_model=list[BatchOut])
async def list_batches(clickstream: Clickstream) -> list[BatchOut]:
    return [BatchOut.model_validate(asdict(batch)) for batch in await run_in_threadpool(clickstream.list_batches)]


# ``:int`` keeps ``GET /batches/release`` off this route: that is a 405 (release is a POST), not a bad id.
@router.get(
    "/batches/{batch_id:int}",
    response_model=BatchOut,
    responses=error_responses({404: UNKNOWN_BATCH, 422: INVALID_REQUEST}),
)
async def get_batch(batch_id: BatchId, clickstream: Clickstream) -> BatchOut:
    return BatchOut.model_validate(asdict(await run_in_threadpool(clickstream.get_batch, batch_id)))
