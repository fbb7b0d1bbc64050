"""The display payload of search results, defined in ``embedding_studio.schemas.display`` (pure Python, so the
request models that validate ``item_display`` options install with the client) and re-exported here."""

from embedding_studio.schemas.display import (
    DEFAULT_SNIPPET_CHARS,
    MAX_SNIPPET_CHARS,
    MAX_TITLE_CHARS,
    TITLE_FIELDS,
    ItemDisplay,
    ItemDisplayError,
    display_payload,
)

__all__ = [
    "DEFAULT_SNIPPET_CHARS",
    "MAX_SNIPPET_CHARS",
    "MAX_TITLE_CHARS",
    "TITLE_FIELDS",
    "ItemDisplay",
    "ItemDisplayError",
    "display_payload",
]
