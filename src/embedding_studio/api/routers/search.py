"""``POST /search``: search on the blue model; the answer's session id is what clicks are reported on."""

from __future__ import annotations

from fastapi import APIRouter

from embedding_studio.api.deps import Searcher
from embedding_studio.api.schemas.errors import INVALID_REQUEST, body_error_responses
from embedding_studio.api.schemas.tasks import SearchIn, SearchOut, SearchResultOut

router = APIRouter(tags=["search"])


@router.post(
    "/search",
    response_model=SearchOut,
    responses=body_error_responses(
        {
            422: INVALID_REQUEST,
            503: "No model is deployed yet (run a reindex with deploy_as_blue), or the blue model cannot be loaded.",
        }
    ),
)
def search(body: SearchIn, search_blue: Searcher) -> SearchOut:
    """Also records the search (query and shown results) as a clickstream session, unless ``record`` is false.

    Each result carries its display payload (title, snippet, named fields), so a person can judge it."""
    answer = search_blue(
        body.query, limit=body.limit, offset=body.offset, user_id=body.user_id, record_session=body.record
    )
    return SearchOut(
        session_id=answer.session_id if body.record else None,
        model_id=answer.model_id,
        results=[SearchResultOut(item_id=hit.item_id, score=hit.score, payload=hit.payload) for hit in answer.hits],
    )
