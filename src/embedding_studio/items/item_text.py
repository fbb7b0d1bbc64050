"""The item-to-text rules, defined in ``embedding_studio.schemas.item_text`` (pure Python, so the request models
that validate ``item_text`` options install with the client) and re-exported here, where the item code looks."""

from embedding_studio.schemas.item_text import (
    DEFAULT_SEPARATOR,
    DEFAULT_WORDS_PER_PART,
    ItemText,
    ItemTextError,
    item_parts,
    item_text,
    template_fields,
)

__all__ = [
    "DEFAULT_SEPARATOR",
    "DEFAULT_WORDS_PER_PART",
    "ItemText",
    "ItemTextError",
    "item_parts",
    "item_text",
    "template_fields",
]
