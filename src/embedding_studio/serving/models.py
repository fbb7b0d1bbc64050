"""Which model an id names, loaded once per process and kept in a bounded cache.

A model id is a base model name (all-MiniLM-L6-v2), a local model directory, or the MLflow run id of a
fine-tuning run. Workers and the search API keep loaded models, since loading one costs seconds and
search must answer in milliseconds. Every deployment and reindex brings another model, though, so the
cache is bounded by count and by bytes (``model_cache_max_models``, ``model_cache_max_bytes``) and
evicts the least recently used model, giving its GPU memory back.
"""

from __future__ import annotations

import gc
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedding_studio.config import get_settings
from embedding_studio.serving.errors import UnknownModelError

logger = logging.getLogger(__name__)

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def model_size_bytes(model: Any) -> int:
    """Bytes of a model's parameters and buffers, each tensor counted once (towers may share weights)."""
    seen: set[tuple[str, int]] = set()
    total = 0
    tensors = [*getattr(model, "parameters", list)(), *getattr(model, "buffers", list)()]
    for tensor in tensors:
        key = (str(tensor.device), tensor.untyped_storage().data_ptr())
        if key in seen:
            continue
        seen.add(key)
        total += tensor.untyped_storage().nbytes()
    return total


def _on_cuda(model: Any) -> bool:
    return any(tensor.is_cuda for tensor in getattr(model, "parameters", list)())


@dataclass
class _Entry:
    model: Any
    size_bytes: int


@dataclass(frozen=True)
class ModelCacheStats:
    """What the cache holds now, most recently used last."""

    model_ids: list[str]
    size_bytes: int


def _settings_limits() -> tuple[int, int]:
    settings = get_settings()
    return settings.model_cache_max_models, settings.model_cache_max_bytes


class ModelCache:
    """Loaded models by id, least recently used evicted first once the count or the byte bound is passed.

    The model just added is never evicted, even when it alone is over the byte bound: it is the one
    the caller is about to use, and evicting it would reload it on every call. Evicted models are
    dropped, not moved to the CPU: a search or reindex that took the model before it was evicted may
    still be encoding with it, and moving its weights under it would break that call. Their memory
    comes back once the last such user lets go; the cache collects garbage and empties the CUDA
    allocator's cache right after an eviction, so it comes back at once when nobody does.
    """

    def __init__(self, limits: Callable[[], tuple[int, int]] = _settings_limits) -> None:
        self._limits = limits
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0

    def get(self, model_id: str) -> Any | None:
        entry = self._entries.get(model_id)
        if entry is None:
            return None
        self._entries.move_to_end(model_id)
        return entry.model

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._entries

    def put(self, model_id: str, model: Any) -> list[_Entry]:
        """Add ``model`` as the most recently used; returns what was evicted, for :func:`free_evicted`."""
        previous = self._entries.pop(model_id, None)
        if previous is not None:
            self._bytes -= previous.size_bytes
        entry = _Entry(model, model_size_bytes(model))
        self._entries[model_id] = entry
        self._bytes += entry.size_bytes
        max_models, max_bytes = self._limits()
        evicted: list[_Entry] = []
        while len(self._entries) > 1 and (len(self._entries) > max_models or self._bytes > max_bytes):
            old_id, old = self._entries.popitem(last=False)
            self._bytes -= old.size_bytes
            evicted.append(old)
            logger.info("evicted model %s from the cache (%d bytes)", old_id, old.size_bytes)
        if self._bytes > max_bytes:
            logger.warning(
                "model %s alone takes %d bytes, over model_cache_max_bytes=%d; it is kept as the only cached model",
                model_id,
                entry.size_bytes,
                max_bytes,
            )
        return evicted

    def clear(self) -> list[_Entry]:
        evicted = list(self._entries.values())
        self._entries.clear()
        self._bytes = 0
        return evicted

    def stats(self) -> ModelCacheStats:
        return ModelCacheStats(model_ids=list(self._entries), size_bytes=self._bytes)


def free_evicted(evicted: list[_Entry]) -> None:
    """Drop the cache's references to evicted models and give their GPU memory back.

    The garbage collection runs because transformer models hold reference cycles, which plain reference
    counting never frees; the CUDA cache is emptied so other processes on the GPU see the memory too.
    """
    if not evicted:
        return
    on_cuda = any(_on_cuda(entry.model) for entry in evicted)
    for entry in evicted:
        entry.model = None
    evicted.clear()
    gc.collect()
    if on_cuda:
        import torch

        torch.cuda.synchronize()
        torch.cuda.empty_cache()


_cache = ModelCache()
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
    evicted: list[_Entry] = []
    with _lock:
        model = _cache.get(model_id)
        if model is None:
            model = _load(model_id)
            model.eval()
            evicted = _cache.put(model_id, model)
            logger.info("loaded model %s", model_id)
    # Outside the lock: a garbage collection should not hold up searches on the models that stay.
    free_evicted(evicted)
    return model


def forget_models() -> None:
    """Drop every cached model and give back the memory nobody else still holds."""
    with _lock:
        evicted = _cache.clear()
    free_evicted(evicted)


def model_cache_stats() -> ModelCacheStats:
    """The ids the process keeps loaded (least recently used first) and their bytes."""
    with _lock:
        return _cache.stats()


def check_model_exists(model_id: str) -> None:
    """Raise :class:`UnknownModelError` unless the id names a model that can be loaded, without loading it."""
    from embedding_studio.models.loading import packaged_model_path

    if model_id in _cache or packaged_model_path(model_id) is not None:
        return
    path = Path(model_id).expanduser()
    try:
        is_dir = path.is_dir()
    except OSError as error:  # a name too long for the file system names no directory
        raise UnknownModelError(model_id, f"not a usable path: {error.strerror}") from error
    if is_dir:
        from embedding_studio.models.clip import is_hugging_face_clip_directory

        # What load_embedding_model reads: our own save, a sentence-transformers directory, a Hugging Face CLIP.
        if (path / "embedding_studio.json").is_file() or (path / "modules.json").is_file():
            return
        if is_hugging_face_clip_directory(path):
            return
        raise UnknownModelError(
            model_id,
            "the directory holds no saved model (embedding_studio.json, a sentence-transformers modules.json, or a "
            "Hugging Face CLIP config.json)",
        )
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
