"""The CLIP-style text-to-image model built in code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embedding_studio.models import TextToImageEmbeddingModel, build_tiny_clip_model, load_embedding_model


def _images() -> list[Image.Image]:
    generator = np.random.default_rng(0)
    noise = Image.fromarray((generator.random((50, 70, 3)) * 255).astype("uint8"))
    return [Image.new("RGB", (40, 30), (255, 0, 0)), noise, Image.new("L", (32, 32), 128)]


def test_encode_texts_and_images_into_one_normalised_space() -> None:
    model = build_tiny_clip_model(dim=16, image_size=32)
    queries = model.encode_queries(["a red square", "grey"])
    items = model.encode_items(_images(), batch_size=2)
    assert queries.shape == (2, 16) and items.shape == (3, 16)
    assert queries.dtype == np.float32 and items.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(items, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    preprocessed = model.preprocess_items(_images())
    assert preprocessed.shape == (3, 3, 32, 32)
    np.testing.assert_allclose(model.encode_items(preprocessed), items, atol=1e-5)
    with pytest.raises(ValueError, match="shape"):
        model.encode_items(preprocessed[:, :, :16, :16])
    assert model.forward_queries(model.tokenize_queries(["a red square"])).requires_grad


def test_save_then_load_gives_identical_embeddings(tmp_path: Path) -> None:
    model = build_tiny_clip_model(seed=1)
    model.save(tmp_path / "clip-model")
    assert list((tmp_path / "clip-model").rglob("*.safetensors"))
    loaded = load_embedding_model(tmp_path / "clip-model", device="cpu")
    assert isinstance(loaded, TextToImageEmbeddingModel)
    np.testing.assert_array_equal(loaded.encode_items(_images()), model.encode_items(_images()))
    np.testing.assert_allclose(loaded.encode_queries(["red"]), model.encode_queries(["red"]), atol=1e-6)


def test_trainable_layers_split_between_text_and_vision() -> None:
    model = build_tiny_clip_model()
    model.set_trainable_layers(1)
    query_ids = {id(parameter) for parameter in model.query_parameters()}
    item_ids = {id(parameter) for parameter in model.item_parameters()}
    assert query_ids and item_ids and not query_ids & item_ids
    frozen = [name for name, parameter in model.clip_model.named_parameters() if not parameter.requires_grad]
    assert any("text_model.encoder.layers.0." in name for name in frozen)
    assert any("vision_model.encoder.layers.0." in name for name in frozen)
    assert not any(".layers.1." in name for name in frozen)
