"""Each trial's MLflow run is named after its number and the values the search chose, never at random."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from optuna.distributions import FloatDistribution

from embedding_studio.finetuning.hpo import (
    PreparedData,
    TrialRunner,
    run_parameter_sets,
    search_parameters,
    trial_run_name,
)
from embedding_studio.finetuning.method import FineTuningMethod, LoaderConfig
from embedding_studio.finetuning.query_retriever import TextQueryRetriever

pytestmark = pytest.mark.integration


def test_a_run_name_holds_the_trial_number_and_the_searched_values() -> None:
    params = {"query_lr": 5e-05, "temperature": 0.05, "batch_size": 16}
    assert trial_run_name(3, params, ["query_lr", "temperature"]) == "trial-3 query_lr=5e-05 temperature=0.05"
    assert trial_run_name(1, params, []) == "trial-1"


def _quick_train(*, params: Any, on_validation_metrics: Any, **_: Any) -> Any:
    """Stands in for training: the metric depends on the drawn learning rate."""
    from embedding_studio.finetuning.fine_tuner import FitResult

    metrics = {"val_loss": 1.0, "val_ndcg_at_10": 1.0 - abs(params.query_lr - 3e-3) * 100}
    on_validation_metrics(1, metrics)
    return FitResult(best_metrics=metrics, history=[metrics], stopped_epoch=0)


@pytest.fixture()
def runner(tmp_path: Path) -> TrialRunner:
    from embedding_studio.models.tiny import tiny_model_directory
    from embedding_studio.tracking import ExperimentsManager

    tracker = ExperimentsManager(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifact_location=(tmp_path / "artifacts").as_uri(),
        cache_dir=tmp_path / "cache",
    )
    method = FineTuningMethod(
        name="toy",
        loader=LoaderConfig(name="jsonl_catalog"),
        search_space={"query_lr": FloatDistribution(2e-3, 5e-3, log=True), "temperature": [0.1]},
        fixed_params={"max_seq_length": 16},
        max_evals=3,
        num_epochs=1,
        batch_size=8,
    )
    return TrialRunner(
        method,
        PreparedData([], [], {}, TextQueryRetriever()),
        tiny_model_directory(tmp_path / "tiny", seed=0, dim=32),
        tracker,
        tracker.start_iteration("toy", "1"),
        device="cpu",
        train=_quick_train,
    )


def _run_names(runner: TrialRunner) -> list[str]:
    runs = runner.tracker.client.search_runs([runner.iteration.experiment_id])
    return sorted(run.info.run_name for run in runs)


def test_searched_trials_get_distinct_meaningful_run_names(runner: TrialRunner) -> None:
    result = search_parameters(runner, study_name="names", storage_url=None)
    names = _run_names(runner)
    assert len(names) == len(result.outcomes) == 3 and len(set(names)) == 3
    for number, name in enumerate(names, start=1):
        assert name.startswith(f"trial-{number} query_lr=") and name.endswith(" temperature=0.1"), name


def test_retried_parameter_sets_are_numbered_too(runner: TrialRunner) -> None:
    run_parameter_sets(runner, [{"query_lr": 2e-3, "temperature": 0.1}, {"query_lr": 4e-3, "temperature": 0.1}])
    assert _run_names(runner) == ["trial-1 query_lr=0.002 temperature=0.1", "trial-2 query_lr=0.004 temperature=0.1"]
