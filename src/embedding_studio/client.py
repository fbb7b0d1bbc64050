"""Python client of the Embedding Studio HTTP API.

One method per endpoint, typed answers (the API's own pydantic models, from ``embedding_studio.schemas``, which
need only pydantic: ``pip install embedding-studio`` gives this client without the server), and one error type,
:class:`ApiError`, carrying the HTTP status and the server's reason. Other resources add their
methods to :class:`EmbeddingStudioClient` the same way: build the path, call :meth:`_request`, parse.

Tasks (fine-tuning, reindex, item upserts) run in workers; :meth:`EmbeddingStudioClient.wait_for_task`
polls one until it ends and turns anything but ``done`` into :class:`TaskEndedError` or
:class:`TaskTimeoutError`, so a script never mistakes a refused or failed task for a finished one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from embedding_studio.schemas.clickstream import (
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
from embedding_studio.schemas.loader_paths import with_absolute_paths
from embedding_studio.schemas.params import ItemTextOptions, LoaderSpec, UpsertItem
from embedding_studio.schemas.tasks import (
    ModelListOut,
    SearchOut,
    TaskCreatedOut,
    TaskKind,
    TaskListOut,
    TaskOut,
    TaskStatus,
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


class TaskNotDoneError(RuntimeError):
    """:meth:`EmbeddingStudioClient.wait_for_task` did not see the task end ``done``; ``task`` is its last state."""

    def __init__(self, message: str, task: TaskOut) -> None:
        self.task = task
        super().__init__(message)


class TaskEndedError(TaskNotDoneError):
    """The task ended failed, canceled or refused; the message carries its status and the server's reason."""


class TaskTimeoutError(TaskNotDoneError, TimeoutError):
    """The task was still pending or processing when the wait ran out (it keeps running on the server)."""


def _as_json(value: BaseModel | Mapping[str, Any]) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    return dict(value)


