"""A planned Optuna study in the project's PostgreSQL whose trials several workers take (``shared_search``).

Training is stubbed (the trial runner, tracker and Optuna are real): what is under test is who runs which trial, that
no more than the planned trials run, that a dead worker's trial is counted instead of waited for, and that a trial's
error on one worker reaches the owner.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import pytest

from embedding_studio.finetuning.errors import FineTuningError
from embedding_studio.finetuning.hpo import HyperparameterSearchSettings, PreparedData, TrialRunner, resolve_storage
from embedding_studio.finetuning.shared_search import (
    SharedTrials,
    TrialPlan,
    create_shared_study,
    open_shared_study,
    project_storage,
    run_planned_trials,
    study_outcomes,
    wait_for_trials,
)

from .test_hpo import method

if TYPE_CHECKING:
    from embedding_studio.db import Database

pytestmark = pytest.mark.integration


def quick_train(*, params: Any, on_validation_metrics: Any, **_: Any) -> Any:
    """Stands in for training: the metric depends on the drawn learning rate."""
    from embedding_studio.finetuning.fine_tuner import FitResult

    metrics = {"val_loss": 1.0, "val_ndcg_at_10": 1.0 - abs(params.query_lr - 3e-3) * 100}
    on_validation_metrics(1, metrics)
    return FitResult(best_metrics=metrics, history=[metrics], stopped_epoch=0)


def failing_train(**_: Any) -> Any:
    raise RuntimeError("CUDA out of memory on this worker")


def _setup(
    database_url: str, tracker: Any, prepared: PreparedData, model_dir: Path, trials: int, name: str, **storage: int
) -> tuple[Any, TrialPlan, Any, HyperparameterSearchSettings]:
    fine_tuning_method = method(max_evals=trials)
    iteration = tracker.start_iteration("toy", "1")
    plan = TrialPlan.of_iteration(
        iteration, trials=trials, batch_ids=[1], replay_share=1.0, start_model_id=None, data_fingerprint="x"
    )
    settings = HyperparameterSearchSettings(pruner="none")
    name = f"{name}-{uuid.uuid4().hex}"  # Optuna's schema outlives clean_db
    owner = SharedTrials(study_name=name, storage=project_storage(database_url, **storage), worker="owner")
    study = create_shared_study(owner, fine_tuning_method, settings, plan)
    return fine_tuning_method, plan, study, settings


def _runner(
    fine_tuning_method: Any, prepared: PreparedData, model_dir: Path, tracker: Any, plan: TrialPlan, train: Any
) -> TrialRunner:
    return TrialRunner(fine_tuning_method, prepared, model_dir, tracker, plan.iteration(), device="cpu", train=train)


def test_two_workers_take_the_planned_trials_and_never_more(
    clean_db: str,
    prepared: PreparedData,
    tiny_model_dir: Path,
    tracker: Any,
) -> None:
    fine_tuning_method, plan, study, settings = _setup(clean_db, tracker, prepared, tiny_model_dir, 3, "split")
    helper_view = open_shared_study(
        SharedTrials(study_name=study.study_name, storage=study._storage, worker="helper"), fine_tuning_method, settings
    )
    assert helper_view is not None and helper_view[1] == plan  # a helper reads the owner's plan back
    taken: list[int] = []
    helper = _runner(fine_tuning_method, prepared, tiny_model_dir, tracker, plan, quick_train)
    ran = run_planned_trials(
        helper,
        helper_view[0],
        plan,
        worker="helper",
        should_stop=lambda: bool(taken),
        on_trial=lambda _: taken.append(1),
    )
    owner = _runner(fine_tuning_method, prepared, tiny_model_dir, tracker, plan, quick_train)
    assert ran == 1 and run_planned_trials(owner, study, plan, worker="owner") == 2
    assert run_planned_trials(helper, helper_view[0], plan, worker="helper") == 0  # nothing waits: nothing runs

    progress = wait_for_trials(study, plan, poll_s=0.1)
    assert (progress.done, progress.total, progress.workers) == (3, 3, {"helper": 1, "owner": 2})
    assert progress.describe() == "trials 3/3 done on helper (1), owner (2)"
    selection = study_outcomes(study, plan)
    assert len(selection.outcomes) == 3 and selection.workers == {"helper": 1, "owner": 2}
    assert len(study.trials) == 3
    assert len(tracker.list_runs(plan.experiment_id)) == 3  # one experiment, every worker's runs in it


def test_a_dead_workers_trial_is_failed_after_its_heartbeat_stops_and_counted(
    clean_db: str,
    prepared: PreparedData,
    tiny_model_dir: Path,
    tracker: Any,
) -> None:
    fine_tuning_method, plan, study, _ = _setup(
        clean_db, tracker, prepared, tiny_model_dir, 2, "stale", heartbeat_s=1, stale_after_s=2
    )
    lost = study.ask()  # a worker took a trial, beat once, and was killed
    study._storage.record_heartbeat(lost._trial_id)
    owner = _runner(fine_tuning_method, prepared, tiny_model_dir, tracker, plan, quick_train)
    assert run_planned_trials(owner, study, plan, worker="owner") == 1
    started = time.monotonic()
    progress = wait_for_trials(study, plan, poll_s=0.2)
    assert time.monotonic() - started < 10
    assert (progress.done, progress.failed) == (2, 1)
    assert "1 lost (worker died)" in progress.describe()
    assert study.trials[lost.number].state is optuna.trial.TrialState.FAIL
    assert len(study_outcomes(study, plan).outcomes) == 1  # the best is chosen among the trials that ran


def test_a_trial_that_raises_on_a_helper_fails_the_owners_wait_with_its_error(
    clean_db: str,
    prepared: PreparedData,
    tiny_model_dir: Path,
    tracker: Any,
) -> None:
    fine_tuning_method, plan, study, _ = _setup(clean_db, tracker, prepared, tiny_model_dir, 2, "raises")
    helper = _runner(fine_tuning_method, prepared, tiny_model_dir, tracker, plan, failing_train)
    with pytest.raises(RuntimeError, match="out of memory"):
        run_planned_trials(helper, study, plan, worker="gpu-7")
    owner = _runner(fine_tuning_method, prepared, tiny_model_dir, tracker, plan, quick_train)
    assert run_planned_trials(owner, study, plan, worker="owner") == 0  # no trial is started after an error
    with pytest.raises(FineTuningError, match="trial 1 on gpu-7: RuntimeError: CUDA out of memory"):
        wait_for_trials(study, plan, poll_s=0.1)


def test_database_storage_uses_psycopg_3_and_keeps_optunas_tables_apart(clean_db: str, database: Database) -> None:
    plain = clean_db.replace("postgresql+psycopg://", "postgresql://", 1)  # DATABASE_URL as users write it
    storage = resolve_storage("database", plain)
    optuna.create_study(study_name=f"apart-{uuid.uuid4().hex}", storage=storage)
    with database.connection() as connection:
        schemas = connection.execute(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'studies'"
        ).fetchall()
        assert {row[0] for row in schemas} == {"optuna"}
        revision = connection.execute("SELECT version_num FROM public.alembic_version").fetchone()
    assert revision is not None
    project_revision = revision[0]
    assert project_revision[:4].isdigit()  # the project's revision, untouched: Optuna's (v3.2.0.a...) is in its schema
