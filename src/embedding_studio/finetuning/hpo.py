"""Parameter selection: which FineTuningParams the trials of one iteration try.

The first iteration of a method searches its space with Optuna's TPE sampler, pruning trials whose
validation metric falls behind the others at the same validation (median pruner), so a bad
learning rate stops after a few validations instead of training to the end. Pruning needs
intermediate validations: a method that validates once per epoch for one epoch (the default text
method) reports one value per trial, which the pruner (after ``warmup_validations``) never acts on;
where validation costs as much as training, validating more often to prune costs more than it saves
(``benchmarks/README.md``, issue 15 item 4). Successive halving with its first rung at the first of four validations
a trial (``pruner="successive_halving"``, ``warmup_validations=0``) took 0.40×, 0.64× and 0.49× the unpruned time of
16 trials on three draws (CPU), at a best model 0.0014, 0.0004 and 0.0087 below, when it judged a trial by its fully
trained weights: a high learning rate, which a quarter into a one-epoch schedule is near its peak and has pushed the
model below the untrained one, was stopped although its half-way weights (the recipe's weight-share choice) were
the best of the search then. So where the pruner decides (:class:`DecidingPruner`) a trial is judged by what
stopping would ship, the best of its fully trained weights and its weight shares (:class:`OptunaPruningCallback`):
on the third draw that trial now runs to its end. The price is one more encode of the pool per decision, and the
good trials it keeps: over three draws the ratio rose by 0.06-0.18 (0.67×, 0.59×, 0.58×), with the best 0.0066, 0,
and 0.0014 below. With trials of two epochs (the first rung at an eighth of a trial) two draws gave 0.42× and 0.72×,
both at the unpruned best: where most curves peak early, the fit's own early stopping already saves what a pruner
would. A pruner only stops trials that cannot be chosen: one whose best validation so far leads every
finished run goes on, so the chosen run is always a complete trial, with the recipe's weight-share choice and refit.
Once a trial is pruned, TPE ranks the trials at one budget
(:class:`~embedding_studio.finetuning.sampler.EqualBudgetSampler`), not every complete trial above every pruned
one, which under successive halving meant drawing beside the first trials.
Later iterations have seen this kind of data before: they retry the previous iteration's best
parameters and its top parameter sets (as the seed does), which is cheaper than searching again and rarely worse.

Until it is worse: the data drifts and the old parameters stop helping. :func:`search_again_reason` is the
rule that sends an iteration back to the search: when the last ``search_again_after`` iterations of the
method all reused previous parameters and none of them beat the model it started from (on its own
held-out sessions, by the method's main metric) by more than ``min_iteration_gain``. Each iteration
records how it chose its parameters and its gain on its experiment (:func:`record_iteration_outcome`).

Every trial loads the initial model fresh from one copy on disk, trains on the one prepared
dataset, is one tracker run (params, metrics at each validation, model artifact), and frees the
model and CUDA memory when it ends, whatever happened.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import lightning.pytorch as pl
import optuna
from lightning.pytorch.trainer.states import TrainerFn
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from embedding_studio.finetuning.errors import FineTuningCanceled, FineTuningError
from embedding_studio.finetuning.method import FineTuningMethod, suggest_params
from embedding_studio.finetuning.params import FineTuningParams
from embedding_studio.finetuning.sampler import EqualBudgetSampler
from embedding_studio.models.frozen_prefix import FrozenPrefixCache
from embedding_studio.tracking import share_figure_metrics

if TYPE_CHECKING:
    from embedding_studio.tracking import ExperimentsManager, Iteration
    from embedding_studio.tracking.manager import RunSummary

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[float, str], None]
ShouldStop = Callable[[], bool]


class HyperparameterSearchSettings(BaseSettings):
    """How the Optuna study of an iteration is stored and pruned (env ``EMBEDDING_STUDIO_HPO_*``).

    ``storage`` is empty for an in-memory study, ``database`` for the project's PostgreSQL (so that
    workers on several machines share the trials of one study), or any SQLAlchemy URL.
    """

    model_config = SettingsConfigDict(env_prefix="EMBEDDING_STUDIO_HPO_", extra="ignore")

    storage: str | None = Field(default=None, description="'', 'database' or an SQLAlchemy URL for Optuna.")
    study_name: str | None = Field(
        default=None,
        description="Name of a shared study: workers given the same name (and storage) split its max_evals trials. "
        "Unset: one study per iteration.",
    )
    pruner: Literal["median", "successive_halving", "none"] = "median"
    startup_trials: int = Field(default=2, ge=0, description="Trials that run to the end before pruning starts.")
    warmup_validations: int = Field(
        default=1,
        ge=0,
        description="Validations of a trial that never prune it; the first decision is at the next one (so with 1, "
        "a method must validate more than once a trial for the pruner to act).",
    )
    reduction_factor: int = Field(
        default=4,
        ge=2,
        description="successive_halving: a trial goes on past a rung only when it is in the best 1/reduction_factor "
        "of the trials that reached it (the best one while fewer have); rungs at (warmup_validations + 1) * "
        "reduction_factor^k validations.",
    )
    sampler_seed: int | None = Field(default=0, description="TPE seed; None for a different search each time.")
    share_trials: bool = Field(
        default=True,
        description="A fine-tuning task's search runs on every worker of the fine-tuning queue (its study in the "
        "project's PostgreSQL); false: the worker that took the task runs all its trials in memory.",
    )
    heartbeat_s: int = Field(default=10, ge=1, description="How often a shared trial's worker says it is alive.")
    stale_after_s: int = Field(
        default=60, ge=2, description="A shared trial whose worker was silent this long is failed and counted as done."
    )


def resolve_storage(storage: str | None, database_url: str | None) -> str | optuna.storages.BaseStorage | None:
    """``database`` is the project's PostgreSQL through ``shared_search.project_storage`` (psycopg 3, Optuna's own
    schema): the raw ``DATABASE_URL`` would need psycopg2 and put Optuna's Alembic table on the project's."""
    if not storage:
        return None
    if storage == "database":
        if not database_url:
            raise FineTuningError("HPO storage 'database' needs DATABASE_URL (the PostgreSQL Optuna shares)")
        from embedding_studio.finetuning.shared_search import project_storage

        return project_storage(database_url)
    return storage


@dataclass
class PreparedData:
    """What every trial of an iteration shares, prepared once."""

    train_inputs: list[Any]
    test_inputs: list[Any]
    items: Any
    query_retriever: Any
    #: what the frozen lower blocks gave the validation pool's batches: every trial validates the same pool, so a
    #: trial that trains the top blocks of the same start model replays them from its first validation on
    frozen_prefix_cache: FrozenPrefixCache = field(default_factory=FrozenPrefixCache)


@dataclass
class TrialOutcome:
    run_id: str
    params: dict[str, Any]
    metrics: dict[str, float]
    state: Literal["complete", "pruned"]
    validations: int
    baseline_metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class SelectionResult:
    outcomes: list[TrialOutcome] = field(default_factory=list)
    mode: Literal["search", "previous_best"] = "search"
    #: trials per worker when the search was shared (``shared_search``); empty when one process ran them all
    workers: dict[str, int] = field(default_factory=dict)


class OptunaPruningCallback(pl.Callback):
    """Reports the monitored validation metric to the trial after each validation, and prunes.

    The step is the number of validations so far (1 at the first), so trials with different batch sizes are
    compared after the same number of validations, i.e. the same number of seen inputs: it is the resource a trial
    has used, which successive halving's rungs count (its first rung at ``min_resource`` validations).

    ``can_be_outranked(value)``: whether a finished run is ahead of a run that keeps ``value`` (its best validation
    so far, the weights a pruned trial keeps). Pruning is for trials that cannot be chosen: a trial the pruner would
    stop while its kept weights lead every finished run would be the chosen model, shipped without the weight-share
    choice and the refit on every session that the method's recipe validated, so it goes on instead. Successive
    halving judges a trial by its value at the rung, not by its best one, so this happens (a trial whose best
    validation came before its last one).

    ``decides_at(trial, step)``: whether the pruner may stop the trial at that validation
    (``DecidingPruner.decides_at``; the pruner is asked at every validation all the same). There the value
    reported is what stopping would ship: the best of the fully trained weights and the weight shares the fit
    chooses among after fitting (``EmbeddingsFineTuner.validate_weight_shares_now``, one more encode of the pool
    per share). Elsewhere it is the validation's own value. The last validation of a fit never stops it: stopping
    there saves only the share choice, and would judge the trial without it. ``on_share_figures(step, figures)``
    gets each share's figures where they were taken (``step`` = optimizer steps so far, as the run's other
    validation metrics), so the run shows what its trial was judged by (``tracking.share_figure_metrics``).
    """

    def __init__(
        self,
        trial: optuna.Trial,
        monitor: str,
        can_be_outranked: Callable[[float], bool] | None = None,
        decides_at: Callable[[optuna.Trial, int], bool] | None = None,
        on_share_figures: Callable[[int, Mapping[float, Mapping[str, float]]], None] | None = None,
    ) -> None:
        super().__init__()
        self.trial = trial
        self.monitor = monitor
        self.can_be_outranked = can_be_outranked
        self.decides_at = decides_at
        self.on_share_figures = on_share_figures
        self.validations = 0
        self.best_value: float | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The fit's one Trainer also validates outside fitting (the untrained baseline, the weight shares after):
        # only the validations of training count as the trial's intermediate values.
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        self.validations += 1
        step = self.validations
        value = float(value)
        maximize = self.trial.study.direction == optuna.study.StudyDirection.MAXIMIZE

        def ahead(candidate: float, of: float) -> bool:
            return candidate > of if maximize else candidate < of

        # The best of the weights this trial keeps if stopped (its fully trained checkpoints): what can outrank.
        if self.best_value is None or ahead(value, self.best_value):
            self.best_value = value
        last = _last_validation_of_the_fit(trainer)
        if not last and self.decides_at is not None and self.decides_at(self.trial, step):
            probe = getattr(pl_module, "validate_weight_shares_now", None)
            share_figures = probe() if probe is not None else {}
            if share_figures and self.on_share_figures is not None:
                self.on_share_figures(int(trainer.global_step), share_figures)
            for figures in share_figures.values():
                if self.monitor in figures and ahead(figures[self.monitor], value):
                    value = figures[self.monitor]
        self.trial.report(value, step)
        if last or not self.trial.should_prune():
            return
        if self.can_be_outranked is not None and not self.can_be_outranked(self.best_value):
            logger.info(
                "trial %d goes on although the pruner would stop it at validation %d: its best %s %.4f leads every "
                "finished run",
                self.trial.number,
                step,
                self.monitor,
                self.best_value,
            )
            return
        raise optuna.TrialPruned(f"{self.monitor}={value:.4f} at validation {step} is behind the trials compared")


def _last_validation_of_the_fit(trainer: pl.Trainer) -> bool:
    """Whether no validation comes after this one: fewer optimizer steps remain than lie between two validations
    (an epoch of 21 batches validated every 5 validates last at 20), or none remain. Early stopping can still end a
    fit sooner; that is not known here."""
    remaining = trainer.estimated_stepping_batches - trainer.global_step
    interval = getattr(trainer, "val_check_batch", None)
    if remaining <= 0:
        return True
    return isinstance(interval, int | float) and math.isfinite(interval) and remaining < interval


def normalize_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A parameter set as FineTuningParams accepts it (tracker params come back as strings)."""
    known = set(FineTuningParams.model_fields)
    cleaned = {key: value for key, value in params.items() if key in known}
    for key, value in list(cleaned.items()):
        if isinstance(value, str) and value.lower() in ("true", "false"):
            cleaned[key] = value.lower() == "true"
    try:
        return FineTuningParams.model_validate(cleaned).model_dump()
    except ValidationError as error:
        raise FineTuningError(f"invalid fine-tuning parameters {dict(params)}: {error}") from error


