"""The display payload: what search shows of an item, made from the one item-to-text function."""

from __future__ import annotations

import pytest

from embedding_studio.items.display import ItemDisplay, ItemDisplayError, display_payload
from embedding_studio.items.item_text import ItemText, item_text


def test_a_titled_item_shows_its_title_and_the_rest_of_its_text_as_the_snippet() -> None:
    item = {"title": "Magpul FMG-9", "text": "The Magpul FMG-9 is a prototype folding submachine gun.", "url": "u"}
    payload = display_payload(item)
    # The snippet is the text the model embeds (item_text), without the title it starts with.
    assert item_text(item).startswith("Magpul FMG-9. ")
    assert payload == {"title": "Magpul FMG-9", "snippet": "The Magpul FMG-9 is a prototype folding submachine gun. u"}


def test_title_like_fields_are_found_case_insensitively_and_empty_titles_are_skipped() -> None:
    assert display_payload({"Name": "teapot", "description": "a pot"}) == {"title": "teapot", "snippet": "a pot"}
    # msmarco's items have an empty title: no title, the whole text is the snippet.
    assert display_payload({"title": "", "text": "only text"}) == {"snippet": "only text"}
    assert display_payload("a plain text item") == {"snippet": "a plain text item"}


def test_snippets_are_capped_at_a_word_and_named_fields_are_copied() -> None:
    long_text = " ".join(f"word{index}" for index in range(200))
    display = ItemDisplay(fields=("url", "price", "missing"), title_field="heading", snippet_chars=40)
    payload = display_payload(
        {"heading": "H", "body": long_text, "url": "https://x", "price": 9.5}, ItemText(fields=("body",)), display
    )
    assert payload is not None and payload["title"] == "H" and payload["url"] == "https://x" and payload["price"] == 9.5
    assert len(payload["snippet"]) <= 40 and payload["snippet"].endswith("…") and "missing" not in payload
    assert not payload["snippet"].rstrip(" …").endswith("word")  # cut between words, not inside one
    # The item's own payload wins on a shared key; snippet_chars=0 shows no snippet.
    assert display_payload("text", display=ItemDisplay(snippet_chars=0), payload={"title": "mine"}) == {"title": "mine"}


def test_items_without_text_get_no_snippet_and_never_raise() -> None:
    assert display_payload({"flag": True}) is None
    assert display_payload(object()) is None  # e.g. an image: other keys come from its own payload
    assert display_payload({"n": None}, payload={"image": "a.png"}) == {"image": "a.png"}


def test_display_options_round_trip_and_bad_ones_are_named() -> None:
    display = ItemDisplay(fields=("url",), title_field="name", snippet_chars=80)
    assert ItemDisplay.from_options(display.as_options()) == display
    assert ItemDisplay.from_options(None) == ItemDisplay()
    with pytest.raises(ItemDisplayError, match="unknown display option 'colour'"):
        ItemDisplay.from_options({"colour": "red"})
    with pytest.raises(ItemDisplayError, match="snippet_chars"):
        ItemDisplay(snippet_chars=100_000)
    with pytest.raises(ItemDisplayError, match="list of field names"):
        ItemDisplay(fields="url")  # type: ignore[arg-type]
