"""The API's one error mapping: which domain error is which HTTP status, and the one 422 body.

Routes let domain errors (``UnknownTaskError``, ``SessionConflictError``, ...) pass; :data:`DOMAIN_ERRORS` says
what each becomes, and :func:`install_error_handlers` answers them, so no route catches errors to translate them
and no router borrows another's translation. A client reads ``errors`` on every 422; an answer that is sometimes
``{"detail": ...}`` and sometimes ``{"detail": ..., "errors": [...]}`` could not be described by one schema. The
``responses=`` documentation the task routes share lives here too, beside the mapping it describes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from embedding_studio.api.schemas.errors import (
    INVALID_REQUEST,
    FieldErrorOut,
    ValidationErrorOut,
    body_error_responses,
    error_responses,
)
from embedding_studio.api.schemas.tasks import TaskCreatedOut
from embedding_studio.clickstream.errors import (
    EventConflictError,
    ItemNotInResultsError,
    SessionConflictError,
    UnknownBatchError,
    UnknownSessionError,
)
from embedding_studio.serving.errors import BlueModelUnavailableError, UnknownModelError
from embedding_studio.tasks.errors import IdempotencyConflictError, TaskStateError, UnknownTaskError
from embedding_studio.tasks.service import InvalidTaskError
from embedding_studio.vectordb.errors import EmptyCollectionError, NoBlueModelError, RollbackUnavailableError


class UnprocessableRequestError(Exception):
    """Raised by a route when the request passes validation but names something that cannot be used
    (an unreleased batch, an unknown model, an item that was not shown); answered 422."""

    def __init__(self, reason: str, field: str = "body") -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


def _validation_reasons(error: RequestValidationError) -> list[FieldErrorOut]:
    reasons = []
    for item in error.errors():
        location = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        reasons.append(FieldErrorOut(field=location or "body", reason=str(item.get("msg", "invalid"))))
    return reasons


def _answer(body: ValidationErrorOut) -> JSONResponse:
    return JSONResponse(status_code=422, content=body.model_dump())


async def validation_handler(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    malformed = any(item.get("type") == "json_invalid" for item in error.errors())
    detail = "malformed JSON body" if malformed else "invalid request"
    return _answer(ValidationErrorOut(detail=detail, errors=_validation_reasons(error)))


async def unprocessable_handler(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, UnprocessableRequestError)
    return _answer(
        ValidationErrorOut(detail=error.reason, errors=[FieldErrorOut(field=error.field, reason=error.reason)])
    )


@dataclass(frozen=True)
class ErrorMapping:
    """What a domain error becomes: its status, and for a 422 the request field it names (``field_attribute``:
    the error's own attribute naming it, as ``InvalidTaskError.field`` does) and a prefix for the sentence."""

    status_code: int
    field: str = "body"
    field_attribute: str | None = None
    prefix: str = ""


#: Every domain error a route lets through. Looked up along the error's class hierarchy, most specific first
#: (Starlette's rule), so ``BlueModelUnavailableError`` (search: the server cannot answer) is a 503 although
#: the ``UnknownModelError`` it is answers 422 where a request named the model.
DOMAIN_ERRORS: dict[type[Exception], ErrorMapping] = {
    # clickstream
    UnknownSessionError: ErrorMapping(404),
    UnknownBatchError: ErrorMapping(404),
    SessionConflictError: ErrorMapping(409),
    EventConflictError: ErrorMapping(409),
    ItemNotInResultsError: ErrorMapping(422, field="events.item_id"),
    # tasks
    UnknownTaskError: ErrorMapping(404),
    InvalidTaskError: ErrorMapping(422, field_attribute="field"),
    IdempotencyConflictError: ErrorMapping(409),
    TaskStateError: ErrorMapping(409),
    # models and search
    UnknownModelError: ErrorMapping(422),
    RollbackUnavailableError: ErrorMapping(409),
    EmptyCollectionError: ErrorMapping(409),
    NoBlueModelError: ErrorMapping(503),
    BlueModelUnavailableError: ErrorMapping(503, prefix="the blue model cannot be loaded: "),
}


def _mapping_of(error: Exception) -> ErrorMapping:
    for cls in type(error).__mro__:
        mapping = DOMAIN_ERRORS.get(cls)
        if mapping is not None:
            return mapping
    raise LookupError(f"{type(error).__name__} has no HTTP mapping")  # install_error_handlers registers only these


async def domain_error_handler(_: Request, error: Exception) -> JSONResponse:
    """The answer :data:`DOMAIN_ERRORS` gives ``error``: ``{"detail"}``, or the 422 body naming its field."""
    mapping = _mapping_of(error)
    reason = mapping.prefix + str(error)
    if mapping.status_code == 422:
        field = getattr(error, mapping.field_attribute, mapping.field) if mapping.field_attribute else mapping.field
        return _answer(ValidationErrorOut(detail=reason, errors=[FieldErrorOut(field=field, reason=reason)]))
    return JSONResponse(status_code=mapping.status_code, content={"detail": reason})


def install_error_handlers(app: FastAPI) -> None:
    """Every error answer of the app: request validation, ``UnprocessableRequestError``, the domain errors, 405."""
    app.add_exception_handler(RequestValidationError, validation_handler)
    app.add_exception_handler(UnprocessableRequestError, unprocessable_handler)
    for error_class in DOMAIN_ERRORS:
        app.add_exception_handler(error_class, domain_error_handler)
    app.add_exception_handler(405, method_not_allowed_handler)


# ------------------------------------------------------------------- documented answers of the task routes

UNKNOWN_TASK = "No task of this kind with this id."
TASK_STATE = "The task's state does not allow it (e.g. it has already finished)."
IDEMPOTENCY_CONFLICT = "The idempotency key already belongs to a task of another kind."
TASK_ERRORS = error_responses({404: UNKNOWN_TASK, 422: INVALID_REQUEST})
CANCEL_ERRORS = error_responses({404: UNKNOWN_TASK, 409: TASK_STATE, 422: INVALID_REQUEST})


def task_created_responses(invalid_also: str) -> dict[int | str, dict[str, Any]]:
    """What a task-creating route answers besides 202: the task again for a reused idempotency key, a conflicting
    key, and the request errors (``invalid_also`` says what else the route refuses as 422)."""
    return {
        200: {"description": "The idempotency key was used before: its task is given back.", "model": TaskCreatedOut},
        **body_error_responses({409: IDEMPOTENCY_CONFLICT, 422: f"{INVALID_REQUEST} Also {invalid_also}"}),
    }


async def method_not_allowed_handler(request: Request, error: Exception) -> JSONResponse:
    """405 with an ``Allow`` listing every method the OpenAPI document gives the path, not only the first route's.

    Starlette answers from the first route whose path matches, so ``OPTIONS /fine-tuning/tasks`` said
    ``Allow: POST`` although GET is served there too. The path is matched against the document's templates
    (a parameter may span '/', as ``{session_id:path}`` does); the template with the most literal text wins,
    so ``/sessions/x/events`` is the events path, not session ``x/events``.
    """
    assert isinstance(error, StarletteHTTPException)
    paths: dict[str, dict[str, object]] = request.app.openapi()["paths"]
    path = request.url.path
    matches = [template for template in paths if _template_regex(template).fullmatch(path)]
    if not matches:
        return JSONResponse(status_code=405, content={"detail": error.detail}, headers=dict(error.headers or {}))
    best = max(matches, key=lambda template: len(_PARAMETER.sub("", template)))
    allow = ", ".join(sorted(method.upper() for method in paths[best]))
    return JSONResponse(status_code=405, content={"detail": error.detail}, headers={"Allow": allow})


_PARAMETER = re.compile(r"\{[^}]+\}")


def _template_regex(template: str) -> re.Pattern[str]:
    parts = _PARAMETER.split(template)
    return re.compile(".+".join(re.escape(part) for part in parts))
