"""What search shows with each item: a small display payload kept beside its vectors.

A result is only useful if a person can judge it, and an item id (``"4713748"``) says nothing. So every
indexed item keeps a *display payload*, a JSON object stored with each of its parts and returned by search:

* ``title``: the item's title-like field (``display.title_field``, else the first of :data:`TITLE_FIELDS`
  it has with a text), when there is one;
* ``snippet``: the start of the item's text, as the model embeds it (``schemas.item_text`` with the
  collection's ``ItemText``, so there is one item-to-text function), without the title it starts with,
  cut at a word to at most ``display.snippet_chars`` characters;
* the fields ``display.fields`` names, copied as they are (a URL, a price, an image link);
* the payload the item came with (an upserted item's ``payload``, a loader's ``extra``), which wins over
  the above on the same key, since the caller said it explicitly.

The payload is a plain JSON object so other kinds of items (images) can add their own keys. It is kept
small on purpose: it is stored once per part and read by every search.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from embedding_studio.schemas.item_text import ItemText, ItemTextError, item_text

#: Fields taken as an item's title when the collection names none, first match wins (case-insensitive).
TITLE_FIELDS = ("title", "name", "headline", "subject", "label")
DEFAULT_SNIPPET_CHARS = 200
#: A snippet longer than this would make every stored part and every search answer heavy.
MAX_SNIPPET_CHARS = 2000
#: A title is a line in a results table, not a text.
MAX_TITLE_CHARS = 300


class ItemDisplayError(ValueError):
    """Display options that cannot work (the message says which)."""


@dataclass(frozen=True)
class ItemDisplay:
    """Which parts of an item search returns with it; see the module docstring. The default suits most catalogs."""

    fields: tuple[str, ...] = ()
    title_field: str | None = None
    snippet_chars: int = DEFAULT_SNIPPET_CHARS

    def __post_init__(self) -> None:
        if isinstance(self.fields, str):
            raise ItemDisplayError(f"display.fields must be a list of field names, got the string {self.fields!r}")
        object.__setattr__(self, "fields", tuple(self.fields))
        if any(not isinstance(name, str) or not name for name in self.fields):
            raise ItemDisplayError(f"display.fields must be non-empty field names, got {list(self.fields)!r}")
        if self.title_field is not None and not self.title_field:
            raise ItemDisplayError("display.title_field must be a field name (or null for a title-like field)")
        if not 0 <= self.snippet_chars <= MAX_SNIPPET_CHARS:
            raise ItemDisplayError(
                f"display.snippet_chars must be between 0 (no snippet) and {MAX_SNIPPET_CHARS}, "
                f"got {self.snippet_chars}"
            )

    def as_options(self) -> dict[str, Any]:
        """JSON-ready options, as stored with a collection and accepted by :meth:`from_options`."""
        options = asdict(self)
        options["fields"] = list(self.fields)
        return options

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> ItemDisplay:
        """Options as stored or sent (``None`` or ``{}``: the default); an unknown option is named."""
        if not options:
            return cls()
        unknown = sorted(set(options) - {"fields", "title_field", "snippet_chars"})
        if unknown:
            raise ItemDisplayError(
                f"unknown display option {', '.join(map(repr, unknown))}; known: fields, title_field, snippet_chars"
            )
        values = dict(options)
        if "fields" in values and not isinstance(values["fields"], str):
            values["fields"] = tuple(values["fields"] or ())
        return cls(**values)


def _title(data: Mapping[str, Any], display: ItemDisplay) -> str | None:
    names = (display.title_field,) if display.title_field else TITLE_FIELDS
    by_lower = {str(key).lower(): key for key in data}
    for name in names:
        key = name if name in data else by_lower.get(name.lower())
        value = data.get(key) if key is not None else None
        if isinstance(value, str | int | float) and not isinstance(value, bool) and str(value).strip():
            return _shorten(" ".join(str(value).split()), MAX_TITLE_CHARS)
    return None


def _shorten(text: str, width: int) -> str:
    """At most ``width`` characters, cut at a word with an ellipsis (a single long word is cut inside)."""
    if len(text) <= width:
        return text
    cut = textwrap.shorten(text, width=width, placeholder=" …")
    if cut == "…" or cut.strip() == "…":
        return text[: max(width - 1, 0)] + "…"
    return cut


def _snippet(data: Any, config: ItemText, title: str | None, width: int) -> str | None:
    if width == 0:
        return None
    try:
        text = " ".join(item_text(data, config).split())
    except ItemTextError:
        return None  # an image, or an item with no text under this config: nothing to show
    if title and text.startswith(title):
        text = text[len(title) :].lstrip(" .:;-—|")
    return _shorten(text, width) if text else None


def display_payload(
    data: Any,
    config: ItemText = ItemText(),
    display: ItemDisplay = ItemDisplay(),
    payload: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The payload stored with an item's parts; ``None`` when there is nothing to show. Never raises on data.

    ``config`` is the collection's ``ItemText`` (the snippet is the text it embeds); ``payload`` the one the
    item came with, which wins on a shared key.
    """
    shown: dict[str, Any] = {}
    title = _title(data, display) if isinstance(data, Mapping) else None
    if title:
        shown["title"] = title
    snippet = _snippet(data, config, title, display.snippet_chars)
    if snippet:
        shown["snippet"] = snippet
    if isinstance(data, Mapping):
        for name in display.fields:
            if name in data and data[name] is not None:
                shown[name] = data[name]
    if payload:
        shown.update(payload)
    return shown or None
