"""One fine-tuning task's parameter search, shared by every worker that listens on the fine-tuning queue.

The job that owns the task prepares the data, starts the task's one MLflow experiment, and creates the task's
Optuna study in the project's PostgreSQL with exactly ``max_evals`` trials *enqueued* (WAITING: the first one
the method's defaults, the others left to TPE). Any worker then takes a trial by popping a waiting one, which
Optuna does with a conditional update, so two workers never run the same trial and the study never runs more
than the planned ones. Helpers are told by jobs the owner queues (``tasks.trials``); a helper rebuilds the same
prepared data from the plan the owner wrote on the study (batches, replay share, start model, experiment) and
checks its fingerprint, so every trial trains and validates on the very same sessions and pool. Each trial is
one run of the task's experiment, and writes its outcome, its worker and any error on the Optuna trial, so the
owner, which runs trials too, picks the best of *all* of them once no trial waits or runs, and deploys once.

A worker killed mid-trial stops the trial's heartbeat (Optuna's, in its ``trial_heartbeats`` table): after
``stale_after_s`` the trial is marked FAIL and counted as done, so a lost machine costs one trial, never a hung
task. A trial that *raises* fails the task, as it does on one worker: the owner reads the error and re-raises it.

Optuna keeps its tables (and its own ``alembic_version``) in the ``optuna`` schema (migration 0009), never in
``public``, where the project's Alembic version would look to Optuna like an incompatible schema of its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from embedding_studio.finetuning.errors import FineTuningError
from embedding_studio.finetuning.hpo import (
    HyperparameterSearchSettings,
    PreparedData,
    SelectionResult,
    TrialOutcome,
    TrialPrunedWithOutcome,
    TrialRunner,
    _same_params_value,
    _within,
    make_pruner,
    normalize_params,
)
from embedding_studio.finetuning.method import FineTuningMethod, suggest_params
from embedding_studio.finetuning.params import FineTuningParams

if TYPE_CHECKING:
    from embedding_studio.tracking import Iteration

logger = logging.getLogger(__name__)

OPTUNA_SCHEMA = "optuna"
PLAN_ATTR = "embedding_studio.plan"
OUTCOME_ATTR = "embedding_studio.outcome"
WORKER_ATTR = "embedding_studio.worker"
ERROR_ATTR = "embedding_studio.error"
SURPLUS_ATTR = "embedding_studio.surplus"

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def project_storage(database_url: str, heartbeat_s: int = 10, stale_after_s: int = 60) -> optuna.storages.RDBStorage:
    """Optuna's storage in the project's PostgreSQL: the one place a database URL becomes an Optuna storage.

    The URL gets the psycopg 3 driver the project ships with (a plain ``postgresql://`` would make SQLAlchemy look
    for psycopg2), and its connections use the ``optuna`` schema. One storage per URL and process: each holds an
    engine with its own pool. ``heartbeat_s``/``stale_after_s``: a RUNNING trial whose worker stopped beating for
    that long is failed by the next worker that looks (``optuna.storages.fail_stale_trials``).
    """
    from embedding_studio.db.engine import normalize_database_url

    url = normalize_database_url(database_url)
    key = (url, heartbeat_s, stale_after_s)
    with _storages_lock:
        storage = _storages.get(key)
        if storage is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    url,
                    engine_kwargs={
                        "pool_pre_ping": True,
                        "connect_args": {"options": f"-c search_path={OPTUNA_SCHEMA}"},
                    },
                    heartbeat_interval=heartbeat_s,
                    grace_period=stale_after_s,
                )
            _storages[key] = storage
        return storage


_storages: dict[tuple[str, int, int], optuna.storages.RDBStorage] = {}
_storages_lock = threading.Lock()


@dataclass(frozen=True)
class TrialPlan:
    """What the owner wrote on the study so that a helper runs the same trials: the same prepared data (the
    batches, the replay share and the fingerprint of the result), the same start model, the same experiment."""

    trials: int
    batch_ids: list[int]
    replay_share: float
    start_model_id: str | None
    data_fingerprint: str
    experiment_id: str
    iteration_name: str
    plugin_name: str
    batch_label: str
    iteration_index: int
    base_model: str | None

    def iteration(self) -> Iteration:
        from embedding_studio.tracking import Iteration

        return Iteration(
            experiment_id=self.experiment_id,
            name=self.iteration_name,
            plugin_name=self.plugin_name,
            batch_id=self.batch_label,
            index=self.iteration_index,
            base_model=self.base_model,
        )

    @classmethod
    def of_iteration(
        cls,
        iteration: Iteration,
        *,
        trials: int,
        batch_ids: list[int],
        replay_share: float,
        start_model_id: str | None,
        data_fingerprint: str,
    ) -> TrialPlan:
        return cls(
            trials=trials,
            batch_ids=list(batch_ids),
            replay_share=replay_share,
            start_model_id=start_model_id,
            data_fingerprint=data_fingerprint,
            experiment_id=iteration.experiment_id,
            iteration_name=iteration.name,
            plugin_name=iteration.plugin_name,
            batch_label=iteration.batch_id,
            iteration_index=iteration.index,
            base_model=iteration.base_model,
        )


@dataclass
class SharedTrials:
    """How a fine-tuning job shares its search: the study's name and storage, this worker's name (shown in the
    task's progress), and, for the owner, what to call once the study holds its trials (the task layer queues
    the helper jobs there)."""

    study_name: str
    storage: optuna.storages.BaseStorage
    worker: str
    on_study_ready: Callable[[int], None] | None = None


@dataclass(frozen=True)
class TrialsProgress:
    """Where the shared search stands: trials finished of the planned ones, running now, and per worker the
    trials it took (finished or running)."""

    total: int
    done: int
    running: int
    failed: int
    workers: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        """``trials 3/4 done on worker-a (2), worker-b (2); 1 running``."""
        line = f"trials {self.done}/{self.total} done"
        if self.workers:
            line += " on " + ", ".join(f"{name} ({count})" for name, count in sorted(self.workers.items()))
        if self.running:
            line += f"; {self.running} running"
        if self.failed:
            line += f"; {self.failed} lost (worker died)"
        return line


def data_fingerprint(data: PreparedData) -> str:
    """A short hash of what the trials train and validate on: the sessions of each split and the items' parts.

    The owner writes it on the study; a helper that prepared anything else (the catalog changed under it, a
    different version of the code) refuses to run trials that would not be comparable."""
    items = data.items
    parts = getattr(items, "parts", None)
    images = getattr(items, "images", None)
    content = {
        "train": sorted(str(getattr(entry, "session_id", entry)) for entry in data.train_inputs),
        "test": sorted(str(getattr(entry, "session_id", entry)) for entry in data.test_inputs),
        "parts": {key: list(value) for key, value in sorted(parts.items())} if isinstance(parts, Mapping) else None,
        "images": sorted(images) if isinstance(images, Mapping) else None,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]


def _sampler(
    method: FineTuningMethod, settings: HyperparameterSearchSettings, worker: str
) -> optuna.samplers.TPESampler:
    """TPE as ``search_parameters`` builds it, with a seed per worker (the same seed everywhere would draw the same
    points on every worker) and the constant liar, so a worker does not draw again where another one is training."""
    seed = None if settings.sampler_seed is None else settings.sampler_seed + zlib.crc32(worker.encode("utf-8"))
    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=max(1, min(10, method.max_evals // 3)), constant_liar=True
    )


def create_shared_study(
    shared: SharedTrials,
    method: FineTuningMethod,
    settings: HyperparameterSearchSettings,
    plan: TrialPlan,
) -> optuna.Study:
    """The owner's study: the plan written on it and ``plan.trials`` trials waiting (the defaults first)."""
    study = optuna.create_study(
        study_name=shared.study_name,
        storage=shared.storage,
        sampler=_sampler(method, settings, shared.worker),
        pruner=make_pruner(settings),
        direction="maximize" if method.higher_is_better else "minimize",
        load_if_exists=True,
    )
    if study.user_attrs.get(PLAN_ATTR) is not None:
        raise FineTuningError(f"study {shared.study_name!r} was already planned: a fine-tuning task runs once")
    study.set_user_attr(PLAN_ATTR, dataclasses.asdict(plan))
    defaults = FineTuningParams.model_validate(normalize_params(method.base_params())).model_dump()
    initial = {key: defaults[key] for key in method.search_space if key in defaults}
    first = initial if all(_within(method.search_space[key], value) for key, value in initial.items()) else {}
    for index in range(plan.trials):
        study.enqueue_trial(first if index == 0 else {}, skip_if_exists=False)
    return study


