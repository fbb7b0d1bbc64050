"""Which model an id names, loaded once per process.

A model id is a base model name (all-MiniLM-L6-v2), a local model directory, or the MLflow run id of a
fine-tuning run. Workers and the search API keep loaded models, since loading one costs seconds and
search must answer in milliseconds.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any

from embedding_studio.config import get_settings
from embedding_studio.tasks.errors import UnknownModelError

logger = logging.getLogger(__name__)

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_cache: dict[str, Any] = {}
_lock = threading.Lock()


def looks_like_run_id(model_id: str) -> bool:
    return bool(_RUN_ID.match(model_id))


def _load(model_id: str) -> Any:
    from embedding_studio.models import ModelNotFoundError, load_embedding_model

    if looks_like_run_id(model_id) and not Path(model_id).exists():
        from embedding_studio.tracking import ExperimentsManager

        try:
            return ExperimentsManager().download_model(model_id)
        except ModelNotFoundError as error:
            raise UnknownModelError(model_id, str(error)) from error
        except Exception as error:  # mlflow raises its own exception types for unknown runs
            raise UnknownModelError(model_id, f"MLflow: {error}") from error
    try:
        return load_embedding_model(model_id)
    except ModelNotFoundError as error:
        raise UnknownModelError(model_id, str(error)) from error


def resolve_model(model_id: str) -> Any:
    """The ``TextEmbeddingModel`` an id names, cached per process (in eval mode)."""
    with _lock:
        model = _cache.get(model_id)
        if model is None:
            model = _load(model_id)
            model.eval()
            _cache[model_id] = model
            logger.info("loaded model %s", model_id)
        return model


def forget_models() -> None:
    """Drop every cached model (GPU memory freed by the caller's ``release_memory``)."""
    with _lock:
        _cache.clear()


def check_model_exists(model_id: str) -> None:
    """Raise :class:`UnknownModelError` unless the id names a model that can be loaded, without loading it."""
    from embedding_studio.models.loading import packaged_model_path

    if model_id in _cache or packaged_model_path(model_id) is not None:
        return
    path = Path(model_id).expanduser()
    if path.is_dir():
        if (path / "embedding_studio.json").is_file() or (path / "modules.json").is_file():
            return
        raise UnknownModelError(model_id, "the directory holds no saved model")
    if looks_like_run_id(model_id):
        from embedding_studio.tracking import ExperimentsManager

        try:
            summary = ExperimentsManager().get_run(model_id)
        except Exception as error:
            raise UnknownModelError(model_id, "no MLflow run with that id") from error
        if not summary.has_model:
            raise UnknownModelError(model_id, "that MLflow run has no model artifact")
        return
    raise UnknownModelError(model_id)


def default_base_model() -> str:
    return get_settings().base_model
