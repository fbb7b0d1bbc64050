"""Parameter selection on a tiny model: TPE trials, pruning, previous-best retries, cancellation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution

from embedding_studio.finetuning.errors import FineTuningCanceled
from embedding_studio.finetuning.hpo import (
    HyperparameterSearchSettings,
    PreparedData,
    TrialRunner,
    previous_best_parameter_sets,
    search_parameters,
)
from embedding_studio.finetuning.method import FineTuningMethod, LoaderConfig
from embedding_studio.finetuning.params import FineTuningParams

pytestmark = pytest.mark.integration


def method(**overrides: Any) -> FineTuningMethod:
    fields: dict[str, Any] = {
        "name": "toy",
        "loader": LoaderConfig(name="jsonl_catalog"),
        "search_space": {"query_lr": FloatDistribution(2e-3, 5e-3, log=True), "temperature": [0.1]},
        "fixed_params": {"max_seq_length": 16},
        "max_evals": 2,
        "num_epochs": 1,
        "batch_size": 8,
        "test_each_n_inputs": 0.5,
    }
    fields.update(overrides)
    return FineTuningMethod(**fields)


def runner_for(
    fine_tuning_method: FineTuningMethod, prepared: PreparedData, model_dir: Path, tracker: Any
) -> TrialRunner:
    iteration = tracker.start_iteration(fine_tuning_method.name, "1")
    return TrialRunner(fine_tuning_method, prepared, model_dir, tracker, iteration, device="cpu")


def test_two_trials_are_tracked_runs_with_metrics_per_validation_and_a_model(
    prepared: PreparedData, tiny_model_dir: Path, tracker: Any
) -> None:
    runner = runner_for(method(num_epochs=3), prepared, tiny_model_dir, tracker)
    progress: list[tuple[float, str]] = []
    result = search_parameters(
        runner,
        study_name="toy-two-trials",
        search_settings=HyperparameterSearchSettings(pruner="none"),
        progress=lambda fraction, message: progress.append((fraction, message)),
    )
    assert [outcome.state for outcome in result.outcomes] == ["complete", "complete"]
    runs = {run.run_id: run for run in tracker.list_runs(runner.iteration.experiment_id)}
    assert set(runs) == {outcome.run_id for outcome in result.outcomes}
    for outcome in result.outcomes:
        run = runs[outcome.run_id]
        assert run.status == "FINISHED" and run.has_model
        assert run.params["query_lr"] == outcome.params["query_lr"]
        assert run.params["loss"] == "info_nce" and run.params["batch_size"] == 8
        history = tracker.get_metric_history(outcome.run_id, "val_ndcg_at_10")
        # baseline + two validations in the epoch + the kept model's metrics, at growing steps
        assert len(history) >= 4
        assert [step for step, _ in history] == sorted(step for step, _ in history)
        assert run.metrics["val_ndcg_at_10"] == pytest.approx(outcome.metrics["val_ndcg_at_10"])
    # the toy set is learnable: the kept model of the best trial beats the untrained one
    best = tracker.get_best_run(runner.iteration.experiment_id)
    baseline = tracker.get_metric_history(best.run_id, "val_ndcg_at_10")[0][1]
    assert best.metrics["val_ndcg_at_10"] > baseline
    assert [round(fraction, 2) for fraction, _ in progress] == [0.5, 1.0]
    downloaded = tracker.download_model(best.run_id)
    assert downloaded.encode_queries(["river"]).shape == (1, 32)


class _AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return True


class _AlwaysPruneDecidingEverywhere(_AlwaysPrune):
    """Says it decides at every validation, as ``hpo.DecidingPruner`` does where its pruner can stop a trial."""

    def decides_at(self, trial: optuna.Trial, step: int) -> bool:
        return True


def _search_where_the_pruner_always_prunes(
    prepared: PreparedData,
    tiny_model_dir: Path,
    tracker: Any,
    monkeypatch: pytest.MonkeyPatch,
    finished_value: float,
    pruner: optuna.pruners.BasePruner | None = None,
) -> tuple[Any, optuna.trial.FrozenTrial, TrialRunner]:
    """One trial of two epochs (four validations) under a pruner that always says prune, in an iteration where a
    finished run already validated ``finished_value``; returns the trial's outcome, Optuna's trial and the runner."""
    from embedding_studio.finetuning import hpo

    monkeypatch.setattr(hpo, "make_pruner", lambda settings: pruner or _AlwaysPrune())
    runner = runner_for(method(max_evals=1, num_epochs=2), prepared, tiny_model_dir, tracker)
    with tracker.run(runner.iteration, {"query_lr": 1e-3}, run_name="finished") as finished:
        tracker.log_metrics(finished, {"val_ndcg_at_10": finished_value})
    storage = optuna.storages.InMemoryStorage()
    result = search_parameters(runner, study_name="toy-always-prune", storage_url=storage)
    (outcome,) = result.outcomes
    (trial,) = optuna.load_study(study_name="toy-always-prune", storage=storage).trials
    return outcome, trial, runner


def test_a_pruned_trial_stops_early_and_keeps_its_run(
    prepared: PreparedData, tiny_model_dir: Path, tracker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a finished run no trial can reach: pruning only stops trials that cannot be chosen
    outcome, trial, _ = _search_where_the_pruner_always_prunes(
        prepared, tiny_model_dir, tracker, monkeypatch, finished_value=1.5
    )
    assert outcome.state == "pruned"
    # pruned at its first validation after the baseline, instead of the 4 a full training makes
    assert outcome.validations == 2
    # ... which Optuna saw as step 1: steps count the validations of training
    assert list(trial.intermediate_values) == [1]
    run = tracker.get_run(outcome.run_id)
    assert run.status == "FINISHED" and run.has_model
    assert "val_ndcg_at_10" in run.metrics


def test_a_trial_the_pruner_would_stop_goes_on_while_it_leads_every_finished_run(
    prepared: PreparedData, tiny_model_dir: Path, tracker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped there, it would be the chosen model without its weight-share choice and refit."""
    outcome, trial, runner = _search_where_the_pruner_always_prunes(
        prepared, tiny_model_dir, tracker, monkeypatch, finished_value=-1.0
    )
    assert outcome.state == "complete"
    # baseline + the four validations of two epochs: none was cut short
    assert outcome.validations == 5
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert list(trial.intermediate_values) == [1, 2, 3, 4]
    assert tracker.get_best_run(runner.iteration.experiment_id).run_id == outcome.run_id