def open_shared_study(
    shared: SharedTrials, method: FineTuningMethod, settings: HyperparameterSearchSettings
) -> tuple[optuna.Study, TrialPlan] | None:
    """A helper's view of the owner's study and plan; None when there is no such planned study (yet)."""
    try:
        study = optuna.load_study(
            study_name=shared.study_name,
            storage=shared.storage,
            sampler=_sampler(method, settings, shared.worker),
            pruner=make_pruner(settings),
        )
    except KeyError:
        return None
    plan = study.user_attrs.get(PLAN_ATTR)
    return (study, TrialPlan(**plan)) if plan else None


def waiting_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def trial_error(study: optuna.Study) -> str | None:
    """The first error a trial raised on any worker (a killed worker's trial has none: it is only lost)."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        error = trial.user_attrs.get(ERROR_ATTR)
        if error:
            return f"trial {trial.number + 1} on {trial.user_attrs.get(WORKER_ATTR, 'a worker')}: {error}"
    return None


def trials_progress(study: optuna.Study, total: int) -> TrialsProgress:
    done = running = failed = 0
    workers: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        if trial.number >= total or trial.user_attrs.get(SURPLUS_ATTR):
            continue
        if trial.state is TrialState.RUNNING:
            running += 1
        elif trial.state in _FINISHED:
            done += 1
            failed += int(trial.state is TrialState.FAIL and not trial.user_attrs.get(ERROR_ATTR))
        worker = trial.user_attrs.get(WORKER_ATTR)
        if worker and trial.state is not TrialState.WAITING:
            workers[worker] = workers.get(worker, 0) + 1
    return TrialsProgress(total=total, done=done, running=running, failed=failed, workers=workers)


def run_planned_trials(
    runner: TrialRunner,
    study: optuna.Study,
    plan: TrialPlan,
    *,
    worker: str,
    should_stop: Callable[[], bool] | None = None,
    on_trial: Callable[[TrialsProgress], None] | None = None,
) -> int:
    """Take waiting trials of the study one at a time until none waits (or ``should_stop``, or a trial anywhere
    raised); returns how many this worker ran. A trial that raises here marks itself with the error and raises."""
    method = runner.method

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr(WORKER_ATTR, worker)
        if trial.number >= plan.trials:
            # Another worker popped the last waiting trial between our look and our ask, so Optuna made a new
            # one: it is not part of the plan and trains nothing.
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise optuna.TrialPruned("not a planned trial: every planned one was taken")
        params = suggest_params(trial, method)
        repeated = _same_params_value(trial)
        if repeated is not None:
            return repeated  # a finished point drawn again: its value, no training (as search_parameters does)
        try:
            outcome = runner.run(params, trial=trial)
        except TrialPrunedWithOutcome as pruned:
            trial.set_user_attr(OUTCOME_ATTR, dataclasses.asdict(pruned.outcome))
            raise
        except Exception as error:
            trial.set_user_attr(ERROR_ATTR, f"{type(error).__name__}: {error}"[:2000])
            raise
        trial.set_user_attr(OUTCOME_ATTR, dataclasses.asdict(outcome))
        if method.main_metric not in outcome.metrics:
            message = f"trial run {outcome.run_id} logged no {method.main_metric!r} (got {sorted(outcome.metrics)})"
            trial.set_user_attr(ERROR_ATTR, message)
            raise FineTuningError(message)
        return outcome.metrics[method.main_metric]

    ran = 0
    while True:
        if should_stop is not None and should_stop():
            break
        if trial_error(study) is not None or waiting_trials(study) == 0:
            break
        study.optimize(objective, n_trials=1, catch=(), gc_after_trial=True)
        ran += 1
        if on_trial is not None:
            on_trial(trials_progress(study, plan.trials))
    return ran


def wait_for_trials(
    study: optuna.Study,
    plan: TrialPlan,
    *,
    should_stop: Callable[[], bool] | None = None,
    on_change: Callable[[TrialsProgress], None] | None = None,
    poll_s: float = 1.0,
) -> TrialsProgress:
    """Wait, as the owner, until no planned trial waits or runs anywhere; stale ones (their worker died) are
    failed on the way. Raises the first error a trial raised; returns early when ``should_stop`` says so."""
    last: TrialsProgress | None = None
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        error = trial_error(study)
        if error is not None:
            raise FineTuningError(error)
        progress = trials_progress(study, plan.trials)
        if progress != last and on_change is not None:
            on_change(progress)
        last = progress
        if progress.done >= progress.total or (should_stop is not None and should_stop()):
            return progress
        time.sleep(poll_s)


def study_outcomes(study: optuna.Study, plan: TrialPlan) -> SelectionResult:
    """Every trial's outcome, whichever worker ran it, in trial order; the trials per worker alongside."""
    outcomes: list[TrialOutcome] = []
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda one: one.number):
        recorded = trial.user_attrs.get(OUTCOME_ATTR)
        if trial.number < plan.trials and recorded:
            outcomes.append(TrialOutcome(**recorded))
    result = SelectionResult(outcomes=outcomes, mode="search")
    result.workers = dict(trials_progress(study, plan.trials).workers)
    return result


def helper_should_run(shared: SharedTrials, method: FineTuningMethod, settings: HyperparameterSearchSettings) -> bool:
    """Cheap check before a helper prepares anything: the study is planned and a trial still waits."""
    opened = open_shared_study(shared, method, settings)
    return opened is not None and waiting_trials(opened[0]) > 0 and trial_error(opened[0]) is None
