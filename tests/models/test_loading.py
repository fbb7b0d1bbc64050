"""The one model loading path: package names, and clear errors for anything else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedding_studio.models import ModelNotFoundError, TextEmbeddingModel, load_embedding_model


def test_nonexistent_path_raises_model_not_found_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFoundError) as caught:
        load_embedding_model(missing, device="cpu")
    message = str(caught.value)
    assert str(missing) in message
    assert "all-MiniLM-L6-v2" in message and "modules.json" in message and "does not exist" in message


def test_a_directory_without_a_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelNotFoundError, match=str(tmp_path)):
        load_embedding_model(tmp_path, device="cpu")


def test_a_hub_name_is_not_fetched() -> None:
    with pytest.raises(ModelNotFoundError, match="sentence-transformers/all-mpnet-base-v2"):
        load_embedding_model("sentence-transformers/all-mpnet-base-v2", device="cpu")


@pytest.mark.integration
@pytest.mark.parametrize("name", ["all-MiniLM-L6-v2"])
def test_packaged_minilm_loads_offline_and_encodes(name: str) -> None:
    model = load_embedding_model(name, device="cpu")
    assert isinstance(model, TextEmbeddingModel) and model.shares_weights
    assert model.dim == 384
    embeddings = model.encode_queries(["how do I reset my password"])
    assert embeddings.shape == (1, 384) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert load_embedding_model("sentence-transformers/all-MiniLM-L6-v2", device="cpu").dim == 384
