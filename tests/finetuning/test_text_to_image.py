"""The text-to-image method: its options, and the fine-tuner learning captions of generated images."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from tests.finetuning.toy_images import VOCABULARY, catalog, click_sessions, recall_at_5

from embedding_studio.clickstream.types import FineTuningInput
from embedding_studio.finetuning.errors import FineTuningError
from embedding_studio.finetuning.fine_tuner import EmbeddingsFineTuner, fit_fine_tuner
from embedding_studio.finetuning.method import get_method
from embedding_studio.finetuning.params import FineTuningParams
from embedding_studio.items.manager import PreparedItemSet
from embedding_studio.models.clip import build_tiny_clip_model
from embedding_studio.models.tiny import build_tiny_text_model, tiny_clip_directory

TRAIN_PER_KIND, PER_KIND = 4, 7


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_clip_directory(tmp_path_factory.mktemp("clip") / "clip", vocab=VOCABULARY)


def test_method_options(clip_dir: Path, tmp_path: Path) -> None:
    loader = {"name": "local_image", "options": {"root": str(tmp_path)}}
    method = get_method("text_to_image", base_model=str(clip_dir), loader=loader)
    assert method.fixed_params["trainable_parts"] == "all" and method.loader.name == "local_image"
    searched = get_method(
        "text_to_image", base_model=str(clip_dir), loader=loader, trainable_parts=["query_tower", "projections"]
    )
    assert searched.search_space["trainable_parts"].choices == ("query_tower", "projections")
    manager = method.create_item_set_manager()
    assert manager.preprocessors["image"].size == 32  # the base model's preprocessing, read from its directory
    with pytest.raises(FineTuningError, match="loader must be one of"):
        get_method("text_to_image", base_model=str(clip_dir), loader={"name": "local_text", "options": {}})
    with pytest.raises(FineTuningError, match="needs base_model"):
        get_method("text_to_image", base_model=str(tmp_path), loader=loader)
    with pytest.raises(FineTuningError, match="trainable_parts"):
        get_method("text_to_image", base_model=str(clip_dir), loader=loader, trainable_parts="vision")


def test_a_text_model_refuses_projection_training() -> None:
    with pytest.raises(FineTuningError, match="text-to-image model"):
        EmbeddingsFineTuner(
            build_tiny_text_model(), {"a": ["a"]}, params=FineTuningParams(trainable_parts="projections")
        )


def _inputs() -> tuple[list[FineTuningInput], list[FineTuningInput]]:
    inputs = [
        FineTuningInput(
            session.session_id,
            session.query,
            session.results,
            {item: rank for rank, item in enumerate(session.results, start=1)},
            session.clicks,
        )
        for session in click_sessions(TRAIN_PER_KIND, sessions_per_caption=8)
    ]
    random.Random(0).shuffle(inputs)
    held_out = len(inputs) // 5
    return inputs[held_out:], inputs[:held_out]


def _fit(trainable_parts: str, epochs: int):  # noqa: ANN202 - a model and its held-out images
    images = catalog(PER_KIND)
    training = {key: image for key, image in images.items() if int(key.rsplit("-", 1)[1]) < TRAIN_PER_KIND}
    held_out = {key: image for key, image in images.items() if key not in training}
    model = build_tiny_clip_model(seed=0, vocab=VOCABULARY)
    before = recall_at_5(model, held_out)
    params = FineTuningParams(
        query_lr=3e-3,
        item_lr=3e-3,
        num_epochs=epochs,
        negatives_per_query=0,
        use_ips=False,
        choose_weight_share=False,
        trainable_parts=trainable_parts,
    )
    train, test = _inputs()
    fine_tuner = EmbeddingsFineTuner(model, PreparedItemSet(images=training), params=params)
    result = fit_fine_tuner(fine_tuner, train, test, params, device="cpu")
    return model, held_out, before, result


@pytest.mark.integration  # about 30 s on two busy CPU cores
def test_clicks_on_images_raise_held_out_recall_at_5() -> None:
    model, held_out, before, result = _fit("all", epochs=5)
    after = recall_at_5(model, held_out)
    assert result.best_metrics["val_ndcg_at_10"] > result.baseline_metrics["val_ndcg_at_10"]
    assert after >= before + 0.3, (before, after)


def test_query_tower_training_leaves_image_vectors_as_indexed() -> None:
    images = catalog(1)
    untouched = build_tiny_clip_model(seed=0, vocab=VOCABULARY).encode_items(list(images.values()))
    model, _, _, _ = _fit("query_tower", epochs=1)
    np.testing.assert_allclose(model.encode_items(list(images.values())), untouched, atol=1e-6)
