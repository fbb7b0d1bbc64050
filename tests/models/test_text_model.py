"""The two-tower text model built in code: encoding, towers, freezing, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from embedding_studio.models import ModelError, TextEmbeddingModel, build_tiny_text_model, load_embedding_model

TEXTS = ["the cat sat on the red car", "dog", "a blue phone with 12 numbers", "xyzzy unknown words"]


@pytest.fixture(scope="module")
def tiny_model() -> TextEmbeddingModel:
    return build_tiny_text_model(seed=0, dim=32)


def test_encode_returns_normalised_float32_rows_in_input_order(tiny_model: TextEmbeddingModel) -> None:
    embeddings = tiny_model.encode_queries(TEXTS, batch_size=3)
    assert embeddings.shape == (len(TEXTS), 32)
    assert embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    one_by_one = np.stack([tiny_model.encode_queries([text])[0] for text in TEXTS])
    np.testing.assert_allclose(embeddings, one_by_one, atol=1e-5)
    assert tiny_model.encode_items([]).shape == (0, 32)


def test_encode_refuses_a_bare_string(tiny_model: TextEmbeddingModel) -> None:
    with pytest.raises(TypeError, match="single string"):
        tiny_model.encode_queries("the cat")  # type: ignore[arg-type]


def test_same_seed_same_weights_other_seed_other_weights(tiny_model: TextEmbeddingModel) -> None:
    again = build_tiny_text_model(seed=0, dim=32)
    other = build_tiny_text_model(seed=1, dim=32)
    np.testing.assert_array_equal(again.encode_queries(TEXTS), tiny_model.encode_queries(TEXTS))
    assert not np.allclose(other.encode_queries(TEXTS), tiny_model.encode_queries(TEXTS))
    # every parameter, the pooler that mean pooling never uses included: a trainable state compares whole
    again_state = again.query_tower.state_dict()
    for name, value in tiny_model.query_tower.state_dict().items():
        assert torch.equal(again_state[name], value), name
    assert build_tiny_text_model(dim=16).dim == 16


def test_forward_has_gradients_and_matches_encode(tiny_model: TextEmbeddingModel) -> None:
    features = tiny_model.tokenize_queries(TEXTS[:2])
    assert all(isinstance(value, torch.Tensor) for value in features.values())
    assert "input_ids" in features and "attention_mask" in features
    embeddings = tiny_model.forward_queries(features)
    assert embeddings.requires_grad
    embeddings.sum().backward()
    assert any(parameter.grad is not None for parameter in tiny_model.query_parameters())
    tiny_model.zero_grad()
    np.testing.assert_allclose(embeddings.detach().numpy(), tiny_model.encode_queries(TEXTS[:2]), atol=1e-5)


def test_tokenize_truncates_to_max_seq_length(tiny_model: TextEmbeddingModel) -> None:
    features = tiny_model.tokenize_items(["word " * 500])
    assert features["input_ids"].shape[1] == tiny_model.max_seq_length


def test_shared_towers_encode_alike_and_separate_towers_diverge(tiny_model: TextEmbeddingModel) -> None:
    assert tiny_model.shares_weights
    np.testing.assert_array_equal(tiny_model.encode_queries(TEXTS), tiny_model.encode_items(TEXTS))
    assert tiny_model.item_parameters() == []
    assert len(tiny_model.query_parameters()) == len(list(tiny_model.parameters()))

    separate = tiny_model.with_separate_towers()
    assert not separate.shares_weights
    np.testing.assert_allclose(separate.encode_queries(TEXTS), separate.encode_items(TEXTS), atol=1e-6)
    query_ids = {id(parameter) for parameter in separate.query_parameters()}
    item_ids = {id(parameter) for parameter in separate.item_parameters()}
    assert query_ids and item_ids and not query_ids & item_ids
    with torch.no_grad():
        for parameter in separate.item_parameters():
            parameter.add_(0.05)
    assert not np.allclose(separate.encode_queries(TEXTS), separate.encode_items(TEXTS), atol=1e-3)
    # the original is untouched by changes to the copy
    np.testing.assert_array_equal(tiny_model.encode_queries(TEXTS), tiny_model.encode_items(TEXTS))


def test_set_trainable_layers_freezes_lower_layers_and_embeddings() -> None:
    model = build_tiny_text_model(seed=0).with_separate_towers()
    model.set_trainable_layers(1)
    for tower in (model.query_tower, model.item_tower):
        assert tower is not None
        for name, parameter in tower.named_parameters():
            should_train = ".encoder.layer.1." in name or not name.startswith("0.")
            assert parameter.requires_grad == should_train, name
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert not any("embeddings" in name for name in trainable)

    model.set_trainable_layers(0, train_embeddings=True)
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert trainable and all(".embeddings." in name for name in trainable)
    assert len(model.query_parameters()) == len(model.item_parameters())

    model.set_trainable_layers(None)
    assert all(parameter.requires_grad for parameter in model.parameters())
    with pytest.raises(ValueError, match="n_last_layers=3"):
        model.set_trainable_layers(3)


@pytest.mark.parametrize("separate", [False, True])
def test_save_then_load_gives_identical_embeddings(
    tiny_model: TextEmbeddingModel, tmp_path: Path, separate: bool
) -> None:
    model = tiny_model.with_separate_towers() if separate else tiny_model
    if separate:
        with torch.no_grad():
            for parameter in model.item_parameters():
                parameter.mul_(1.1)
    model.save(tmp_path / "saved")
    assert (tmp_path / "saved" / "embedding_studio.json").is_file()
    assert (tmp_path / "saved" / "query" / "model.safetensors").is_file()
    assert (tmp_path / "saved" / "item").is_dir() == separate
    assert not list((tmp_path / "saved").rglob("*.bin")) and not list((tmp_path / "saved").rglob("*.pt"))
    loaded = load_embedding_model(tmp_path / "saved", device="cpu")
    assert isinstance(loaded, TextEmbeddingModel)
    assert loaded.shares_weights == model.shares_weights
    assert loaded.dim == model.dim and loaded.max_seq_length == model.max_seq_length
    np.testing.assert_array_equal(loaded.encode_queries(TEXTS), model.encode_queries(TEXTS))
    np.testing.assert_array_equal(loaded.encode_items(TEXTS), model.encode_items(TEXTS))


def test_save_over_an_existing_model_replaces_it_whole(tmp_path: Path) -> None:
    build_tiny_text_model(seed=0).with_separate_towers().save(tmp_path / "model")
    replacement = build_tiny_text_model(seed=3)
    replacement.save(tmp_path / "model")
    assert not (tmp_path / "model" / "item").exists()
    assert [path.name for path in tmp_path.iterdir()] == ["model"]  # no staging leftovers
    reloaded = TextEmbeddingModel.load(tmp_path / "model")
    np.testing.assert_array_equal(reloaded.encode_queries(TEXTS), replacement.encode_queries(TEXTS))


def test_plain_sentence_transformers_directory_loads_with_shared_towers(
    tiny_model: TextEmbeddingModel, tmp_path: Path
) -> None:
    tiny_model.query_tower.save(str(tmp_path / "plain"))
    loaded = load_embedding_model(tmp_path / "plain", device="cpu")
    assert isinstance(loaded, TextEmbeddingModel) and loaded.shares_weights
    np.testing.assert_array_equal(loaded.encode_queries(TEXTS), tiny_model.encode_queries(TEXTS))


def test_corrupt_metadata_is_named(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "embedding_studio.json").write_text("{not json")
    with pytest.raises(ModelError, match="embedding_studio.json is not valid JSON"):
        load_embedding_model(tmp_path / "broken", device="cpu")
