"""Text augmentations for training examples: case changes and misspellings.

Users type queries in any case and with typos; showing the model such variants of the training
queries (or items) makes it robust to them. Every augmentation draws from a ``random.Random`` the
caller seeds, so a run is reproducible, and each applies with a probability, so only a share of the
examples change. Augmentations are never applied to the test split: it must measure real queries.
"""

from __future__ import annotations

import random
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

# Neighbours on a QWERTY keyboard: a slipped finger is the most common typo.
_KEYBOARD_NEIGHBOURS: dict[str, str] = {
    "q": "wa", "w": "qes", "e": "wrd", "r": "etf", "t": "ryg", "y": "tuh", "u": "yij", "i": "uok", "o": "ipl",
    "p": "ol", "a": "qsz", "s": "awdz", "d": "sefx", "f": "drgc", "g": "fthv", "h": "gyjb", "j": "hukn",
    "k": "jilm", "l": "kop", "z": "asx", "x": "zdc", "c": "xfv", "v": "cgb", "b": "vhn", "n": "bjm", "m": "nk",
}  # fmt: skip


class TextAugmentation(Protocol):
    def __call__(self, text: str, rng: random.Random) -> str: ...


@dataclass(frozen=True)
class ChangeCase:
    """Rewrites the whole text in one case: lower, upper, title or "random" (each letter flipped at random)."""

    modes: Sequence[Literal["lower", "upper", "title", "random"]] = ("lower", "upper", "title")

    def __call__(self, text: str, rng: random.Random) -> str:
        mode = rng.choice(list(self.modes))
        if mode == "lower":
            return text.lower()
        if mode == "upper":
            return text.upper()
        if mode == "title":
            return text.title()
        return "".join(char.upper() if rng.random() < 0.5 else char.lower() for char in text)


@dataclass(frozen=True)
class Misspell:
    """Introduces typos into about ``rate`` of the words longer than 3 letters (at least one): a swapped pair,
    a dropped, doubled or neighbouring-key letter."""

    rate: float = 0.2

    def _misspell_word(self, word: str, rng: random.Random) -> str:
        position = rng.randrange(1, len(word) - 1)
        kind = rng.choice(("swap", "drop", "double", "neighbour"))
        if kind == "swap":
            return word[:position] + word[position + 1] + word[position] + word[position + 2 :]
        if kind == "drop":
            return word[:position] + word[position + 1 :]
        if kind == "double":
            return word[:position] + word[position] + word[position:]
        letter = word[position]
        neighbours = _KEYBOARD_NEIGHBOURS.get(letter.lower(), string.ascii_lowercase)
        replacement = rng.choice(neighbours)
        return word[:position] + (replacement.upper() if letter.isupper() else replacement) + word[position + 1 :]

    def __call__(self, text: str, rng: random.Random) -> str:
        words = text.split(" ")
        candidates = [index for index, word in enumerate(words) if len(word) > 3 and word.isalpha()]
        if not candidates:
            return text
        count = max(1, round(self.rate * len(candidates)))
        for index in rng.sample(candidates, min(count, len(candidates))):
            words[index] = self._misspell_word(words[index], rng)
        return " ".join(words)


@dataclass
class AugmentationConfig:
    """What to augment and how: each training example gets ``copies`` variants, each variant made by
    every augmentation in turn, each applied with ``probability``; identical variants are not kept."""

    target: Literal["queries", "items", "both"] = "queries"
    probability: float = 0.5
    copies: int = 1
    seed: int = 0
    augmentations: list[TextAugmentation] = field(default_factory=lambda: [ChangeCase(), Misspell()])

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"augmentation probability must be in [0, 1], got {self.probability}")
        if self.copies < 0:
            raise ValueError(f"augmentation copies must not be negative, got {self.copies}")
        if self.target not in ("queries", "items", "both"):
            raise ValueError(f"augmentation target must be queries, items or both, got {self.target!r}")


class Augmenter:
    """Applies an ``AugmentationConfig`` deterministically: the same seed and inputs give the same variants."""

    def __init__(self, config: AugmentationConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)

    def augment(self, text: str) -> str:
        for augmentation in self.config.augmentations:
            if self.rng.random() < self.config.probability:
                text = augmentation(text, self.rng)
        return text

    def variants(self, text: str) -> list[str]:
        """Up to ``copies`` distinct variants of ``text``, none equal to it."""
        seen = {text}
        variants: list[str] = []
        for _ in range(self.config.copies):
            variant = self.augment(text)
            if variant not in seen:
                seen.add(variant)
                variants.append(variant)
        return variants
