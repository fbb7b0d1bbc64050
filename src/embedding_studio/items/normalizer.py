"""``DatasetFieldsNormalizer``: bring items from any source to the fields the model expects.

Sources name their fields as they like (``headline``/``body``, ``title``/``text``); the model takes
one text. The normalizer renames fields (source name → model name), then joins the wanted fields
into one text, or fills a template such as ``"{title}. {text}"``. Text items pass through.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class NormalizationError(ValueError):
    """An item has none of the fields the model needs, or a type the normalizer cannot turn into text."""


class _BlankForMissing(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


@dataclass
class DatasetFieldsNormalizer:
    """Maps a dict item to one text.

    ``field_map`` renames source fields to the model's names; with ``template`` the text is
    ``template.format(**fields)`` (missing fields empty, blank edges trimmed); otherwise the non-empty
    values of ``text_fields`` (in that order) are joined with ``separator``. With ``keep_fields=True``
    dict items stay dicts (only renamed and filtered) so splitting can work field by field.
    """

    field_map: Mapping[str, str] = field(default_factory=dict)
    text_fields: Sequence[str] = ("title", "text")
    separator: str = ". "
    template: str | None = None
    keep_fields: bool = False

    def __post_init__(self) -> None:
        if self.template is not None:
            names = [name for _, name, _, _ in string.Formatter().parse(self.template) if name]
            if not names:
                raise ValueError(f"template {self.template!r} names no field")

    def rename(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return {self.field_map.get(key, key): value for key, value in record.items()}

    def __call__(self, data: Any) -> Any:
        if isinstance(data, str):
            return data
        if not isinstance(data, Mapping):
            if hasattr(data, "size") and hasattr(data, "mode"):  # a PIL image passes through
                return data
            raise NormalizationError(f"cannot normalize a {type(data).__name__}; expected text, a dict or an image")
        record = self.rename(data)
        if self.keep_fields:
            wanted = {key: record[key] for key in self.text_fields if record.get(key) not in (None, "")}
            if not wanted:
                raise NormalizationError(f"none of the fields {list(self.text_fields)} in {sorted(record)}")
            return wanted
        if self.template is not None:
            text = self.template.format_map(_BlankForMissing({k: "" if v is None else v for k, v in record.items()}))
            text = text.strip().strip(self.separator.strip() or " ").strip()
            if not text:
                raise NormalizationError(f"template {self.template!r} gives an empty text for fields {sorted(record)}")
            return text
        values = [str(record[key]).strip() for key in self.text_fields if record.get(key) not in (None, "")]
        values = [value for value in values if value]
        if not values:
            raise NormalizationError(f"none of the fields {list(self.text_fields)} in {sorted(record)}")
        return self.separator.join(values)