TrainFunction = Callable[..., Any]

#: MLflow keeps run names as a tag; long search spaces are cut here rather than refused there.
MAX_RUN_NAME_LENGTH = 250


def trial_run_name(number: int, params: Mapping[str, Any], searched: Iterable[str]) -> str:
    """``trial-3 query_lr=5e-05 temperature=0.05``: the trial's number and the values the search chose.

    MLflow otherwise names each run at random (and the names repeat), so nobody could tell from the run list
    which trial tried what; the searched parameters are the ones that differ between the trials of an iteration.
    """
    chosen = " ".join(f"{key}={_short_value(params[key])}" for key in searched if key in params)
    return f"trial-{number} {chosen}".strip()[:MAX_RUN_NAME_LENGTH]


def _short_value(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


#: FineTuningParams that only change how the weights move, never how the untrained model validates: trials that
#: differ only in these share one baseline validation.
TRAINING_ONLY_PARAMS = frozenset(
    {
        "query_lr",
        "item_lr",
        "weight_decay",
        "warmup_share",
        "num_epochs",
        "train_last_n_layers",
        "fine_tuned_weight_share",
        "choose_weight_share",
        "refit_on_all_sessions",
        "training_dropout",
    }
)


def validation_signature(params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """What decides the untrained model's validation figures besides the start model and the held-out sessions:
    every parameter but :data:`TRAINING_ONLY_PARAMS` (the loss and its temperature give ``val_loss``; the sequence
    length, batch size and kept positives give the tokens and rows). A field not listed as training-only counts,
    so a new parameter can only make trials share less, never share a baseline they should not."""
    return tuple(sorted((key, repr(value)) for key, value in params.items() if key not in TRAINING_ONLY_PARAMS))


class TrialRunner:
    """Runs one parameter set: fresh model from disk → training → tracker run → memory freed.

    Every trial starts from the same model and validates on the same held-out sessions, so the untrained model's
    validation (the baseline every fit starts with, one of a trial's two or three validations with the default
    method) is taken once per :func:`validation_signature` and handed to the next trials with that signature.
    """

    def __init__(
        self,
        method: FineTuningMethod,
        data: PreparedData,
        initial_model_dir: Path,
        tracker: ExperimentsManager,
        iteration: Iteration,
        device: Any = None,
        train: TrainFunction | None = None,
    ) -> None:
        self.method = method
        self.data = data
        self.initial_model_dir = Path(initial_model_dir)
        self.tracker = tracker
        self.iteration = iteration
        self.device = device
        self.train = train or train_fine_tuner
        self.trials_run = 0
        #: the untrained model's validation per validation signature, from the trials run so far
        self.baselines: dict[tuple[tuple[str, str], ...], dict[str, float]] = {}

    def run(self, params: Mapping[str, Any], trial: optuna.Trial | None = None) -> TrialOutcome:
        """Train one parameter set as the run ``trial-N …``: N is Optuna's trial number (unique across the
        workers sharing a study), or this runner's count for parameter sets run without a search."""
        from embedding_studio.models import load_embedding_model, release_memory

        full_params = normalize_params(params)
        self.trials_run += 1
        number = trial.number + 1 if trial is not None else self.trials_run
        run_name = trial_run_name(number, full_params, self.method.search_space)
        callbacks: list[pl.Callback] = []
        pruned: optuna.TrialPruned | None = None
        model = None
        history: list[dict[str, float]] = []
        baseline_metrics: dict[str, float] = {}
        signature = validation_signature(full_params)
        known_baseline = self.baselines.get(signature)
        try:
            with self.tracker.run(self.iteration, full_params, run_name=run_name) as run_id:

                def on_validation_metrics(step: int, metrics: Mapping[str, float]) -> None:
                    values = {key: float(value) for key, value in metrics.items() if key != "step"}
                    if step == 0 and not history:  # fit_fine_tuner reports the untrained model first, as step 0
                        self.baselines.setdefault(signature, values)
                    history.append({**values, "step": float(step)})
                    self.tracker.log_metrics(run_id, values, step)

                def on_share_figures(step: int, figures: Mapping[float, Mapping[str, float]]) -> None:
                    self.tracker.log_metrics(run_id, share_figure_metrics(figures), step)

                if trial is not None:
                    callbacks.append(
                        OptunaPruningCallback(
                            trial,
                            self.method.main_metric,
                            can_be_outranked=self._outranked,
                            decides_at=getattr(trial.study.pruner, "decides_at", None),
                            on_share_figures=on_share_figures,
                        )
                    )

                # The one loading path: a text-to-image start model comes back as one.
                model = load_embedding_model(self.initial_model_dir, device=self.device)
                try:
                    result = self.train(
                        model=model,
                        data=self.data,
                        params=FineTuningParams.model_validate(full_params),
                        method=self.method,
                        callbacks=callbacks,
                        on_validation_metrics=on_validation_metrics,
                        device=self.device,
                        baseline_metrics=known_baseline,
                        skip_refit=self._refit_later_or_never,
                    )
                    kept_metrics = dict(result.best_metrics)
                    from embedding_studio.tracking.manager import TAG_REFIT, TAG_REFIT_PLAN, TAG_STOP_REASON

                    stop_reason = getattr(result, "stop_reason", "")
                    if stop_reason:  # early stopping or the epoch cap: which one explains a short run
                        self.tracker.set_tags(run_id, {TAG_STOP_REASON: stop_reason})
                    refit_skipped = getattr(result, "refit_skipped", "")
                    if refit_skipped:  # why this run's model is its validated weights, not a refit
                        self.tracker.set_tags(run_id, {TAG_REFIT: refit_skipped})
                    refit_plan = getattr(result, "refit_plan", None)
                    if refit_plan is not None and refit_skipped == REFIT_DEFERRED:
                        self.tracker.set_tags(run_id, {TAG_REFIT_PLAN: refit_plan.to_json()})
                    baseline_metrics = {
                        key: float(value) for key, value in (getattr(result, "baseline_metrics", None) or {}).items()
                    }
                except optuna.TrialPruned as error:
                    pruned = error
                    kept_metrics = dict(getattr(error, "kept_metrics", None) or {})
                best_metrics = {key: float(value) for key, value in kept_metrics.items() if key != "step"}
                if best_metrics:
                    # Training leaves the weights of its best validation in the model; logging that
                    # validation's metrics last makes them the run's latest values, which the tracker
                    # ranks runs by, so the ranking describes the models that are stored.
                    last_step = max((int(entry.get("step", 0)) for entry in history), default=0)
                    self.tracker.log_metrics(run_id, best_metrics, last_step + 1)
                self.tracker.save_model(run_id, model)
        finally:
            del model
            release_memory()
        outcome = TrialOutcome(
            run_id=run_id,
            params=full_params,
            metrics=best_metrics,
            state="pruned" if pruned is not None else "complete",
            validations=len(history),
            baseline_metrics=baseline_metrics,
        )
        if pruned is not None:
            raise TrialPrunedWithOutcome(outcome) from pruned
        return outcome

    def _outranked(self, value: float) -> bool:
        """Whether a finished run of the iteration (on any worker) is strictly ahead of a run that keeps ``value``:
        the pruning callback's question, asked as :meth:`_refit_later_or_never` asks it."""
        return self._run_ahead({self.tracker.main_metric: value}) is not None

    def _run_ahead(self, metrics: Mapping[str, float]) -> RunSummary | None:
        return self.tracker.outranking_run(self.iteration.experiment_id, metrics)

    def _refit_later_or_never(self, metrics: Mapping[str, float]) -> str:
        """Why a trial that validated at ``metrics`` does not refit on every session now: only the chosen run's
        model ships, so only that run is refit (:meth:`refit_chosen_run`, once the trials have ended). A trial
        strictly behind a finished run of the iteration (on any worker) can never be chosen, and says so. Refitting
        every trial that set a new best as it ended (about ln N + 1 of N trials in a random order) paid for refits
        that a later trial made useless; the chosen model is the one it was before, refit as before."""
        ahead = self._run_ahead(metrics)
        if ahead is None:
            return REFIT_DEFERRED
        metric = self.tracker.main_metric
        return (
            f"refit skipped: {metric} {metrics[metric]:.4f} is behind run {ahead.run_id}'s "
            f"{ahead.metrics[metric]:.4f}, so this run cannot be chosen"
        )

    def refit_chosen_run(self, run_id: str) -> int:
        """Refit the chosen run's recipe on every session, held-out ones included, from this runner's start model,
        and store the refit model as the run's; returns the optimizer steps (0: the run has no refit waiting, e.g.
        its method does not refit, it kept the untrained weights, or it was refit already).

        The run's trial (on this worker or another of a shared search, on the same prepared data) stored the plan:
        how long its kept checkpoint trained and the weight share it kept. The refit reseeds as the trial did, so
        the model is the one the trial's own refit would have made. The run's metrics stay its validation: they are
        the held-out estimate of the recipe."""
        from embedding_studio.finetuning.fine_tuner import EmbeddingsFineTuner, RefitPlan, refit_on_all_sessions
        from embedding_studio.models import load_embedding_model, release_memory
        from embedding_studio.tracking.manager import TAG_REFIT, TAG_REFIT_PLAN

        run = self.tracker.get_run(run_id)
        if run.tags.get(TAG_REFIT) != REFIT_DEFERRED or not run.tags.get(TAG_REFIT_PLAN):
            return 0
        try:
            plan = RefitPlan.from_json(run.tags[TAG_REFIT_PLAN])
        except ValueError as error:
            raise FineTuningError(f"run {run_id}: its refit plan cannot be read: {error}") from error
        params = FineTuningParams.model_validate(normalize_params(run.params))
        model = load_embedding_model(self.initial_model_dir, device=self.device)
        try:
            fine_tuner = EmbeddingsFineTuner(
                model=model, items=self.data.items, query_retriever=self.data.query_retriever, params=params
            )
            steps = refit_on_all_sessions(
                fine_tuner, self.data.train_inputs, self.data.test_inputs, plan, device=self.device
            )
            del fine_tuner
            self.tracker.save_model(run_id, model)
            self.tracker.set_tags(
                run_id, {TAG_REFIT: f"refit on every session ({steps} steps) after the search chose this run"}
            )
        finally:
            del model
            release_memory()
        return steps


#: TrialRunner's reason for a trial not refitting now: the chosen run is refit once the trials have ended.
REFIT_DEFERRED = "refit deferred: only the run the search chooses is refit on every session, after the trials"


class TrialPrunedWithOutcome(optuna.TrialPruned):
    """Optuna sees a pruned trial; the search keeps the run it produced."""

    def __init__(self, outcome: TrialOutcome) -> None:
        super().__init__(f"trial run {outcome.run_id} pruned after {outcome.validations} validations")
        self.outcome = outcome


def train_fine_tuner(
    *,
    model: Any,
    data: PreparedData,
    params: FineTuningParams,
    method: FineTuningMethod,
    callbacks: Sequence[pl.Callback],
    on_validation_metrics: Callable[[int, Mapping[str, float]], None],
    device: Any = None,
    baseline_metrics: Mapping[str, float] | None = None,
    skip_refit: Callable[[Mapping[str, float]], str | None] | None = None,
) -> Any:
    """Trains ``model`` in place with the learning core's EmbeddingsFineTuner; returns its FitResult.
    ``baseline_metrics``: the untrained model's validation when an earlier trial took it; ``skip_refit``: whether
    the refit on every session is still worth it (both: see ``fit_fine_tuner``).

    The model is left holding the weights of its best validation (highest val NDCG@10, the untrained
    model included), also when the trial is pruned.
    """
    from embedding_studio.finetuning.fine_tuner import EmbeddingsFineTuner, fit_fine_tuner

    fine_tuner = EmbeddingsFineTuner(
        model=model,
        items=data.items,
        query_retriever=data.query_retriever,
        params=params,
        frozen_prefix_cache=data.frozen_prefix_cache,
    )
    try:
        return fit_fine_tuner(
            fine_tuner,
            data.train_inputs,
            data.test_inputs,
            params,
            max_epochs=params.num_epochs,
            test_each_n_inputs=method.test_each_n_inputs,
            callbacks=callbacks,
            on_validation_metrics=on_validation_metrics,
            device=device,
            baseline_metrics=baseline_metrics,
            skip_refit=skip_refit,
        )
    except optuna.TrialPruned as pruned:
        # fit_fine_tuner put the best validation's weights back even so; say which metrics they had.
        pruned.kept_metrics = dict(fine_tuner.best_metrics)  # type: ignore[attr-defined]
        raise
    finally:
        del fine_tuner


def make_pruner(settings: HyperparameterSearchSettings) -> optuna.pruners.BasePruner:
    """The pruner, with ``warmup_validations`` validations that never prune: the first decision is at validation
    ``warmup_validations + 1`` (steps count validations from 1, :class:`OptunaPruningCallback`). It says where it
    decides (:class:`DecidingPruner`): the median pruner at every validation from the first decision on, once
    ``startup_trials`` trials completed; successive halving at its rungs only, ``(warmup_validations + 1) *
    reduction_factor^k`` validations."""
    first_decision = settings.warmup_validations + 1
    if settings.pruner == "none":
        return optuna.pruners.NopPruner()
    if settings.pruner == "successive_halving":

        def at_a_rung(trial: optuna.Trial, step: int) -> bool:
            rung = first_decision
            while rung < step:
                rung *= settings.reduction_factor
            return rung == step

        halving = optuna.pruners.SuccessiveHalvingPruner(
            min_resource=first_decision, reduction_factor=settings.reduction_factor
        )
        return DecidingPruner(halving, at_a_rung)

    def after_warmup_and_startup(trial: optuna.Trial, step: int) -> bool:
        if step < first_decision:
            return False
        completed = trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        return len(completed) >= settings.startup_trials

    median = optuna.pruners.MedianPruner(n_startup_trials=settings.startup_trials, n_warmup_steps=first_decision)
    return DecidingPruner(median, after_warmup_and_startup)


class DecidingPruner(optuna.pruners.BasePruner):
    """An Optuna pruner that also says where it can stop a trial: ``decides_at(trial, step)`` is False at every
    validation where ``prune`` cannot return True, so that a trial pays for the weight-share figures a decision is
    taken on (:class:`OptunaPruningCallback`) only where one is taken. ``prune`` is the wrapped pruner's."""

    def __init__(self, pruner: optuna.pruners.BasePruner, decides_at: Callable[[optuna.Trial, int], bool]) -> None:
        self.pruner = pruner
        self.decides_at = decides_at

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return self.pruner.prune(study, trial)


def search_parameters(
    runner: TrialRunner,
    *,
    study_name: str,
    search_settings: HyperparameterSearchSettings | None = None,
    storage_url: str | optuna.storages.BaseStorage | None = None,
    progress: ProgressCallback | None = None,
    should_stop: ShouldStop | None = None,
    progress_span: tuple[float, float] = (0.0, 1.0),
) -> SelectionResult:
    """Runs ``method.max_evals`` trials of a TPE search (all workers of a shared study together)."""
    method = runner.method
    search_settings = search_settings or HyperparameterSearchSettings()
    max_evals = method.max_evals
    sampler = EqualBudgetSampler(seed=search_settings.sampler_seed, n_startup_trials=max(1, min(10, max_evals // 3)))
    study = optuna.create_study(
        study_name=study_name,
        storage=storage_url,
        sampler=sampler,
        pruner=make_pruner(search_settings),
        direction="maximize" if method.higher_is_better else "minimize",
        load_if_exists=storage_url is not None,
    )
    if not study.trials and method.search_space:
        # Start from the method's own defaults: a known-reasonable point that TPE then improves on.
        defaults = FineTuningParams.model_validate(normalize_params(method.base_params())).model_dump()
        initial = {key: defaults[key] for key in method.search_space if key in defaults}
        if all(_within(method.search_space[key], value) for key, value in initial.items()):
            study.enqueue_trial(initial, skip_if_exists=True)

    result = SelectionResult(mode="search")
    canceled = False

    def objective(trial: optuna.Trial) -> float:
        params = suggest_params(trial, method)
        repeated = _same_params_value(trial)
        if repeated is not None:
            # Small categorical spaces make TPE draw a finished point again: reuse its value, train nothing.
            return repeated
        try:
            outcome = runner.run(params, trial=trial)
        except TrialPrunedWithOutcome as pruned:
            result.outcomes.append(pruned.outcome)
            raise
        result.outcomes.append(outcome)
        if method.main_metric not in outcome.metrics:
            raise FineTuningError(
                f"trial run {outcome.run_id} logged no {method.main_metric!r} (got {sorted(outcome.metrics)})"
            )
        return outcome.metrics[method.main_metric]

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        nonlocal canceled
        done = len(result.outcomes)
        _report(progress, progress_span, done / max_evals, f"trial {done}/{max_evals} {trial.state.name.lower()}")
        if should_stop is not None and should_stop():
            canceled = True
            study.stop()

    if should_stop is not None and should_stop():
        raise FineTuningCanceled(0)
    finished_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    # Other workers of a shared study may have run some of the trials already (or be running them).
    started = len(study.get_trials(deepcopy=False, states=(*finished_states, optuna.trial.TrialState.RUNNING)))
    if started >= max_evals:
        return result
    study.optimize(
        objective,
        n_trials=max_evals - started,
        callbacks=[optuna.study.MaxTrialsCallback(max_evals, states=finished_states), after_trial],
        catch=(),
        gc_after_trial=True,
    )
    if canceled:
        raise FineTuningCanceled(len(result.outcomes))
    return result


def _same_params_value(trial: optuna.Trial) -> float | None:
    finished = trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    for previous in finished:
        if previous.number != trial.number and previous.params == trial.params and previous.value is not None:
            return float(previous.value)
    return None


def _within(distribution: optuna.distributions.BaseDistribution, value: Any) -> bool:
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return value in distribution.choices
    if isinstance(distribution, optuna.distributions.FloatDistribution | optuna.distributions.IntDistribution):
        return isinstance(value, int | float) and distribution.low <= value <= distribution.high
    return False


def previous_best_parameter_sets(
    tracker: ExperimentsManager, previous: Iteration, top_count: int
) -> list[dict[str, Any]]:
    """The previous iteration's best params first, then its next best parameter sets: ``top_count`` sets in all,
    each once."""
    candidates: list[Mapping[str, Any]] = []
    best = tracker.get_best_run(previous.experiment_id)
    if best is not None and getattr(best, "params", None):
        candidates.append(best.params)
    # Ask for more than needed: the best run is among the top ones, and some sets may repeat or no longer validate.
    candidates.extend(tracker.get_top_params(previous.experiment_id, 2 * top_count + 1))
    unique: list[dict[str, Any]] = []
    for candidate in candidates:
        try:
            params = normalize_params(candidate)
        except FineTuningError as error:
            logger.warning("skipping a previous parameter set that no longer validates: %s", error)
            continue
        if params not in unique:
            unique.append(params)
    return unique[: max(1, top_count)]


def run_parameter_sets(
    runner: TrialRunner,
    parameter_sets: Sequence[Mapping[str, Any]],
    *,
    progress: ProgressCallback | None = None,
    should_stop: ShouldStop | None = None,
    progress_span: tuple[float, float] = (0.0, 1.0),
) -> SelectionResult:
    """Runs each parameter set to the end (no pruning: there are few, and each was good before)."""
    result = SelectionResult(mode="previous_best")
    total = len(parameter_sets)
    for index, params in enumerate(parameter_sets):
        if should_stop is not None and should_stop():
            raise FineTuningCanceled(len(result.outcomes))
        result.outcomes.append(runner.run(params))
        _report(progress, progress_span, (index + 1) / total, f"trial {index + 1}/{total} complete")
    return result


def _report(progress: ProgressCallback | None, span: tuple[float, float], fraction: float, message: str) -> None:
    if progress is None:
        return
    start, end = span
    progress(start + (end - start) * min(1.0, max(0.0, fraction)), message)


# ----------------------------------------------------------------------------- when to search again

TAG_SELECTION_MODE = "embedding_studio.selection_mode"
TAG_GAIN = "embedding_studio.gain"
TAG_BATCH_IDS = "embedding_studio.batch_ids"


@dataclass(frozen=True)
class IterationOutcome:
    """How a finished iteration chose its parameters, and by how much its best model beat the model it
    started from (its main metric on the iteration's held-out sessions; positive is better; None: unknown)."""

    mode: str
    gain: float | None


def iteration_gain(
    best_metrics: Mapping[str, float], reference: Mapping[str, float], method: FineTuningMethod
) -> float | None:
    """The best run's improvement over the reference (the start or blue model) by the main metric, signed so that
    positive is better also for a metric where lower is better; None when either figure is missing."""
    best = best_metrics.get(method.main_metric)
    before = reference.get(method.main_metric)
    if best is None or before is None:
        return None
    return float(best) - float(before) if method.higher_is_better else float(before) - float(best)


def record_iteration_outcome(
    tracker: ExperimentsManager, iteration: Iteration, mode: str, gain: float | None, batch_ids: Sequence[int]
) -> None:
    tags = {TAG_SELECTION_MODE: mode, TAG_BATCH_IDS: ",".join(str(batch_id) for batch_id in batch_ids)}
    if gain is not None:
        tags[TAG_GAIN] = repr(gain)
    tracker.set_iteration_tags(iteration.experiment_id, tags)


def recorded_outcomes(tracker: ExperimentsManager, plugin_name: str, before: Iteration) -> list[IterationOutcome]:
    """The recorded outcomes of the method's iterations before ``before``, newest first. Iterations that recorded
    none (they failed, or ran before outcomes were recorded) are left out: they neither extend nor break a run of
    stale iterations."""
    outcomes: list[IterationOutcome] = []
    for iteration in reversed(tracker.list_iterations(plugin_name)):
        if iteration.index >= before.index:
            continue
        tags = tracker.get_iteration_tags(iteration.experiment_id)
        mode = tags.get(TAG_SELECTION_MODE)
        if not mode:
            continue
        try:
            gain: float | None = float(tags[TAG_GAIN]) if TAG_GAIN in tags else None
        except ValueError:
            gain = None
        outcomes.append(IterationOutcome(mode=mode, gain=gain))
    return outcomes


def search_again_reason(outcomes: Sequence[IterationOutcome], search_again_after: int, min_gain: float) -> str | None:
    """Why this iteration searches the parameters again instead of reusing the previous best ones, or None.

    The rule: the ``search_again_after`` newest iterations (``outcomes`` is newest first) all reused previous
    parameters, and none of them improved the main metric over the model it started from by more than
    ``min_gain`` (an unknown gain counts as no improvement). A search among them, or too few of them, keeps
    reusing: a search was recent, or the reused parameters have not had their chance yet.
    """
    if search_again_after < 1 or len(outcomes) < search_again_after:
        return None
    recent = outcomes[:search_again_after]
    if any(outcome.mode != "previous_best" for outcome in recent):
        return None
    if any(outcome.gain is not None and outcome.gain > min_gain for outcome in recent):
        return None
    gains = ", ".join("unknown" if outcome.gain is None else f"{outcome.gain:+.4f}" for outcome in recent)
    return (
        f"the last {search_again_after} iterations reused the previous best parameters and none improved on the "
        f"model it started from by more than {min_gain:g} (gains {gains})"
    )
