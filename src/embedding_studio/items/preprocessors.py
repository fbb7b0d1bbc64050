"""Turn prepared content into model inputs, one preprocessor per modality.

Text is tokenized by the tokenizer the model uses (passed in, never downloaded). Images are resized
and normalized with PIL, numpy and torch, to the ``(3, size, size)`` float tensor CLIP-style towers
take.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

# CLIP's pixel statistics: the default because the text-to-image towers are CLIP-style.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class Preprocessor(Protocol):
    modality: str

    def __call__(self, values: Sequence[Any]) -> Any: ...


class TextPreprocessor:
    """Tokenizes a list of texts into padded tensors with a Hugging Face tokenizer (or any callable with its
    signature) truncated to ``max_length`` tokens."""

    modality = "text"

    def __init__(self, tokenizer: Any, max_length: int = 256) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be at least 1, got {max_length}")
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, values: Sequence[str]) -> dict[str, torch.Tensor]:
        return dict(
            self.tokenizer(list(values), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        )


class ImagePreprocessor:
    """Resizes the shorter side to ``size`` (bicubic), center-crops to ``size``×``size`` and normalizes each
    channel: ``x = (pixel / 255 - mean) / std``. Returns a ``(n, 3, size, size)`` float32 tensor."""

    modality = "image"

    def __init__(self, size: int = 224, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD) -> None:
        if size < 1:
            raise ValueError(f"image size must be at least 1, got {size}")
        if len(mean) != 3 or len(std) != 3 or any(value <= 0 for value in std):
            raise ValueError("mean and std need three values each, std all positive")
        self.size = size
        self.mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)

    def one(self, image: Image.Image) -> torch.Tensor:
        image = image.convert("RGB")
        width, height = image.size
        scale = self.size / min(width, height)
        resized = image.resize(
            (max(self.size, round(width * scale)), max(self.size, round(height * scale))), Image.Resampling.BICUBIC
        )
        left = (resized.width - self.size) // 2
        top = (resized.height - self.size) // 2
        cropped = resized.crop((left, top, left + self.size, top + self.size))
        pixels = np.asarray(cropped, dtype=np.float32).transpose(2, 0, 1) / 255.0
        return torch.from_numpy((pixels - self.mean) / self.std)

    def __call__(self, values: Sequence[Image.Image]) -> torch.Tensor:
        if not values:
            return torch.empty((0, 3, self.size, self.size), dtype=torch.float32)
        return torch.stack([self.one(image) for image in values])
