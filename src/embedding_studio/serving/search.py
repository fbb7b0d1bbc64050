"""Search on the blue model, each search recorded as a clickstream session (API and CLI share it).

The hot path is one read of the blue pointer, one query encoding with the model cached in this
process, one SQL query, and one insert of the session; the blue pointer is read per request, so a flip
takes effect on the next search and a search in flight finishes on the collection it started with.

Search reads the ``VectorStore`` it is handed and records the session on that store's database (the API's searcher
hands the lifespan's store, the CLI's in-process answer its command's).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import numpy as np

from embedding_studio import vectordb
from embedding_studio.serving.errors import BlueModelUnavailableError, UnknownModelError
from embedding_studio.serving.models import resolve_model
from embedding_studio.vectordb import VectorStore


@dataclass(frozen=True)
class SearchAnswer:
    session_id: str
    model_id: str
    hits: list[vectordb.SearchHit]
    #: seconds per step: "model_load" (a cache hit costs nothing), "query_embed", "search", "record"; the CLI
    #: prints them when it answers without the API, so a slow search says whether the model load was the cost
    timings: dict[str, float] = field(default_factory=dict)


def search_blue(
    query: str,
    limit: int = 10,
    offset: int = 0,
    user_id: str | None = None,
    record_session: bool = True,
    *,
    store: VectorStore,
) -> SearchAnswer:
    """Raises ``vectordb.NoBlueModelError`` before any model is deployed, ``BlueModelUnavailableError`` (an
    ``UnknownModelError``) if the blue model cannot be loaded."""
    blue = store.get_blue_collection()
    if blue is None:
        raise vectordb.NoBlueModelError()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    try:
        model = resolve_model(blue.model_id)
    except UnknownModelError as error:
        raise BlueModelUnavailableError(error) from error
    timings["model_load"] = (mark := time.perf_counter()) - started
    query_vector = np.asarray(model.encode_queries([query])[0], dtype=np.float32)
    timings["query_embed"] = (started := time.perf_counter()) - mark
    hits = store.search(query_vector, limit=limit, offset=offset, collection=blue)
    timings["search"] = (mark := time.perf_counter()) - started
    session_id = uuid.uuid4().hex
    if record_session:
        from embedding_studio.clickstream.dao import ClickstreamRepository

        ClickstreamRepository(store.database).add_session(
            session_id=session_id,
            query=query,
            results=[hit.item_id for hit in hits],
            user_id=user_id,
            payload={"model_id": blue.model_id},
            rank_offset=offset,
        )
        timings["record"] = time.perf_counter() - mark
    return SearchAnswer(session_id=session_id, model_id=blue.model_id, hits=hits, timings=timings)
