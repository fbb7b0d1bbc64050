"""Split items too long for the model into parts that fit, with overlap, remembering the order.

A model sees at most ``max_tokens`` tokens; what is past that is truncated and never trained on or
searched. Long texts are cut into windows of ``max_tokens`` tokens, consecutive windows sharing
``overlap`` tokens so a phrase on a boundary is whole in one of them. Dict items are split on field
lines first (``field: value``), packed greedily into parts, and only a line that is itself too long
is cut by tokens.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

_WORD = re.compile(r"\S+")

Span = tuple[int, int]


def whitespace_spans(text: str) -> list[Span]:
    return [(match.start(), match.end()) for match in _WORD.finditer(text)]


def _tokenizer_spans(tokenizer: Any) -> Callable[[str], list[Span]]:
    """Character spans of the tokens of ``text`` under ``tokenizer``.

    A Hugging Face fast tokenizer gives offsets directly; a plain callable returning token strings is
    mapped back onto the text by searching each token (case-insensitively, for uncased tokenizers)
    after the previous one (word-piece markers such as ``##`` are stripped first); a token that cannot
    be found takes a zero-width span, so counting stays exact even when the reconstruction is approximate.
    """
    if tokenizer is None:
        return whitespace_spans
    if getattr(tokenizer, "is_fast", False):

        def hf_spans(text: str) -> list[Span]:
            encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, truncation=False)
            return [(int(start), int(end)) for start, end in encoded["offset_mapping"]]

        return hf_spans

    def callable_spans(text: str) -> list[Span]:
        spans: list[Span] = []
        cursor = 0
        folded = text.lower() if len(text.lower()) == len(text) else text
        for token in tokenizer(text):
            piece = str(token).removeprefix("##").removeprefix("Ġ").removeprefix("▁").lower()
            found = folded.find(piece, cursor) if piece else -1
            if found < 0:
                spans.append((cursor, cursor))
                continue
            spans.append((found, found + len(piece)))
            cursor = found + len(piece)
        return spans

    return callable_spans


class TextSplitter:
    """Cuts a text into windows of at most ``max_tokens`` tokens, overlapping by ``overlap`` tokens.

    Windows start every ``max_tokens - overlap`` tokens; a text within ``max_tokens`` stays one part.
    Parts are slices of the original text (spacing and punctuation kept).
    """

    def __init__(self, max_tokens: int, overlap: int = 0, tokenizer: Any = None) -> None:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        if not 0 <= overlap < max_tokens:
            raise ValueError(f"overlap must be in [0, max_tokens), got {overlap} with max_tokens={max_tokens}")
        self.max_tokens = max_tokens
        self.overlap = overlap
        self._spans = _tokenizer_spans(tokenizer)

    def count_tokens(self, text: str) -> int:
        return len(self._spans(text))

    def split(self, text: str) -> list[str]:
        spans = self._spans(text)
        if len(spans) <= self.max_tokens:
            return [text]
        step = self.max_tokens - self.overlap
        parts: list[str] = []
        for start in range(0, len(spans), step):
            window = spans[start : start + self.max_tokens]
            parts.append(text[min(s for s, _ in window) : max(e for _, e in window)].strip())
            if start + self.max_tokens >= len(spans):
                break
        return [part for part in parts if part] or [text]

    def split_fields(self, record: Mapping[str, Any]) -> list[str]:
        """One ``field: value`` line per field, packed into parts of at most ``max_tokens`` tokens."""
        lines = [f"{key}: {value}" for key, value in record.items() if value not in (None, "")]
        parts: list[str] = []
        current: list[str] = []
        current_tokens = 0
        for line in lines:
            tokens = self.count_tokens(line)
            if tokens > self.max_tokens:
                if current:
                    parts.append("\n".join(current))
                    current, current_tokens = [], 0
                parts.extend(self.split(line))
                continue
            if current and current_tokens + tokens > self.max_tokens:
                parts.append("\n".join(current))
                current, current_tokens = [], 0
            current.append(line)
            current_tokens += tokens
        if current:
            parts.append("\n".join(current))
        return parts
