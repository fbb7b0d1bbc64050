"""A user's own CLIP checkpoint in Hugging Face's layout, loaded from disk through the one loading path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from embedding_studio.models import ModelNotFoundError, TextToImageEmbeddingModel, load_embedding_model
from embedding_studio.models.clip import build_tiny_clip_model
from embedding_studio.models.tiny import tiny_clip_directory


def _images() -> list[Image.Image]:
    return [Image.new("RGB", (40, 30), (255, 0, 0)), Image.new("RGB", (32, 48), (0, 0, 255))]


def test_hugging_face_layout_loads_offline_with_the_same_embeddings(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = build_tiny_clip_model(seed=3, vocab=["circle", "square"])
    model.save_hugging_face_layout(tmp_path / "my-clip")
    files = {path.name for path in (tmp_path / "my-clip").iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= files
    loaded = load_embedding_model(tmp_path / "my-clip", device="cpu")
    assert isinstance(loaded, TextToImageEmbeddingModel)
    np.testing.assert_allclose(loaded.encode_items(_images()), model.encode_items(_images()), atol=1e-6)
    np.testing.assert_allclose(loaded.encode_queries(["red circle"]), model.encode_queries(["red circle"]), atol=1e-6)
    # saved again by Embedding Studio (safetensors), it loads the same
    loaded.save(tmp_path / "fine-tuned")
    assert list((tmp_path / "fine-tuned").rglob("*.safetensors"))
    again = load_embedding_model(tmp_path / "fine-tuned", device="cpu")
    np.testing.assert_allclose(again.encode_items(_images()), model.encode_items(_images()), atol=1e-6)


def test_the_processor_config_decides_the_pixels(tmp_path: Path) -> None:
    directory = tiny_clip_directory(tmp_path / "clip")
    config = json.loads((directory / "preprocessor_config.json").read_text())
    config["image_mean"] = [0.5, 0.5, 0.5]
    config["image_std"] = [0.25, 0.25, 0.25]
    (directory / "preprocessor_config.json").write_text(json.dumps(config))
    loaded = load_embedding_model(directory, device="cpu")
    assert loaded.preprocessing.mean == (0.5, 0.5, 0.5) and loaded.preprocessing.image_size == 32


def test_a_config_of_another_model_is_not_taken_for_clip(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelNotFoundError, match="Hugging Face CLIP"):
        load_embedding_model(tmp_path, device="cpu")


def test_trainable_parts_narrow_what_trains() -> None:
    model = build_tiny_clip_model()
    model.set_trainable_layers(None)
    model.set_trainable_parts("query_tower")
    assert model.query_parameters() and not model.item_parameters()
    model.set_trainable_layers(None)
    model.set_trainable_parts("projections")
    trained = {name for name, parameter in model.clip_model.named_parameters() if parameter.requires_grad}
    assert trained == {"text_projection.weight", "visual_projection.weight", "logit_scale"}
    with pytest.raises(ValueError, match="trainable_parts"):
        model.set_trainable_parts("vision")


def test_the_item_cache_batches_images_like_token_caches_batch_text() -> None:
    model = build_tiny_clip_model()
    cache = model.item_input_cache(_images())
    assert len(cache) == 2 and cache.lengths.tolist() == [1, 1]
    batch = cache.pad([1, 0])
    assert batch["pixel_values"].shape == (2, 3, 32, 32)
    with torch.no_grad():
        from_cache = model.forward_items(batch)
    np.testing.assert_allclose(from_cache.numpy(), model.encode_items(_images())[[1, 0]], atol=1e-5)
    model.max_seq_length = 8
    assert model.tokenize_queries(["one two three four five six seven eight nine ten"])["input_ids"].shape[1] == 8
