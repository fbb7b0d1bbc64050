"""Python client of the Embedding Studio HTTP API.

One method per endpoint, typed answers (the API's own pydantic models), and one error type,
:class:`ApiError`, carrying the HTTP status and the server's reason. Other resources add their
methods to :class:`EmbeddingStudioClient` the same way: build the path, call :meth:`_request`, parse.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from embedding_studio.api.schemas.clickstream import (
    BatchOut,
    BulkOut,
    EventRecord,
    EventsOut,
    IrrelevantOut,
    ReleaseOut,
    SessionCreatedOut,
    SessionOut,
    SessionRecord,
)

ModelT = TypeVar("ModelT", bound=BaseModel)

DEFAULT_TIMEOUT_SECONDS = 30.0


class ApiError(RuntimeError):
    """The server refused a request; ``status_code`` and ``detail`` say why (``errors`` lists bad fields)."""

    def __init__(self, status_code: int, detail: str, errors: list[dict[str, Any]] | None = None) -> None:
        self.status_code = status_code
        self.detail = detail
        self.errors = errors or []
        super().__init__(f"HTTP {status_code}: {detail}")


def _as_json(value: BaseModel | Mapping[str, Any]) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    return dict(value)


class EmbeddingStudioClient:
    """``EmbeddingStudioClient("http://127.0.0.1:5000", api_key=...)``; usable as a context manager."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        http_client: httpx.Client | None = None,
    ) -> None:
        """``http_client`` replaces the connection (e.g. FastAPI's ``TestClient`` to talk to an app in-process)."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        if http_client is None:
            http_client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)
        http_client.headers.update(headers)
        self._http = http_client

    # ------------------------------------------------------------------------------------- plumbing

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EmbeddingStudioClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _request(self, method: str, path: str, json: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        """Send one request and return its decoded JSON body, or raise :class:`ApiError`."""
        response = self._http.request(method, path, json=json, params=params)
        if response.is_success:
            return response.json() if response.content else None
        try:
            body = response.json()
        except ValueError:
            raise ApiError(response.status_code, response.text or response.reason_phrase) from None
        detail = body.get("detail", body) if isinstance(body, dict) else body
        errors = body.get("errors") if isinstance(body, dict) else None
        raise ApiError(response.status_code, detail if isinstance(detail, str) else str(detail), errors)

    def _parse(self, model: type[ModelT], body: Any) -> ModelT:
        return model.model_validate(body)

    # ---------------------------------------------------------------------------------------- health

    def health(self) -> dict[str, str]:
        return self._request("GET", "/health")

    # ----------------------------------------------------------------------------------- clickstream

    def add_session(
        self,
        session_id: str,
        query: str | dict[str, Any],
        results: list[str],
        user_id: str | None = None,
        created_at: datetime | None = None,
        payload: dict[str, Any] | None = None,
    ) -> SessionCreatedOut:
        """Record a search; ``created`` is False when the same session was already stored."""
        body: dict[str, Any] = {"session_id": session_id, "query": query, "results": results}
        if user_id is not None:
            body["user_id"] = user_id
        if created_at is not None:
            body["created_at"] = created_at.isoformat()
        if payload is not None:
            body["payload"] = payload
        return self._parse(SessionCreatedOut, self._request("POST", "/api/v1/clickstream/sessions", json=body))

    def get_session(self, session_id: str) -> SessionOut:
        return self._parse(SessionOut, self._request("GET", f"/api/v1/clickstream/sessions/{_quote(session_id)}"))

    def add_events(self, session_id: str, events: Iterable[EventRecord | Mapping[str, Any]]) -> EventsOut:
        body = {"events": [_as_json(event) for event in events]}
        path = f"/api/v1/clickstream/sessions/{_quote(session_id)}/events"
        return self._parse(EventsOut, self._request("POST", path, json=body))

    def add_click(self, session_id: str, event_id: str, item_id: str) -> EventsOut:
        return self.add_events(session_id, [{"event_id": event_id, "item_id": item_id, "event_type": "click"}])

    def mark_irrelevant(self, session_id: str) -> IrrelevantOut:
        path = f"/api/v1/clickstream/sessions/{_quote(session_id)}/irrelevant"
        return self._parse(IrrelevantOut, self._request("POST", path))

    def bulk_add(self, sessions: Iterable[SessionRecord | Mapping[str, Any]]) -> BulkOut:
        body = {"sessions": [_as_json(session) for session in sessions]}
        return self._parse(BulkOut, self._request("POST", "/api/v1/clickstream/bulk", json=body))

    def release_batch(self) -> ReleaseOut:
        return self._parse(ReleaseOut, self._request("POST", "/api/v1/clickstream/batches/release"))

    def list_batches(self) -> list[BatchOut]:
        return _BATCH_LIST.validate_python(self._request("GET", "/api/v1/clickstream/batches"))

    def get_batch(self, batch_id: int) -> BatchOut:
        return self._parse(BatchOut, self._request("GET", f"/api/v1/clickstream/batches/{int(batch_id)}"))


_BATCH_LIST = TypeAdapter(list[BatchOut])


def _quote(path_part: str) -> str:
    return quote(path_part, safe="")
