"""Error bodies of the API, declared on every operation so the OpenAPI document shows what a client receives.

Every error answer has a ``detail`` sentence; a 422 also lists each wrong field and why in ``errors``.
FastAPI would otherwise advertise its own ``HTTPValidationError`` for 422, which this API never sends.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorOut(BaseModel):
    """A refused request (401, 404, 409, 503): ``detail`` says what was wrong, naming the id concerned."""

    detail: str = Field(description="What went wrong, e.g. \"task 'abc' does not exist\".")


class FieldErrorOut(BaseModel):
    field: str = Field(
        description='Dotted location of the wrong value, e.g. "events.0.item_id" or "query.limit"; '
        '"body" when the body as a whole is wrong.'
    )
    reason: str = Field(description="Why the value was refused.")


class ValidationErrorOut(BaseModel):
    """Every 422 of the API: a request that is well formed JSON but cannot be accepted as it is."""

    detail: str = Field(
        description='"invalid request", "malformed JSON body", or the one reason the request was refused.'
    )
    errors: list[FieldErrorOut] = Field(description="Each wrong field and why.")


_MODELS: dict[int, type[BaseModel]] = {
    400: ErrorOut,
    401: ErrorOut,
    404: ErrorOut,
    409: ErrorOut,
    422: ValidationErrorOut,
    503: ErrorOut,
}

UNREADABLE_BODY = "The body could not be read as JSON text (e.g. it is not UTF-8)."
INVALID_REQUEST = "A parameter or the body is invalid: `errors` names each wrong field and why."
UNAUTHORIZED = "API keys are configured and the request has none ('Authorization: Bearer <key>') or a wrong one."


def error_responses(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route: each error status it can answer with, its body model and when it happens."""
    return {code: {"model": _MODELS[code], "description": description} for code, description in descriptions.items()}


def body_error_responses(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """As :func:`error_responses`, for a route with a JSON body: FastAPI answers 400 when the body is not
    text and 422 (this API's body) when it is not valid JSON or not what the route takes."""
    return error_responses({400: UNREADABLE_BODY, 422: INVALID_REQUEST, **descriptions})
