"""Clickstream collection: sessions, their events, bulk upload, and batch release.

Handlers are ``async`` and hand their blocking database work to the thread pool themselves
(``run_in_threadpool``): one hop per request, where a plain ``def`` handler costs FastAPI a hop to
run it and another to serialise its answer.
"""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool

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
from embedding_studio.clickstream.dao import (
    EventConflictError,
    ItemNotInResultsError,
    SessionConflictError,
    UnknownBatchError,
    UnknownSessionError,
    clickstream_dao,
)

router = APIRouter(prefix="/clickstream", tags=["clickstream"])

_NOT_FOUND = {"description": "Unknown session or batch"}


def hot_path_pool(request: Request) -> AsyncConnectionPool | None:
    """The app's asyncio pool (opened by its lifespan); None in an app run without one, which takes threads."""
    return getattr(request.app.state, "hot_path_pool", None)


@router.post(
    "/sessions",
    status_code=status.HTTP_201_CREATED,
    response_model=SessionCreatedOut,
    responses={
        200: {"description": "The same session was stored before", "model": SessionCreatedOut},
        409: {"description": "The session id exists with a different body"},
    },
)
async def add_session(body: SessionBody, request: Request, response: Response) -> SessionCreatedOut:
    """Record one search: the query and the item ids shown, in order. Sending it again changes nothing."""
    pool = hot_path_pool(request)
    try:
        if pool is not None:
            session, created = await clickstream_dao.store_session_async(body, pool)
        else:
            session, created = await run_in_threadpool(clickstream_dao.store_session, body)
    except SessionConflictError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(error)) from error
    if not created:
        response.status_code = status.HTTP_200_OK
    return SessionCreatedOut(session_id=session.session_id, batch_id=session.batch_id, created=created)


@router.get("/sessions/{session_id:path}", response_model=SessionOut, responses={404: _NOT_FOUND})
async def get_session(session_id: str) -> SessionOut:
    try:
        session = await run_in_threadpool(clickstream_dao.get_session, session_id)
    except UnknownSessionError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from error
    return SessionOut.model_validate(asdict(session))


@router.post(
    "/sessions/{session_id:path}/events",
    status_code=status.HTTP_201_CREATED,
    response_model=EventsOut,
    responses={
        404: _NOT_FOUND,
        409: {"description": "An event id is stored in this session with a different body (nothing was stored)"},
        422: {"description": "An event names an item that was not shown"},
    },
)
async def add_events(session_id: str, body: EventsIn, request: Request) -> EventsOut | JSONResponse:
    """Record clicks (or other events) on results of a stored session; event ids are unique within it.

    Resending an event with the same body changes nothing, so a client may retry freely; an id reused
    for a different event is refused whole rather than half stored.
    """
    pool = hot_path_pool(request)
    try:
        if pool is not None:
            inserted = await clickstream_dao.add_events_async(session_id, body.events, pool)
        else:
            inserted = await run_in_threadpool(clickstream_dao.add_events, session_id, body.events)
    except UnknownSessionError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from error
    except EventConflictError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(error)) from error
    except ItemNotInResultsError as error:
        # Same shape as every other 422 of the API.
        return JSONResponse(
            status_code=422,
            content={"detail": str(error), "errors": [{"field": "events.item_id", "reason": str(error)}]},
        )
    return EventsOut(session_id=session_id, inserted=inserted)


@router.post("/sessions/{session_id:path}/irrelevant", response_model=IrrelevantOut, responses={404: _NOT_FOUND})
async def mark_irrelevant(session_id: str) -> IrrelevantOut:
    """The user said none of the results fit: fine-tuning learns from that too."""
    try:
        session = await run_in_threadpool(clickstream_dao.mark_irrelevant, session_id)
    except UnknownSessionError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from error
    return IrrelevantOut(session_id=session.session_id, is_irrelevant=session.is_irrelevant)


@router.post("/bulk", response_model=BulkOut)
async def bulk_add(body: BulkIn) -> BulkOut:
    """Many sessions with their events at once; each record is accepted or rejected (with a reason) on its own."""
    result = await run_in_threadpool(clickstream_dao.bulk_add, body.sessions)
    return BulkOut.model_validate(asdict(result))


@router.post("/batches/release", response_model=ReleaseOut)
async def release_batch() -> ReleaseOut:
    """Close the collecting batch so it can be fine-tuned on; new sessions go to the next batch."""
    return ReleaseOut.model_validate(asdict(await run_in_threadpool(clickstream_dao.release_batch)))


@router.get("/batches", response_model=list[BatchOut])
async def list_batches() -> list[BatchOut]:
    return [BatchOut.model_validate(asdict(batch)) for batch in await run_in_threadpool(clickstream_dao.list_batches)]


@router.get("/batches/{batch_id}", response_model=BatchOut, responses={404: _NOT_FOUND})
async def get_batch(batch_id: int) -> BatchOut:
    try:
        return BatchOut.model_validate(asdict(await run_in_threadpool(clickstream_dao.get_batch, batch_id)))
    except UnknownBatchError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from error
