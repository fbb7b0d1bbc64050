"""The one 422 body of the API, whether pydantic refused the request or a check behind the route did.

A client reads ``errors`` on every 422; an answer that is sometimes ``{"detail": ...}`` and sometimes
``{"detail": ..., "errors": [...]}`` could not be described by one schema.
"""

from __future__ import annotations

import re

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from embedding_studio.api.schemas.errors import FieldErrorOut, ValidationErrorOut


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
