"""The one place a loaded item becomes the texts a model embeds: training, reindex and upserts all call it.

A model is only as good as the agreement between what it was trained on and what it is served: an item
trained on as ``"title. text"`` but indexed as ``"title. text. https://..."`` is scored on text the model
never learned from. So the fine-tuning method carries one :class:`ItemText` (which fields, an optional
template, how many words per part), the item set manager prepares training items with it, and every
collection remembers the one it was built with, so a reindex and every later upsert into it cut items
exactly as training did.

An item is a string (used as is) or a JSON object (a mapping of fields). Of a mapping, ``fields`` picks
the fields to join (in that order; by default every text or number field, in the item's order), or
``template`` formats them (``"{name}: {description}"``). The text is then cut into parts of at most
``words_per_part`` words, each embedded separately; search scores an item by its best part. Words, not
tokens, are counted, so the split is the same for every model and can be redone without one.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

DEFAULT_SEPARATOR = ". "
DEFAULT_WORDS_PER_PART = 200
#: A value ending like a sentence is joined to the next with a space, not with ". " (no "Title.. text").
_SENTENCE_ENDS = (".", "!", "?", ":")


class ItemTextError(ValueError):
    """An item cannot be turned into text with the configured fields or template (the message says why)."""


@dataclass(frozen=True)
class ItemText:
    """How an item becomes text parts; see the module docstring. The default joins every text field."""

    fields: tuple[str, ...] = ()
    template: str | None = None
    separator: str = DEFAULT_SEPARATOR
    words_per_part: int = DEFAULT_WORDS_PER_PART

    def __post_init__(self) -> None:
        if isinstance(self.fields, str):
            raise ItemTextError(f"item_text.fields must be a list of field names, got the string {self.fields!r}")
        object.__setattr__(self, "fields", tuple(self.fields))
        if any(not isinstance(name, str) or not name for name in self.fields):
            raise ItemTextError(f"item_text.fields must be non-empty field names, got {list(self.fields)!r}")
        if self.template is not None:
            if self.fields:
                raise ItemTextError("item_text takes fields or a template, not both (the template names its fields)")
            if not template_fields(self.template):
                raise ItemTextError(f"item_text.template {self.template!r} names no field, e.g. '{{title}}. {{text}}'")
        if self.words_per_part < 1:
            raise ItemTextError(f"item_text.words_per_part must be at least 1, got {self.words_per_part}")

    def as_options(self) -> dict[str, Any]:
        """JSON-ready options, as stored with a collection and accepted by :meth:`from_options`."""
        options = asdict(self)
        options["fields"] = list(self.fields)
        return options

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> ItemText:
        """Options as stored or sent (``None`` or ``{}``: the default); an unknown option is named."""
        if not options:
            return cls()
        unknown = sorted(set(options) - {"fields", "template", "separator", "words_per_part"})
        if unknown:
            raise ItemTextError(
                f"unknown item_text option {', '.join(map(repr, unknown))}; "
                "known: fields, template, separator, words_per_part"
            )
        values = dict(options)
        if "fields" in values and not isinstance(values["fields"], str):
            values["fields"] = tuple(values["fields"] or ())
        return cls(**values)


def template_fields(template: str) -> list[str]:
    try:
        return [name for _, name, _, _ in string.Formatter().parse(template) if name]
    except ValueError as error:
        raise ItemTextError(f"item_text.template {template!r} is not a valid format string ({error})") from None


def _field_text(value: Any) -> str | None:
    """A field's text: strings and numbers count; booleans, lists, objects and nulls are not text."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int | float):
        text = str(value).strip()
        return text or None
    return None


def _join(values: list[str], separator: str) -> str:
    joined = ""
    for value in values:
        if not joined:
            joined = value
        elif separator.strip() and joined.endswith(_SENTENCE_ENDS):
            joined = f"{joined} {value}"
        else:
            joined = f"{joined}{separator}{value}"
    return joined


def item_text(data: Any, config: ItemText = ItemText()) -> str:
    """The whole text of ``data`` under ``config``, before it is cut into parts (raises ``ItemTextError``)."""
    if isinstance(data, str):
        text = data.strip()
        if not text:
            raise ItemTextError("the item's text is empty")
        return text
    if not isinstance(data, Mapping):
        raise ItemTextError(f"cannot turn a {type(data).__name__} into text; expected a string or a JSON object")
    if config.template is not None:
        values = {key: _field_text(value) or "" for key, value in data.items()}
        names = template_fields(config.template)
        if not any(values.get(name) for name in names):
            raise ItemTextError(f"the item has none of the template's fields {names}; its fields: {sorted(data)}")
        text = string.Formatter().vformat(config.template, (), _Blank(values)).strip()
        return text
    if config.fields:
        texts = [text for name in config.fields if (text := _field_text(data.get(name)))]
        if not texts:
            raise ItemTextError(
                f"the item has none of the fields {list(config.fields)} with a text or number; "
                f"its fields: {sorted(data)}"
            )
        return _join(texts, config.separator)
    texts = [text for value in data.values() if (text := _field_text(value))]
    if not texts:
        raise ItemTextError(f"the item has no field with a text or number; its fields: {sorted(data)}")
    return _join(texts, config.separator)


def item_parts(data: Any, config: ItemText = ItemText()) -> list[str]:
    """The texts a model embeds for ``data``: its text cut into runs of at most ``words_per_part`` words.

    Training, reindex and upserts all call this, so an item is embedded the same way wherever it goes.
    """
    text = item_text(data, config)
    words = text.split()
    if len(words) <= config.words_per_part:
        return [text]
    size = config.words_per_part
    return [" ".join(words[start : start + size]) for start in range(0, len(words), size)]


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""
