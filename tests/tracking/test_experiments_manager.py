"""ExperimentsManager against a real MLflow with a local sqlite backend in a temporary directory."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from embedding_studio.models import ModelNotFoundError, TextEmbeddingModel, build_tiny_text_model
from embedding_studio.tracking import ExperimentsManager, Iteration, flatten_params

TEXTS = ["the red car", "a cat and a dog", "cheap phone"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture()
def manager(store: Path) -> ExperimentsManager:
    return ExperimentsManager(tracking_uri=f"sqlite:///{store}/mlflow.db", cache_dir=store / "cache")


@pytest.fixture()
def plugin() -> str:
    """A fresh plugin name per test, so tests sharing one store don't see each other's iterations."""
    return f"plugin_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def tiny_model() -> Iterator[TextEmbeddingModel]:
    yield build_tiny_text_model(seed=0, dim=16)


def _log_two_runs(manager: ExperimentsManager, iteration: Iteration, model: TextEmbeddingModel | None) -> list[str]:
    run_ids = []
    for learning_rate, ndcg, layers in [(1e-3, 0.50, 1), (2e-3, 0.70, None)]:
        params = {"learning_rate": learning_rate, "n_last_layers": layers, "shared": True, "loss": {"margin": 0.2}}
        with manager.run(iteration, params) as run_id:
            for step in range(3):
                manager.log_metrics(run_id, {"val_ndcg_at_10": ndcg + step / 100, "val_loss": 1.0 - step / 10}, step)
            if model is not None:
                manager.save_model(run_id, model)
        run_ids.append(run_id)
    return run_ids


def test_best_run_and_top_params_follow_the_declared_direction(manager: ExperimentsManager, plugin: str) -> None:
    iteration = manager.start_iteration(plugin, "batch-a", base_model="tiny")
    assert iteration.name == f"{plugin}/batch-batch-a/iteration-1"
    assert (iteration.plugin_name, iteration.batch_id, iteration.index) == (plugin, "batch-a", 1)
    tags = manager.client.get_experiment(iteration.experiment_id).tags
    assert tags["embedding_studio.plugin"] == plugin and tags["embedding_studio.base_model"] == "tiny"
    low, high = _log_two_runs(manager, iteration, model=None)

    best = manager.get_best_run(iteration.experiment_id)
    assert best is not None and best.run_id == high
    assert best.metrics["val_ndcg_at_10"] == pytest.approx(0.72)
    top = manager.get_top_params(iteration.experiment_id, 5)
    assert top == [
        {"learning_rate": 2e-3, "n_last_layers": None, "shared": True, "loss": {"margin": 0.2}},
        {"learning_rate": 1e-3, "n_last_layers": 1, "shared": True, "loss": {"margin": 0.2}},
    ]
    assert isinstance(top[1]["n_last_layers"], int) and isinstance(top[0]["shared"], bool)
    assert manager.get_top_params(iteration.experiment_id, 1) == top[:1]
    assert manager.client.get_run(low).data.params["loss.margin"] == "0.2"  # flattened for the MLflow UI

    lower_is_better = ExperimentsManager(
        tracking_uri=manager.tracking_uri, main_metric="val_ndcg_at_10", higher_is_better=False
    )
    assert lower_is_better.get_best_run(iteration.experiment_id).run_id == low  # type: ignore[union-attr]
    by_loss = ExperimentsManager(tracking_uri=manager.tracking_uri, main_metric="val_loss", higher_is_better=False)
    assert {run.run_id for run in by_loss.ranked_runs(iteration.experiment_id)} == {low, high}

    assert manager.get_metric_history(high, "val_ndcg_at_10") == [
        (0, pytest.approx(0.70)),
        (1, pytest.approx(0.71)),
        (2, pytest.approx(0.72)),
    ]


def test_failed_runs_and_runs_without_the_metric_are_never_best(manager: ExperimentsManager, plugin: str) -> None:
    iteration = manager.start_iteration(plugin, "b")
    with pytest.raises(RuntimeError, match="trial crashed"):
        with manager.run(iteration, {"learning_rate": 1.0}) as crashed:
            manager.log_metrics(crashed, {"val_ndcg_at_10": 0.99})
            raise RuntimeError("trial crashed")
    assert manager.get_run(crashed).status == "FAILED"
    with manager.run(iteration, {"learning_rate": 0.5}) as silent:
        manager.log_metrics(silent, {"val_loss": 0.1})
    assert manager.get_best_run(iteration.experiment_id) is None
    assert manager.get_top_params(iteration.experiment_id, 3) == []
    assert manager.delete_non_best_models(iteration.experiment_id) == []
    with manager.run(iteration, {"learning_rate": 0.1}) as good:
        manager.log_metrics(good, {"val_ndcg_at_10": 0.3})
    assert manager.get_best_run(iteration.experiment_id).run_id == good  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="'val_loss'.*nan"):
        manager.log_metrics(good, {"val_loss": float("nan")})


def test_model_round_trip_cleanup_and_registry(
    manager: ExperimentsManager, plugin: str, tiny_model: TextEmbeddingModel
) -> None:
    iteration = manager.start_iteration(plugin, "b")
    separate = tiny_model.with_separate_towers()
    low, high = _log_two_runs(manager, iteration, model=separate)

    url = manager.model_url(high)
    assert url.startswith("file://") and url.endswith("/model")
    downloaded = manager.download_model(high, device="cpu")
    assert isinstance(downloaded, TextEmbeddingModel) and not downloaded.shares_weights
    np.testing.assert_array_equal(downloaded.encode_queries(TEXTS), separate.encode_queries(TEXTS))
    np.testing.assert_array_equal(downloaded.encode_items(TEXTS), separate.encode_items(TEXTS))
    manager.download_model(low, device="cpu")  # populate the cache, which cleanup must also clear

    low_artifacts = Path(manager.get_run(low).artifact_uri.removeprefix("file://"))
    assert (low_artifacts / "model" / "embedding_studio.json").is_file()
    assert manager.delete_non_best_models(iteration.experiment_id) == [low]
    assert not (low_artifacts / "model").exists()
    assert not (manager.cache_dir / low).exists()
    assert manager.get_run(low).metrics["val_ndcg_at_10"] == pytest.approx(0.52)  # params and metrics stay
    assert manager.get_run(low).params["learning_rate"] == 1e-3
    with pytest.raises(ModelNotFoundError, match=low):
        manager.download_model(low, device="cpu")

    # the best survives, also when downloaded afresh (empty cache)
    fresh = ExperimentsManager(tracking_uri=manager.tracking_uri, cache_dir=manager.cache_dir.parent / "fresh-cache")
    np.testing.assert_array_equal(
        fresh.download_model(high, device="cpu").encode_queries(TEXTS), separate.encode_queries(TEXTS)
    )

    model_name = f"{plugin}-model"
    assert manager.register_best(high, model_name, "champion") == "1"
    assert manager.get_registered_run_id(model_name, "champion") == high
    assert manager.client.get_model_version_by_alias(model_name, "champion").source == url
    # a later iteration's best takes the alias over
    assert manager.register_best(high, model_name, "champion") == "2"
    assert str(manager.client.get_model_version_by_alias(model_name, "champion").version) == "2"


def test_previous_iteration_is_the_latest_one_with_a_best_run(manager: ExperimentsManager, plugin: str) -> None:
    assert manager.get_previous_iteration(plugin) is None
    first = manager.start_iteration(plugin, "b1")
    assert manager.get_previous_iteration(plugin) is None  # nothing finished yet
    with manager.run(first, {"learning_rate": 0.01}) as run_id:
        manager.log_metrics(run_id, {"val_ndcg_at_10": 0.4})
    second = manager.start_iteration(plugin, "b2")
    assert second.index == 2 and second.name == f"{plugin}/batch-b2/iteration-2"
    with pytest.raises(RuntimeError):
        with manager.run(second, {"learning_rate": 0.02}):
            raise RuntimeError("crashed before any metric")
    third = manager.start_iteration(plugin, "b3")
    previous = manager.get_previous_iteration(plugin)
    assert previous is not None and previous.experiment_id == first.experiment_id and previous.batch_id == "b1"
    assert manager.get_previous_iteration(plugin, before=first) is None
    assert [iteration.index for iteration in manager.list_iterations(plugin)] == [1, 2, 3]
    assert manager.get_iteration(third.experiment_id) == third
    assert manager.get_previous_iteration(f"{plugin}-other") is None
    with pytest.raises(ValueError, match="contain no '/'"):
        manager.start_iteration("a/b", "b1")


def test_default_store_lives_in_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from embedding_studio.config import reset_settings

    monkeypatch.setenv("EMBEDDING_STUDIO_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("EMBEDDING_STUDIO_MLFLOW_TRACKING_URI", raising=False)
    reset_settings()
    try:
        manager = ExperimentsManager()
        assert manager.tracking_uri == f"sqlite:///{tmp_path.as_posix()}/mlflow.db"
        assert manager.artifact_location == (tmp_path / "mlartifacts").as_uri()
        assert manager.cache_dir == tmp_path / "model-cache"
        remote = ExperimentsManager(tracking_uri="http://mlflow.internal:5000")
        assert remote.artifact_location is None  # a tracking server chooses its own artifact store
    finally:
        reset_settings()


def test_flatten_params_makes_dotted_string_keys() -> None:
    assert flatten_params({"a": {"b": 1, "c": {"d": True}}, "e": [1, 2], "f": None}) == {
        "a.b": "1",
        "a.c.d": "True",
        "e": "[1, 2]",
        "f": "None",
    }