def test_a_trial_shows_in_its_run_the_weight_share_figures_it_was_judged_by(
    prepared: PreparedData, tiny_model_dir: Path, tracker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the pruner decides, the run logs the half-way mix's figures beside the fully trained weights' curve,
    and Optuna's intermediate value is the better of the two."""
    outcome, trial, _ = _search_where_the_pruner_always_prunes(
        prepared, tiny_model_dir, tracker, monkeypatch, finished_value=-1.0, pruner=_AlwaysPruneDecidingEverywhere()
    )
    assert outcome.state == "complete"
    shares = tracker.get_metric_history(outcome.run_id, "share_0.5/val_ndcg_at_10")
    full = dict(tracker.get_metric_history(outcome.run_id, "val_ndcg_at_10"))
    # decisions at validations 1-3; the fourth is the fit's last, where nothing is decided and no share is scored
    assert len(shares) == 3
    assert [step for step, _ in shares] == sorted(step for step, _ in shares)
    assert all(step in full for step, _ in shares)
    for validation, (step, share_value) in enumerate(shares, 1):
        assert trial.intermediate_values[validation] == pytest.approx(max(full[step], share_value))
    assert {"share_0.5/val_recall_at_10", "share_0.5/val_mrr"} <= set(tracker.get_run(outcome.run_id).metrics)


@pytest.mark.parametrize(
    ("pruner", "warmup_validations", "first_pruned_at"),
    [("successive_halving", 0, 1), ("successive_halving", 1, 2), ("median", 0, 1), ("median", 1, 2)],
)
def test_the_first_pruning_decision_follows_warmup_validations(
    pruner: str, warmup_validations: int, first_pruned_at: int
) -> None:
    """Steps count validations from 1: with ``warmup_validations`` w, a trial clearly behind the first one is kept
    through validation w and pruned at validation w + 1, whichever pruner (successive halving's first rung
    included, which Optuna never places at step 0)."""
    from embedding_studio.finetuning.hpo import make_pruner

    settings = HyperparameterSearchSettings(
        pruner=pruner, warmup_validations=warmup_validations, startup_trials=1, reduction_factor=2
    )
    study = optuna.create_study(direction="maximize", pruner=make_pruner(settings))
    leader = study.ask()
    for validation in (1, 2, 3):
        leader.report(0.8, validation)
        assert not leader.should_prune()
    study.tell(leader, 0.8)
    behind = study.ask()
    pruned_at = None
    for validation in (1, 2, 3):
        behind.report(0.2, validation)
        if behind.should_prune():
            pruned_at = validation
            break
    assert pruned_at == first_pruned_at


@pytest.mark.parametrize(
    ("pruner", "warmup_validations"),
    [("successive_halving", 0), ("successive_halving", 1), ("median", 0), ("median", 1)],
)
def test_the_pruner_says_where_it_can_stop_a_trial(pruner: str, warmup_validations: int) -> None:
    """``decides_at`` is where a trial pays for the weight-share figures a decision is taken on, so it must hold
    wherever Optuna's pruner can stop a trial: a trial that is behind at validation ``s`` is stopped there exactly
    when ``decides_at`` says a decision is taken at ``s``. Successive halving judges the value at a rung, so its
    trial led until ``s`` (and was asked, as a trial is); the median pruner judges a trial's best value so far, so
    its trial was behind all along (and asked only at ``s``)."""
    from embedding_studio.finetuning.hpo import make_pruner

    settings = HyperparameterSearchSettings(
        pruner=pruner, warmup_validations=warmup_validations, startup_trials=1, reduction_factor=2
    )
    study = optuna.create_study(direction="maximize", pruner=make_pruner(settings))
    leader = study.ask()
    if pruner == "median":  # no decision before startup_trials trials completed
        assert not any(study.pruner.decides_at(leader, step) for step in range(1, 9))
    for step in range(1, 9):
        leader.report(0.8, step)
        assert not leader.should_prune()  # asked, as a trial is: successive halving records its rung values then
    study.tell(leader, 0.8)
    decisions = []
    for falls_behind_at in range(1, 9):
        trial = study.ask()
        for step in range(1, falls_behind_at):
            if pruner == "median":
                trial.report(0.0, step)
            else:
                trial.report(0.9, step)
                assert not trial.should_prune()
        trial.report(0.0, falls_behind_at)
        decides = study.pruner.decides_at(trial, falls_behind_at)
        assert trial.should_prune() == decides
        decisions.append(decides)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    first = warmup_validations + 1
    if pruner == "median":
        assert decisions == [step >= first for step in range(1, 9)]
    else:
        assert decisions == [step in (first, first * 2, first * 4, first * 8) for step in range(1, 9)]


class _Trainer:
    """What ``OptunaPruningCallback`` reads of Lightning's Trainer during a fit of four optimizer steps."""

    def __init__(self, value: float, global_step: int, steps: int = 4, validate_every: int = 1) -> None:
        from lightning.pytorch.trainer.states import TrainerFn

        self.sanity_checking = False
        self.state = type("State", (), {"fn": TrainerFn.FITTING})()
        self.callback_metrics = {"val_ndcg_at_10": value}
        self.global_step = global_step
        self.estimated_stepping_batches = steps
        self.val_check_batch = validate_every


class _SharesOfNow:
    """Stands in for ``EmbeddingsFineTuner.validate_weight_shares_now`` (tested on a real fit in test_fine_tuner)."""

    def __init__(self, half_way: float) -> None:
        self.half_way = half_way
        self.calls = 0

    def validate_weight_shares_now(self) -> dict[float, dict[str, float]]:
        self.calls += 1
        return {0.5: {"val_ndcg_at_10": self.half_way, "val_mrr": 1.0}}


def test_a_trial_is_judged_by_its_best_weight_share_where_the_pruner_decides_and_never_at_its_end() -> None:
    """Its fully trained weights behind the leader at every validation, its half-way mix ahead: successive halving
    keeps it at its rungs, the mixes are scored only there, and its last validation stops nothing."""
    from embedding_studio.finetuning.hpo import OptunaPruningCallback, make_pruner

    settings = HyperparameterSearchSettings(pruner="successive_halving", warmup_validations=0, reduction_factor=2)
    study = optuna.create_study(direction="maximize", pruner=make_pruner(settings))
    leader = study.ask()
    for step in range(1, 5):
        leader.report(0.8, step)
        leader.should_prune()
    study.tell(leader, 0.8)
    trial = study.ask()
    shares = _SharesOfNow(half_way=0.85)
    callback = OptunaPruningCallback(
        trial, "val_ndcg_at_10", can_be_outranked=lambda value: True, decides_at=study.pruner.decides_at
    )
    calls_after = []
    for step in range(1, 5):
        callback.on_validation_end(_Trainer(0.5, global_step=step), shares)  # type: ignore[arg-type]
        calls_after.append(shares.calls)
    # rungs at validations 1, 2 and 4; the fourth is the fit's last (global step 4 of 4): no mix, no decision
    assert calls_after == [1, 2, 2, 2]
    frozen = study.trials[-1]
    assert frozen.intermediate_values == {1: 0.85, 2: 0.85, 3: 0.5, 4: 0.5}
    # ... where the fully trained weights alone are stopped at the first rung
    plain = study.ask()
    callback = OptunaPruningCallback(plain, "val_ndcg_at_10", can_be_outranked=lambda value: True)
    with pytest.raises(optuna.TrialPruned):
        callback.on_validation_end(_Trainer(0.5, global_step=1), shares)  # type: ignore[arg-type]
    # an epoch of 21 batches validated every 5 validates last at batch 20: that one stops nothing either
    behind = study.ask()
    callback = OptunaPruningCallback(behind, "val_ndcg_at_10", can_be_outranked=lambda value: True)
    for step, global_step in enumerate((5, 10, 15, 20), 1):
        if step < 4:
            behind.report(0.9, step)
            continue
        callback.validations = step - 1
        callback.on_validation_end(_Trainer(0.0, global_step, steps=21, validate_every=5), shares)  # type: ignore[arg-type]
    assert study.trials[-1].intermediate_values[4] == 0.0


@dataclass
class _Run:
    run_id: str
    params: dict[str, Any]


class _RankedRuns:
    """Stands in for the tracker's ranking (the real one is exercised by the two-trial test above)."""

    def __init__(self, ranked: list[dict[str, Any]]) -> None:
        self.ranked = ranked

    def get_best_run(self, experiment_id: str) -> _Run | None:
        return _Run("best", self.ranked[0]) if self.ranked else None

    def get_top_params(self, experiment_id: str, n: int) -> list[dict[str, Any]]:
        return self.ranked[:n]


def test_trials_with_the_same_validation_share_one_baseline_validation(
    prepared: PreparedData, tiny_model_dir: Path, tracker: Any
) -> None:
    """The untrained model validates once per validation signature: a second learning rate or layer count reuses
    the first trial's baseline, another temperature (another val_loss) validates its own."""
    from embedding_studio.finetuning.hpo import train_fine_tuner

    handed: list[dict[str, float] | None] = []
    results: list[Any] = []

    def recording_train(**kwargs: Any) -> Any:
        handed.append(kwargs.get("baseline_metrics"))
        results.append(train_fine_tuner(**kwargs))
        return results[-1]

    fine_tuning_method = method()
    iteration = tracker.start_iteration(fine_tuning_method.name, "1")
    runner = TrialRunner(
        fine_tuning_method, prepared, tiny_model_dir, tracker, iteration, device="cpu", train=recording_train
    )
    first = runner.run({"query_lr": 2e-3, "temperature": 0.1})
    runner.run({"query_lr": 4e-3, "temperature": 0.1, "train_last_n_layers": 1})
    runner.run({"query_lr": 2e-3, "temperature": 0.05})
    assert handed[0] is None and handed[2] is None
    assert handed[1] == results[0].baseline_metrics == first.baseline_metrics
    assert results[1].baseline_metrics == results[0].baseline_metrics
    assert results[2].baseline_metrics["val_ndcg_at_10"] == pytest.approx(results[0].baseline_metrics["val_ndcg_at_10"])
    assert results[2].baseline_metrics["val_loss"] != results[0].baseline_metrics["val_loss"]
    # every trial's run still starts with the baseline at step 0
    for outcome in runner.tracker.list_runs(iteration.experiment_id):
        history = tracker.get_metric_history(outcome.run_id, "val_ndcg_at_10")
        assert history[0] == (0, pytest.approx(first.baseline_metrics["val_ndcg_at_10"]))


def test_a_trial_training_the_top_block_validates_from_the_states_an_earlier_trial_left(
    prepared: PreparedData, tiny_model_dir: Path, tracker: Any
) -> None:
    """Every trial validates the same pool from the same start model: the second trial that trains only the top
    block runs the frozen block for none of the pool's batches, and its figures are those of a trial without."""
    import dataclasses

    from embedding_studio.models.frozen_prefix import FrozenPrefixCache

    shared = dataclasses.replace(prepared, frozen_prefix_cache=FrozenPrefixCache())
    runner = runner_for(method(), shared, tiny_model_dir, tracker)
    top_block = {"query_lr": 4e-3, "temperature": 0.1, "train_last_n_layers": 1}
    runner.run({"query_lr": 2e-3, "temperature": 0.1})  # every block trains: nothing to keep
    assert shared.frozen_prefix_cache.stored_bytes == 0
    first = runner.run(top_block)
    stored, replayed = shared.frozen_prefix_cache.stored_bytes, shared.frozen_prefix_cache.replayed_batches
    assert stored > 0 and replayed > 0
    second = runner.run({**top_block, "seed": 0})
    assert shared.frozen_prefix_cache.stored_bytes == stored  # no batch went through the frozen block again
    assert shared.frozen_prefix_cache.replayed_batches >= 2 * replayed
    alone = runner_for(
        method(), dataclasses.replace(prepared, frozen_prefix_cache=FrozenPrefixCache(0)), tiny_model_dir, tracker
    ).run({**top_block, "seed": 0})
    assert second.metrics == alone.metrics and first.metrics


def test_only_the_chosen_run_is_refit_on_every_session_after_its_trial(
    prepared: PreparedData, tiny_model_dir: Path, tracker: Any
) -> None:
    """A trial keeps its validated weights and stores its refit plan; the run the search chooses is refit once, from
    that plan, and stores the refit model. A trial strictly behind a finished run can never be chosen: it says so and
    stores no plan."""
    from embedding_studio.finetuning.hpo import REFIT_DEFERRED, train_fine_tuner
    from embedding_studio.tracking.manager import TAG_REFIT, TAG_REFIT_PLAN

    results: list[Any] = []

    def recording_train(**kwargs: Any) -> Any:
        results.append(train_fine_tuner(**kwargs))
        return results[-1]

    params = {"query_lr": 3e-3, "temperature": 0.1, "refit_on_all_sessions": True}
    fine_tuning_method = method(fixed_params={"max_seq_length": 16, "choose_weight_share": False})
    alone = tracker.start_iteration(fine_tuning_method.name, "alone")
    runner = TrialRunner(
        fine_tuning_method, prepared, tiny_model_dir, tracker, alone, device="cpu", train=recording_train
    )
    first = runner.run(params)
    assert results[0].weight_share > 0  # trained weights kept: a refit is due, and waits for the choice
    assert results[0].refit_steps == 0 and results[0].refit_skipped == REFIT_DEFERRED
    run = tracker.get_run(first.run_id)
    assert run.tags[TAG_REFIT] == REFIT_DEFERRED and run.tags[TAG_REFIT_PLAN]
    validated = tracker.download_model(first.run_id).encode_queries(["river"])

    assert tracker.get_best_run(alone.experiment_id).run_id == first.run_id
    steps = runner.refit_chosen_run(first.run_id)
    assert steps > 0
    run = tracker.get_run(first.run_id)
    assert run.tags[TAG_REFIT].startswith(f"refit on every session ({steps} steps)")
    assert run.metrics["val_ndcg_at_10"] == pytest.approx(first.metrics["val_ndcg_at_10"])  # still its validation
    refit = tracker.download_model(first.run_id).encode_queries(["river"])
    assert not np.allclose(refit, validated)  # the stored model is the refit one
    assert runner.refit_chosen_run(first.run_id) == 0  # once

    behind = tracker.start_iteration(fine_tuning_method.name, "behind")
    with tracker.run(behind, {"query_lr": 1e-3}, run_name="earlier-trial") as ahead_id:
        tracker.log_metrics(ahead_id, {"val_ndcg_at_10": 1.0}, 0)
    behind_runner = TrialRunner(
        fine_tuning_method, prepared, tiny_model_dir, tracker, behind, device="cpu", train=recording_train
    )
    skipped = behind_runner.run(params)
    assert results[1].refit_steps == 0 and ahead_id in results[1].refit_skipped
    assert results[1].best_metrics == results[0].best_metrics  # the same validated trial
    run = tracker.get_run(skipped.run_id)
    assert run.tags[TAG_REFIT].startswith("refit skipped: val_ndcg_at_10") and run.has_model
    assert TAG_REFIT_PLAN not in run.tags
    assert behind_runner.refit_chosen_run(skipped.run_id) == 0
    assert tracker.get_best_run(behind.experiment_id).run_id == ahead_id


def test_previous_best_parameter_sets_come_first_then_the_top_ones_each_once() -> None:
    from embedding_studio.tracking import Iteration

    ranked = [
        {"query_lr": 3e-3, "loss": "info_nce"},
        {"query_lr": "0.0001", "use_ips": "false"},  # as a plain MLflow param store would return them
        {"query_lr": 3e-3, "loss": "info_nce", "not_a_param_any_more": 1},
        {"query_lr": -1.0},  # no longer valid: skipped, not fatal
        {"query_lr": 1e-5},
    ]
    parameter_sets = previous_best_parameter_sets(_RankedRuns(ranked), Iteration("1", "toy"), top_count=3)  # type: ignore[arg-type]
    assert [params["query_lr"] for params in parameter_sets] == [3e-3, 1e-4, 1e-5]
    assert parameter_sets[1]["use_ips"] is False
    assert parameter_sets[0] == FineTuningParams(query_lr=3e-3).model_dump()


def test_should_stop_cancels_between_trials(prepared: PreparedData, tiny_model_dir: Path, tracker: Any) -> None:
    runner = runner_for(method(max_evals=3), prepared, tiny_model_dir, tracker)
    asked: list[int] = []

    def should_stop() -> bool:
        asked.append(1)
        return len(asked) > 1  # let one trial run, then cancel

    with pytest.raises(FineTuningCanceled, match="after 1 finished trials"):
        search_parameters(runner, study_name="toy-cancel", should_stop=should_stop)
    assert len(tracker.list_runs(runner.iteration.experiment_id)) == 1


def test_workers_sharing_a_study_in_a_database_split_its_trials(
    prepared: PreparedData, tiny_model_dir: Path, tracker: Any, tmp_path: Path
) -> None:
    """Two runners (two workers) on one Optuna study in an RDB run max_evals trials together, not each."""
    from embedding_studio.finetuning.fine_tuner import FitResult

    def quick_train(*, params: Any, on_validation_metrics: Any, **_: Any) -> FitResult:
        # Stands in for training (tested above): the metric depends on the drawn learning rate.
        metrics = {"val_loss": 1.0, "val_ndcg_at_10": 1.0 - abs(params.query_lr - 3e-3) * 100}
        on_validation_metrics(1, metrics)
        return FitResult(best_metrics=metrics, history=[metrics], stopped_epoch=0)

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    fine_tuning_method = method(max_evals=3)
    iteration = tracker.start_iteration("toy", "7")
    workers = [
        TrialRunner(fine_tuning_method, prepared, tiny_model_dir, tracker, iteration, device="cpu", train=quick_train)
        for _ in range(2)
    ]
    first = search_parameters(workers[0], study_name="shared", storage_url=storage)
    second = search_parameters(workers[1], study_name="shared", storage_url=storage)
    assert len(first.outcomes) == 3 and second.outcomes == []
    study = optuna.load_study(study_name="shared", storage=storage)
    assert len(study.trials) == 3
    assert len(tracker.list_runs(iteration.experiment_id)) == 3
