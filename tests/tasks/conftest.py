"""Tiny models on disk, a tiny catalog and the environment real worker processes inherit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .worker_process import clear_queue, write_catalog


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    from embedding_studio.models.tiny import tiny_model_directory

    root = tmp_path_factory.mktemp("tiny-models")
    return (
        str(tiny_model_directory(root / "tiny-a", seed=0, dim=32)),
        str(tiny_model_directory(root / "tiny-b", seed=1, dim=32)),
    )


@pytest.fixture(scope="session")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_catalog(tmp_path_factory.mktemp("catalog") / "corpus.jsonl", 60)


@pytest.fixture()
def worker_env(clean_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The environment a worker subprocess inherits (database, data dir, MLflow store); returns its log path."""
    from embedding_studio.config import reset_settings

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("EMBEDDING_STUDIO_DEVICE", "cpu")
    reset_settings()
    clear_queue()
    yield tmp_path / "worker.log"
    clear_queue()
    reset_settings()
