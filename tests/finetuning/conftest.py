"""Fixtures the fine-tuning test modules share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny text model saved once per module: built from a config in code, so no download."""
    from embedding_studio.models.tiny import tiny_model_directory

    return tiny_model_directory(tmp_path_factory.mktemp("tiny-model") / "model", seed=0, dim=32)


@pytest.fixture(scope="module")
def prepared() -> Any:
    """The toy clickstream of ``toy_clicks`` split and ready for trials: the data HPO tests search over."""
    from embedding_studio.finetuning.hpo import PreparedData
    from embedding_studio.finetuning.query_retriever import TextQueryRetriever
    from embedding_studio.finetuning.splitter import TrainTestSplitter

    from .toy_clicks import TOPICS, as_inputs, toy_sessions

    split = TrainTestSplitter(test_share=0.25, seed=0).split(as_inputs(toy_sessions(1)))
    items = {
        f"{topic}-{index}": [f"{topic}. {phrase}"]
        for topic, phrases in TOPICS.items()
        for index, phrase in enumerate(phrases)
    }
    return PreparedData(split.train, split.test, items, TextQueryRetriever())


@pytest.fixture()
def tracker(tmp_path: Path) -> Any:
    """A real MLflow tracker on a SQLite store in the test's directory (modules needing the database override it)."""
    from embedding_studio.tracking import ExperimentsManager

    return ExperimentsManager(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifact_location=(tmp_path / "artifacts").as_uri(),
        cache_dir=tmp_path / "cache",
    )
