"""Fixtures the fine-tuning test modules share."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny text model saved once per module: built from a config in code, so no download."""
    from embedding_studio.models.tiny import tiny_model_directory

    return tiny_model_directory(tmp_path_factory.mktemp("tiny-model") / "model", seed=0, dim=32)
