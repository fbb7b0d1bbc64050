"""The sampler of a parameter search: TPE that compares trials at one budget once a pruner has stopped some.

Optuna's TPE splits finished trials into the good few and the rest with every complete trial ranked above every
pruned one, whatever their values. Under successive halving that ranking is mostly the order of the trials: the
first ones reach a rung with few or no competitors and run whole (Optuna promotes the best of fewer than
``reduction_factor`` trials), so the defaults' trial 0 and the one or two after it end up as TPE's good set and
the search keeps drawing near them. On nfcorpus (``benchmarks/README.md``, seed 2, two epochs) 14 of 16 trials
were pruned, TPE's good set was the two that ran whole (the defaults and a draw beside them), and the pruned
search never drew the high-temperature, top-blocks region where the unpruned search found its best (0.6022
against 0.5887), although the trials of that region led at the first rung.

BOHB (Falkner, Klein and Hutter, 2018, "BOHB: Robust and Efficient Hyperparameter Optimization at Scale") fits
its model on one budget only, the largest one that holds enough observations, so that it compares like with
like. :class:`EqualBudgetSampler` does that with TPE: the budgets are the validations trials reported at (a
trial's value at validation ``b`` is what the pruner judged it by there) and the end of a trial (its value);
TPE is shown each trial that reached the deepest budget with at least ``min_observations`` trials, with its
value there, and nothing else. While no trial was pruned, and for TPE's random start-up draws, it hands every draw
to TPE itself, so an unpruned search draws what it always did.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

#: The end of a trial as a budget: deeper than any validation.
FINAL_BUDGET = float("inf")


def trials_at_budget(trials: Sequence[FrozenTrial], budget: float) -> list[tuple[FrozenTrial, float]]:
    """Each trial that reached ``budget`` with its value there: a completed trial's value at the end, any trial's
    reported intermediate value at validation ``budget``."""
    if budget == FINAL_BUDGET:
        return [
            (trial, float(trial.value))
            for trial in trials
            if trial.state == TrialState.COMPLETE and trial.value is not None
        ]
    step = int(budget)
    return [(trial, float(trial.intermediate_values[step])) for trial in trials if step in trial.intermediate_values]


def deepest_budget(trials: Sequence[FrozenTrial], min_observations: int) -> float | None:
    """The deepest budget (the end, then validations from the last) that at least ``min_observations`` of
    ``trials`` reached; None when none did."""
    steps = sorted({step for trial in trials for step in trial.intermediate_values}, reverse=True)
    for budget in (FINAL_BUDGET, *steps):
        if len(trials_at_budget(trials, budget)) >= min_observations:
            return budget
    return None


class EqualBudgetSampler(optuna.samplers.BaseSampler):
    """TPE on the finished trials' values at one budget, the deepest that ``min_observations`` trials reached.

    Inputs: the study's finished trials, complete and pruned (their intermediate values are the per-validation
    figures the pruner was shown). With no pruned trial, and for its ``n_startup_trials`` random draws, it is
    ``TPESampler(seed, n_startup_trials)`` itself.
    Otherwise each draw builds an in-memory study of the trials at the chosen budget, with those values, and lets a
    TPE seeded from ``seed`` and the trial's number draw from it, fitted on those trials however few the start-up
    count asks; with fewer than ``min_observations`` at every budget, at random from the budget the most reached.
    ``min_observations`` defaults to the number of searched parameters plus one, BOHB's least number of points to
    fit a model on.

    Example::

        study = optuna.create_study(sampler=EqualBudgetSampler(seed=0, n_startup_trials=5),
                                    pruner=optuna.pruners.SuccessiveHalvingPruner(), direction="maximize")
    """

    def __init__(
        self, seed: int | None = None, n_startup_trials: int = 10, min_observations: int | None = None
    ) -> None:
        self.seed = seed
        self.n_startup_trials = n_startup_trials
        self.min_observations = min_observations
        self._tpe = optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials)

    def reseed_rng(self) -> None:
        self._tpe.reseed_rng()

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._tpe.before_trial(study, trial)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._tpe.after_trial(study, trial, state, values)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._tpe.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space or not self._ranks_at_one_budget(study):
            return self._tpe.sample_relative(study, trial, search_space)
        return self._draw_at_one_budget(study, trial, search_space, "relative")

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        if not self._ranks_at_one_budget(study):
            return self._tpe.sample_independent(study, trial, param_name, param_distribution)
        return self._draw_at_one_budget(study, trial, {param_name: param_distribution}, param_name)[param_name]

    def _ranks_at_one_budget(self, study: optuna.Study) -> bool:
        """Whether ranking at one budget applies: a trial was pruned and the random start-up draws are over (those
        stay TPE's own, so a pruned search starts where an unpruned one does)."""
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        return len(finished) >= self.n_startup_trials and any(trial.state == TrialState.PRUNED for trial in finished)

    def _draw_at_one_budget(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution], purpose: str
    ) -> dict[str, Any]:
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        observed = [previous for previous in finished if search_space.keys() <= previous.params.keys()]
        min_observations = self.min_observations or len(search_space) + 1
        budget = deepest_budget(observed, min_observations)
        if budget is None:
            steps = {step for previous in observed for step in previous.intermediate_values}
            budget = max(
                (FINAL_BUDGET, *steps), key=lambda candidate: (len(trials_at_budget(observed, candidate)), candidate)
            )
        # A study of its own in memory (not optuna.create_study, which logs every creation): TPE draws from it.
        storage = optuna.storages.InMemoryStorage()
        name = storage.get_study_name_from_id(storage.create_new_study(directions=[study.direction]))
        # The search's start-up draws are over; the budget was chosen for holding enough trials to fit on, so TPE
        # fits them (with the start-up count here, a budget of 4 trials under a start-up of 5 drew at random).
        sampler = optuna.samplers.TPESampler(
            seed=self._draw_seed(trial.number, purpose), n_startup_trials=min_observations
        )
        equal_budget = optuna.Study(study_name=name, storage=storage, sampler=sampler)
        equal_budget.add_trials(
            [
                optuna.trial.create_trial(params=previous.params, distributions=previous.distributions, value=value)
                for previous, value in trials_at_budget(observed, budget)
            ]
        )
        return equal_budget.ask(search_space).params

    def _draw_seed(self, trial_number: int, purpose: str) -> int | None:
        if self.seed is None:
            return None
        return zlib.crc32(f"{self.seed}:{trial_number}:{purpose}".encode())
