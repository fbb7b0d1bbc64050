"""The search's sampler: TPE that ranks trials at one budget once a pruner stopped some."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.samplers import TPESampler
from optuna.trial import TrialState, create_trial

from embedding_studio.finetuning.sampler import FINAL_BUDGET, EqualBudgetSampler, deepest_budget, trials_at_budget

X = FloatDistribution(0.0, 1.0)


def _complete(x: float, value: float, curve: dict[int, float]) -> optuna.trial.FrozenTrial:
    return create_trial(params={"x": x}, distributions={"x": X}, value=value, intermediate_values=curve)


def _pruned(x: float, curve: dict[int, float]) -> optuna.trial.FrozenTrial:
    return create_trial(params={"x": x}, distributions={"x": X}, state=TrialState.PRUNED, intermediate_values=curve)


def _draws(sampler: optuna.samplers.BaseSampler, trials: list[optuna.trial.FrozenTrial], count: int) -> list[float]:
    draws = []
    for _ in range(count):
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.add_trials(trials)
        draws.append(study.ask({"x": X}).params["x"])
    return draws


def _a_search_where_the_first_trial_ran_whole() -> list[optuna.trial.FrozenTrial]:
    """Trial 0 (x = 0.05) ran whole because it came first; nine trials were stopped at the first rung, where the
    ones near x = 0.8 led it by far."""
    trials = [_complete(0.05, 0.60, {1: 0.50, 2: 0.55, 4: 0.60})]
    for x in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 0.8, 0.85):
        trials.append(_pruned(x, {1: 0.62 - abs(x - 0.8) * 0.3}))
    return trials


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_with_trials_stopped_early_it_draws_where_trials_led_at_the_budget_they_all_reached(seed: int) -> None:
    """TPE itself ranks the one complete trial (x = 0.05) above every pruned one, whatever their values; ranked
    at the first rung, which every trial reached, the trials near 0.8 are the good ones."""
    draws = _draws(EqualBudgetSampler(seed=seed, n_startup_trials=5), _a_search_where_the_first_trial_ran_whole(), 20)

    assert statistics.median(draws) > 0.6


def _draws_of_both(
    objective: Callable[[optuna.Trial], float], seed: int, trials: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The parameters each trial drew in a search with ours and one with TPE itself (4 random start-up draws)."""
    draws = []
    for sampler in (EqualBudgetSampler(seed=seed, n_startup_trials=4), TPESampler(seed=seed, n_startup_trials=4)):
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.optimize(objective, n_trials=trials)
        draws.append([trial.params for trial in study.trials])
    return draws[0], draws[1]


def test_with_no_trial_pruned_it_draws_what_tpe_draws() -> None:
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        y = trial.suggest_categorical("y", ["a", "b", "c"])
        return -((x - 0.3) ** 2) + (0.1 if y == "b" else 0.0)

    ours, tpe = _draws_of_both(objective, seed=3, trials=12)

    assert ours == tpe


def test_its_start_up_draws_are_tpes_also_when_trials_are_pruned() -> None:
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        trial.report(x, 1)
        if trial.number % 2:
            raise optuna.TrialPruned()
        return x

    ours, tpe = _draws_of_both(objective, seed=5, trials=4)

    assert ours == tpe


def test_the_budget_is_the_deepest_that_enough_trials_reached() -> None:
    trials = _a_search_where_the_first_trial_ran_whole()

    assert deepest_budget(trials, min_observations=2) == 1  # one trial reached the end, validation 2 and 4
    assert deepest_budget(trials, min_observations=1) == FINAL_BUDGET
    assert deepest_budget(trials, min_observations=11) is None
    assert [value for _, value in trials_at_budget(trials, 1)][:2] == pytest.approx([0.50, 0.62 - 0.7 * 0.3])
    assert [value for _, value in trials_at_budget(trials, FINAL_BUDGET)] == [0.60]


def test_a_search_with_the_pruner_runs_its_trials_to_the_count_asked() -> None:
    """The sampler inside a real pruned study: every trial draws a point in the space, pruned or not."""

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        for step in range(1, 9):
            value = (1.0 - abs(x - 0.7)) * step / 8
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    study = optuna.create_study(
        direction="maximize",
        sampler=EqualBudgetSampler(seed=1, n_startup_trials=3),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=4),
    )
    study.optimize(objective, n_trials=16)

    states = [trial.state for trial in study.trials]
    assert len(states) == 16 and TrialState.PRUNED in states
    assert all(0.0 <= trial.params["x"] <= 1.0 for trial in study.trials)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_at_a_budget_with_just_enough_trials_it_fits_tpe_rather_than_drawing_at_random(seed: int) -> None:
    """Two trials ran whole (one parameter: two are enough, BOHB's d + 1), four were stopped at the first rung.
    The end is the budget; TPE fits its two trials there although its start-up count (5) is more than two: the
    start-up draws are over for the search, and the budget was chosen because it holds enough to fit."""
    trials = [_complete(0.9, 0.9, {1: 0.5}), _complete(0.1, 0.1, {1: 0.5})]
    trials += [_pruned(x, {1: 0.4}) for x in (0.3, 0.4, 0.5, 0.6)]

    draws = _draws(EqualBudgetSampler(seed=seed, n_startup_trials=5), trials, 20)

    assert statistics.median(draws) > 0.7
