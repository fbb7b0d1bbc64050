"""Embedding model wrappers (text two-tower, CLIP-style text-to-image), saving, loading and devices.

Heavy libraries (sentence-transformers, transformers) load on first use of a model class, so importing
this package for its errors or `resolve_device` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from embedding_studio.models.errors import DeviceUnavailableError, ModelError, ModelNotFoundError

if TYPE_CHECKING:
    from embedding_studio.models.clip import TextToImageEmbeddingModel, build_tiny_clip_model, is_image_model
    from embedding_studio.models.device import cuda_memory_allocated, release_memory, resolve_device
    from embedding_studio.models.loading import load_embedding_model
    from embedding_studio.models.text import TextEmbeddingModel
    from embedding_studio.models.tiny import build_tiny_text_model

_LAZY = {
    "TextEmbeddingModel": "embedding_studio.models.text",
    "load_embedding_model": "embedding_studio.models.loading",
    "build_tiny_text_model": "embedding_studio.models.tiny",
    "TextToImageEmbeddingModel": "embedding_studio.models.clip",
    "build_tiny_clip_model": "embedding_studio.models.clip",
    "is_image_model": "embedding_studio.models.clip",
    "resolve_device": "embedding_studio.models.device",
    "release_memory": "embedding_studio.models.device",
    "cuda_memory_allocated": "embedding_studio.models.device",
}

__all__ = [
    "DeviceUnavailableError",
    "ModelError",
    "ModelNotFoundError",
    "TextEmbeddingModel",
    "TextToImageEmbeddingModel",
    "build_tiny_clip_model",
    "build_tiny_text_model",
    "cuda_memory_allocated",
    "is_image_model",
    "load_embedding_model",
    "release_memory",
    "resolve_device",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'embedding_studio.models' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
