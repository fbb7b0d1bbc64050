"""Splitting an item's text into the parts that are embedded one by one.

A model sees at most ``max_seq_length`` tokens, so a long item is cut into parts of a bounded number
of words, each embedded separately; search then scores an item by its best part. Words, not tokens,
are counted so the split is the same for every model and a change log entry can be re-split later.
"""

from __future__ import annotations

DEFAULT_WORDS_PER_PART = 200


def split_into_parts(text: str, words_per_part: int = DEFAULT_WORDS_PER_PART) -> list[str]:
    """Cut ``text`` into consecutive runs of at most ``words_per_part`` words; an empty text is one empty part."""
    if words_per_part < 1:
        raise ValueError(f"words_per_part must be at least 1, got {words_per_part}")
    words = text.split()
    if len(words) <= words_per_part:
        return [text.strip()]
    return [" ".join(words[start : start + words_per_part]) for start in range(0, len(words), words_per_part)]
