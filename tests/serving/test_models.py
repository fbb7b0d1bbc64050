"""The process's model cache: bounded by count and bytes, least recently used out first, memory given back."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from embedding_studio.config import reset_settings
from embedding_studio.serving.models import (
    ModelCache,
    forget_models,
    model_cache_stats,
    model_size_bytes,
    resolve_model,
)


@pytest.fixture(scope="module")
def four_models(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    from embedding_studio.models.tiny import tiny_model_directory

    root = tmp_path_factory.mktemp("cache-models")
    return [str(tiny_model_directory(root / f"tiny-{seed}", seed=seed, dim=32)) for seed in range(4)]


@pytest.fixture()
def bounded(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """An empty cache on the CPU; the test sets the bounds through the settings, as a deployment would."""
    monkeypatch.setenv("EMBEDDING_STUDIO_DEVICE", "cpu")
    reset_settings()
    forget_models()
    yield monkeypatch
    forget_models()
    reset_settings()


def _set_bounds(monkeypatch: pytest.MonkeyPatch, max_models: int = 100, max_bytes: int = 1 << 40) -> None:
    monkeypatch.setenv("EMBEDDING_STUDIO_MODEL_CACHE_MAX_MODELS", str(max_models))
    monkeypatch.setenv("EMBEDDING_STUDIO_MODEL_CACHE_MAX_BYTES", str(max_bytes))
    reset_settings()


def _load_weakly(model_id: str) -> weakref.ref[object]:
    """Resolve a model and keep only a weak reference, so the cache holds the sole strong one."""
    return weakref.ref(resolve_model(model_id))


def test_more_models_than_the_count_bound_evict_the_least_recently_used(
    bounded: pytest.MonkeyPatch, four_models: list[str]
) -> None:
    first, second, third, fourth = four_models
    _set_bounds(bounded, max_models=2)
    refs = {model_id: _load_weakly(model_id) for model_id in (first, second)}
    assert resolve_model(first) is refs[first]()  # a hit, and first is now the most recently used
    refs[third] = _load_weakly(third)

    gc.collect()
    assert model_cache_stats().model_ids == [first, third]
    assert refs[second]() is None, "the evicted model is still alive somewhere"
    assert refs[first]() is not None and refs[third]() is not None
    sizes = {model_id: model_size_bytes(ref()) for model_id, ref in refs.items() if ref() is not None}
    assert model_cache_stats().size_bytes == sizes[first] + sizes[third] > 0

    refs[fourth] = _load_weakly(fourth)
    gc.collect()
    assert model_cache_stats().model_ids == [third, fourth]
    assert refs[first]() is None
    # An evicted model is loaded again on demand, as the newest entry.
    assert resolve_model(second) is not None
    assert model_cache_stats().model_ids == [fourth, second]


def test_the_byte_bound_keeps_what_fits_and_the_memory_comes_back(
    bounded: pytest.MonkeyPatch, four_models: list[str]
) -> None:
    one_model = model_size_bytes(resolve_model(four_models[0]))
    forget_models()
    _set_bounds(bounded, max_bytes=one_model * 2 + one_model // 2)  # room for two, not three
    refs = [_load_weakly(model_id) for model_id in four_models]
    gc.collect()
    stats = model_cache_stats()
    assert stats.model_ids == four_models[2:]
    assert stats.size_bytes == 2 * one_model <= one_model * 2 + one_model // 2
    assert [ref() is None for ref in refs] == [True, True, False, False]

    forget_models()
    gc.collect()
    assert model_cache_stats() == type(stats)(model_ids=[], size_bytes=0)
    assert all(ref() is None for ref in refs)


def test_a_model_over_the_byte_bound_alone_is_still_kept(bounded: pytest.MonkeyPatch, four_models: list[str]) -> None:
    _set_bounds(bounded, max_bytes=1)
    model = resolve_model(four_models[0])
    assert resolve_model(four_models[0]) is model  # not reloaded on every call
    resolve_model(four_models[1])
    assert model_cache_stats().model_ids == [four_models[1]]


def test_an_evicted_model_still_in_use_keeps_working(bounded: pytest.MonkeyPatch, four_models: list[str]) -> None:
    """A search or reindex holding the model when it is evicted finishes on it: eviction does not move weights."""
    _set_bounds(bounded, max_models=1)
    in_use = resolve_model(four_models[0])
    resolve_model(four_models[1])
    assert four_models[0] not in model_cache_stats().model_ids
    assert len(in_use.encode_queries(["water river"])[0]) == 32


def test_model_cache_counts_shared_weights_once() -> None:
    import torch

    shared = torch.nn.Linear(4, 4)
    tied = torch.nn.Sequential(shared, shared)
    assert model_size_bytes(tied) == model_size_bytes(shared) == (16 + 4) * 4

    cache = ModelCache(limits=lambda: (2, 10_000))
    for name in ("a", "b", "c"):
        cache.put(name, torch.nn.Linear(4, 4))
    assert cache.stats().model_ids == ["b", "c"] and "a" not in cache
    assert cache.get("b") is not None and cache.stats().model_ids == ["c", "b"]


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA GPU")
def test_evicting_a_model_on_the_gpu_gives_its_memory_back(bounded: pytest.MonkeyPatch, four_models: list[str]) -> None:
    import torch

    bounded.setenv("EMBEDDING_STUDIO_DEVICE", "cuda")
    _set_bounds(bounded, max_models=1)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    first = _load_weakly(four_models[0])
    one_model = torch.cuda.memory_allocated() - before
    assert one_model > 0 and model_size_bytes(first()) <= one_model
    for model_id in four_models[1:]:
        _load_weakly(model_id)
    gc.collect()
    torch.cuda.synchronize()
    assert first() is None
    # One model stays resident, however many were loaded.
    assert torch.cuda.memory_allocated() - before <= one_model * 1.5
    forget_models()
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == before
    assert torch.cuda.memory_reserved() <= before + one_model  # the allocator's cache was emptied too


def test_every_directory_the_loader_reads_is_a_known_model_and_others_are_refused(
    four_models: list[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A task's model is checked before it is queued: a Hugging Face CLIP directory (which the one loading path
    reads) passes as our own save does, and a directory of something else is refused naming what was expected."""
    from embedding_studio.models.tiny import tiny_clip_directory
    from embedding_studio.serving.errors import UnknownModelError
    from embedding_studio.serving.models import check_model_exists

    root = tmp_path_factory.mktemp("known-models")
    check_model_exists(four_models[0])
    check_model_exists(str(tiny_clip_directory(root / "clip")))
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("not a model")
    with pytest.raises(UnknownModelError, match="holds no saved model .*Hugging Face CLIP"):
        check_model_exists(str(root / "notes"))
