"""The API's one error mapping (``api.errors.DOMAIN_ERRORS``) and the route dependencies of ``api.deps``.

No database: the app is used without its lifespan, and the search dependency is replaced, as
``app.dependency_overrides`` lets any test do."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from embedding_studio.api.app import create_app
from embedding_studio.api.deps import searcher
from embedding_studio.serving.errors import BlueModelUnavailableError, UnknownModelError
from embedding_studio.vectordb.errors import NoBlueModelError


def _search_raising(error: Exception) -> Callable[..., Any]:
    def search(*_: object, **__: object) -> Any:
        raise error

    async def provide() -> Callable[..., Any]:
        return search

    return provide


@pytest.mark.parametrize(
    ("error", "status", "detail"),
    [
        (NoBlueModelError(), 503, str(NoBlueModelError())),
        (
            BlueModelUnavailableError(UnknownModelError("gone-model", "no such directory")),
            503,
            "the blue model cannot be loaded: " + str(UnknownModelError("gone-model", "no such directory")),
        ),
    ],
)
def test_search_errors_answer_as_the_mapping_says(error: Exception, status: int, detail: str) -> None:
    app = create_app(run_migrations=False)
    app.dependency_overrides[searcher] = _search_raising(error)
    answer = TestClient(app).post("/api/v1/search", json={"query": "kettle"})
    assert answer.status_code == status
    assert answer.json() == {"detail": detail}


def test_an_unknown_model_a_request_names_is_a_422_naming_the_field() -> None:
    """The same error class, not raised as the blue model's, is the caller's mistake: the 422 body."""
    app = create_app(run_migrations=False)
    app.dependency_overrides[searcher] = _search_raising(UnknownModelError("typo-model"))
    body = TestClient(app).post("/api/v1/search", json={"query": "kettle"}).json()
    assert body["errors"] == [{"field": "body", "reason": str(UnknownModelError("typo-model"))}]
    assert body["detail"] == str(UnknownModelError("typo-model"))
