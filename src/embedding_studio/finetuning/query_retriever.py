"""Turns the query of a session into the text the query tower reads.

Search engines log queries either as plain strings or as JSON objects (a query with filters, a
product card used as a query...). Training and evaluation need one text per query, so JSON objects
are rendered by a template naming their fields, e.g. ``"{title} {category}"``.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from embedding_studio.clickstream.types import FineTuningInput


class QueryRenderError(ValueError):
    """A query could not be turned into text; the message names the session and the field."""


@runtime_checkable
class QueryRetriever(Protocol):
    """What the fine-tuner and the splitter need from queries: one text per input, in order."""

    def get_query(self, query: str | Mapping[str, Any], session_id: str | None = None) -> str: ...

    def get_queries(self, inputs: Sequence[FineTuningInput]) -> list[str]: ...


class TextQueryRetriever:
    """String queries pass through as they are; JSON object queries are rendered by ``template``.

    ``template`` uses ``str.format`` fields (``"{title} {category}"``, ``"{brand.name}"`` is not
    supported: nested objects are rendered with ``str``). Without a template, an object query is the
    space-joined values of its fields in their stored order, so a plain ``{"text": "..."}`` works.
    A field the template names but the query lacks is an error naming both, never an empty string:
    a silently empty query would train the model on nothing.
    """

    def __init__(self, template: str | None = None) -> None:
        self.template = template
        self.fields: tuple[str, ...] = ()
        if template is not None:
            fields: list[str] = []
            try:
                parsed = list(string.Formatter().parse(template))
            except ValueError as error:
                raise QueryRenderError(f"query template {template!r} is not a valid format string: {error}") from None
            for _, field_name, _, _ in parsed:
                if field_name is None:
                    continue
                if field_name == "" or field_name.isdigit():
                    raise QueryRenderError(
                        f"query template {template!r} must name its fields, e.g. '{{title}} {{category}}'"
                    )
                fields.append(field_name)
            if not fields:
                raise QueryRenderError(f"query template {template!r} names no field of the query")
            self.fields = tuple(fields)

    def get_query(self, query: str | Mapping[str, Any], session_id: str | None = None) -> str:
        where = f" of session {session_id!r}" if session_id is not None else ""
        if isinstance(query, str):
            return query
        if not isinstance(query, Mapping):
            raise QueryRenderError(f"query{where} is a {type(query).__name__}, expected a string or a JSON object")
        if self.template is None:
            return " ".join(_field_text(value) for value in query.values() if value is not None).strip()
        missing = [name for name in self.fields if name not in query]
        if missing:
            raise QueryRenderError(
                f"query{where} has no field {missing[0]!r} named by the template {self.template!r} "
                f"(fields present: {', '.join(sorted(map(str, query))) or 'none'})"
            )
        values = {name: _field_text(query[name]) for name in self.fields}
        return self.template.format_map(values).strip()

    def get_queries(self, inputs: Sequence[FineTuningInput]) -> list[str]:
        return [self.get_query(fine_tuning_input.query, fine_tuning_input.session_id) for fine_tuning_input in inputs]


def _field_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return " ".join(_field_text(element) for element in value)
    return str(value)


def normalize_query_text(text: str) -> str:
    """The key under which sessions count as the same query: case and spacing do not make a new query."""
    return " ".join(text.casefold().split())