def _loader_json(loader: LoaderSpec | Mapping[str, Any]) -> Any:
    """A loader as the request sends it, relative local paths made absolute in this process's working directory:
    the server refuses relative ones, which a worker would read in its own directory."""
    body = _as_json(loader)
    if isinstance(body, dict) and isinstance(body.get("name"), str) and isinstance(body.get("options"), Mapping):
        body = {**body, "options": with_absolute_paths(body["name"], dict(body["options"]))}
    return body


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

    # ---------------------------------------------------------------------------------------- search

    def search(
        self, query: str, limit: int = 10, offset: int = 0, user_id: str | None = None, record: bool = True
    ) -> SearchOut:
        """Search on the blue model; the answer's ``session_id`` is already recorded, so report clicks on it
        (:meth:`add_click`). ``record=False`` records nothing (``session_id`` is then None): a search no user
        sees. Each result's ``payload`` says what to show for it. No deployed model → :class:`ApiError` 503."""
        body: dict[str, Any] = {"query": query, "limit": limit, "offset": offset}
        if not record:
            body["record"] = False
        if user_id is not None:
            body["user_id"] = user_id
        return self._parse(SearchOut, self._request("POST", "/api/v1/search", json=body))

    # ----------------------------------------------------------------------------------- fine-tuning

    def create_fine_tuning_task(
        self,
        batch_id: int | None = None,
        method: str | None = None,
        embedding_model_id: str | None = None,
        deploy_as_blue: bool = False,
        wait_on_conflict: bool = False,
        idempotency_key: str | None = None,
        method_options: Mapping[str, Any] | None = None,
        force_deploy: bool = False,
        min_deploy_gain: float = 0.0,
        *,
        batch_ids: Sequence[int] | None = None,
        since_blue: bool = False,
        replay_share: float | None = None,
    ) -> TaskCreatedOut:
        """Queue fine-tuning on a released batch, several (``batch_ids``), or every batch released since the one
        the blue model was trained on (``since_blue``); give exactly one. Of batches older than the newest chosen,
        ``replay_share`` of the sessions are trained on (server default: all). An unknown or collecting batch, an
        unknown method or model → :class:`ApiError` 422 with the reason. Unset ``method`` and
        ``embedding_model_id`` take the server's defaults: the ``default_text`` method, starting from the blue
        model. The same ``idempotency_key`` gives the first task back instead of a second one.

        With ``deploy_as_blue`` the best model is deployed only when it retrieves at least as well as the blue
        one on the batch's held-out sessions (better by ``min_deploy_gain``), or when ``force_deploy``; the
        finished task's ``deployment`` says which and why (a task not deployed still ends ``done``)."""
        body: dict[str, Any] = {
            "deploy_as_blue": deploy_as_blue,
            "force_deploy": force_deploy,
            "min_deploy_gain": min_deploy_gain,
            "wait_on_conflict": wait_on_conflict,
        }
        if batch_id is not None:
            body["batch_id"] = batch_id
        if batch_ids is not None:
            body["batch_ids"] = list(batch_ids)
        if since_blue:
            body["since_blue"] = True
        if replay_share is not None:
            body["replay_share"] = replay_share
        if method is not None:
            body["method"] = method
        if embedding_model_id is not None:
            body["embedding_model_id"] = embedding_model_id
        if method_options is not None:
            body["method_options"] = dict(method_options)
            if isinstance(method_options.get("loader"), Mapping):  # its paths are the caller's, as a reindex's
                body["method_options"]["loader"] = _loader_json(method_options["loader"])
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        return self._parse(TaskCreatedOut, self._request("POST", "/api/v1/fine-tuning/tasks", json=body))

    def get_fine_tuning_task(self, task_id: str) -> TaskOut:
        return self._parse(TaskOut, self._request("GET", f"/api/v1/fine-tuning/tasks/{_quote(task_id)}"))

    def list_fine_tuning_tasks(
        self, status: TaskStatus | str | None = None, limit: int = 50, offset: int = 0
    ) -> list[TaskOut]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status is not None:
            params["status"] = str(status)
        body = self._request("GET", "/api/v1/fine-tuning/tasks", params=params)
        return self._parse(TaskListOut, body).tasks

    def cancel_fine_tuning_task(self, task_id: str) -> TaskOut:
        """A pending task is canceled at once; a running one stops at its next check (``cancel_requested``).
        A task that already ended → :class:`ApiError` 409."""
        path = f"/api/v1/fine-tuning/tasks/{_quote(task_id)}/cancel"
        return self._parse(TaskOut, self._request("POST", path))

    # --------------------------------------------------------------------------------------- reindex

    def create_reindex_task(
        self,
        dest_model_id: str,
        source_model_id: str | None = None,
        deploy_as_blue: bool = False,
        wait_on_conflict: bool = False,
        loader: LoaderSpec | Mapping[str, Any] | None = None,
        batch_size: int | None = None,
        pause_between_batches_s: float | None = None,
        idempotency_key: str | None = None,
        item_text: ItemTextOptions | Mapping[str, Any] | None = None,
    ) -> TaskCreatedOut:
        """Queue embedding the catalog with ``dest_model_id`` (from ``source_model_id``'s collection, default the
        blue one, or from ``loader``), its items cut into text parts as ``item_text`` says (default: as the blue
        collection's were). Its ``status`` is ``refused`` at once when another reindex builds the same model and
        ``wait_on_conflict`` is off."""
        body: dict[str, Any] = {
            "dest_model_id": dest_model_id,
            "deploy_as_blue": deploy_as_blue,
            "wait_on_conflict": wait_on_conflict,
        }
        optional = {
            "source_model_id": source_model_id,
            "loader": _loader_json(loader) if loader is not None else None,
            "batch_size": batch_size,
            "pause_between_batches_s": pause_between_batches_s,
            "idempotency_key": idempotency_key,
            "item_text": _as_json(item_text) if item_text is not None else None,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        return self._parse(TaskCreatedOut, self._request("POST", "/api/v1/reindex/tasks", json=body))

    def get_reindex_task(self, task_id: str) -> TaskOut:
        return self._parse(TaskOut, self._request("GET", f"/api/v1/reindex/tasks/{_quote(task_id)}"))

    def cancel_reindex_task(self, task_id: str) -> TaskOut:
        path = f"/api/v1/reindex/tasks/{_quote(task_id)}/cancel"
        return self._parse(TaskOut, self._request("POST", path))

    # ---------------------------------------------------------------------------------------- models

    def list_models(self) -> ModelListOut:
        return self._parse(ModelListOut, self._request("GET", "/api/v1/models"))

    def rollback_model(self, model_id: str) -> ModelListOut:
        """Give ``model_id``, the current blue model: search goes back to the previous blue one. Any other
        indexed model → :class:`ApiError` 409; a model never indexed → 404."""
        return self._parse(ModelListOut, self._request("POST", f"/api/v1/models/{_quote(model_id)}/rollback"))

    # ----------------------------------------------------------------------------------------- items

    def upsert_items(
        self, items: Iterable[UpsertItem | Mapping[str, Any]], idempotency_key: str | None = None
    ) -> TaskCreatedOut:
        """Queue adding or replacing items (``{item_id, text | fields, payload?}``: a text, or a JSON item's
        fields) in every collection; the upsert worker applies them, reindexes in progress included. They stay
        part of the catalog fine-tuning reads and a reindex from the loader keeps."""
        body: dict[str, Any] = {"items": [_as_json(item) for item in items]}
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        return self._parse(TaskCreatedOut, self._request("POST", "/api/v1/items/upsert", json=body))

    def delete_items(self, item_ids: Iterable[str], idempotency_key: str | None = None) -> TaskCreatedOut:
        body: dict[str, Any] = {"item_ids": list(item_ids)}
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        return self._parse(TaskCreatedOut, self._request("POST", "/api/v1/items/delete", json=body))

    def get_items_task(self, task_id: str) -> TaskOut:
        return self._parse(TaskOut, self._request("GET", f"/api/v1/items/tasks/{_quote(task_id)}"))

    # ----------------------------------------------------------------------------------------- tasks

    def get_task(self, task_id: str, kind: TaskKind | str) -> TaskOut:
        """Any task by kind: ``fine_tuning`` (or ``fine-tuning``), ``reindex``, ``upsert`` (or ``items``)."""
        getter = {
            TaskKind.fine_tuning: self.get_fine_tuning_task,
            TaskKind.reindex: self.get_reindex_task,
            TaskKind.upsert: self.get_items_task,
        }[_task_kind(kind)]
        return getter(task_id)

    def wait_for_task(
        self,
        task_id: str,
        kind: TaskKind | str,
        timeout: float = 600.0,
        poll_interval: float = 0.5,
        on_progress: Callable[[TaskOut], None] | None = None,
    ) -> TaskOut:
        """Poll until the task ends and return it when ``done``.

        ``on_progress`` sees every polled state (``progress``, ``progress_message``), e.g. to drive a progress
        bar or to check that the workers are still alive. A task ending failed, canceled or refused raises
        :class:`TaskEndedError`; one still running after ``timeout`` seconds raises :class:`TaskTimeoutError`.
        """
        task_kind = _task_kind(kind)
        if timeout < 0 or poll_interval <= 0:
            raise ValueError(f"timeout must be >= 0 and poll_interval > 0, got {timeout} and {poll_interval}")
        deadline = time.monotonic() + timeout
        while True:
            task = self.get_task(task_id, task_kind)
            if on_progress is not None:
                on_progress(task)
            if task.status == TaskStatus.done:
                return task
            if TaskStatus(task.status).is_final:
                raise TaskEndedError(
                    f"{task_kind.value} task {task_id} ended {task.status}: {task.error or 'no reason given'}", task
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TaskTimeoutError(
                    f"{task_kind.value} task {task_id} is still {task.status} after {timeout:g} s "
                    f"(progress {task.progress:.0%}{': ' + task.progress_message if task.progress_message else ''})",
                    task,
                )
            time.sleep(min(poll_interval, remaining))


_BATCH_LIST = TypeAdapter(list[BatchOut])

_KIND_ALIASES = {"fine-tuning": TaskKind.fine_tuning, "items": TaskKind.upsert}


def _task_kind(kind: TaskKind | str) -> TaskKind:
    if isinstance(kind, TaskKind):
        return kind
    try:
        return _KIND_ALIASES.get(kind) or TaskKind(kind)
    except ValueError:
        known = ", ".join([*(member.value for member in TaskKind), *_KIND_ALIASES])
        raise ValueError(f"unknown task kind {kind!r}: expected one of {known}") from None


def _quote(path_part: str) -> str:
    return quote(path_part, safe="")
