"""The job functions procrastinate runs: ``fine_tuning_worker``, ``reindex_worker``, ``upsert_worker``.

Each takes the task id, moves the task pending → processing, does the work, and ends it done, canceled
or refused. On any other exception the task is marked failed with the reason and the error is raised
again (procrastinate records the job as failed too), as in the seed; model and GPU memory are freed
whatever happens.

They are the methods of :class:`TaskWorkers`, which is handed the ``TaskRepository`` and the ``VectorStore`` the
worker process runs on (``runner.build_worker_app`` registers them under the job names).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from embedding_studio import vectordb
from embedding_studio.tasks.deployment import DeploymentDecision, blue_changed_decision, deployment_decision
from embedding_studio.tasks.errors import TaskCanceledError
from embedding_studio.tasks.params import (
    FineTuningTaskParams,
    ItemTextOptions,
    LoaderSpec,
    ReindexTaskParams,
    UpsertTaskParams,
)
from embedding_studio.tasks.reindex import ReindexConflictError, run_reindex
from embedding_studio.tasks.repository import TaskRepository
from embedding_studio.tasks.types import Task, TaskKind, TaskStatus
from embedding_studio.vectordb import VectorStore

if TYPE_CHECKING:
    from embedding_studio.finetuning import FineTuningResult

logger = logging.getLogger(__name__)


def _release_memory() -> None:
    try:
        from embedding_studio.models import release_memory

        release_memory()
    except Exception:  # freeing memory must never hide the task's own outcome
        logger.debug("release_memory failed", exc_info=True)


def _describe(error: BaseException) -> str:
    message = str(error).strip()
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


#: Tasks running in this process: the stalled-job check never judges these (a busy worker may miss
#: a heartbeat, but it is not dead).
RUNNING_HERE: set[str] = set()


def run_task(tasks: TaskRepository, task_id: str, kind: TaskKind, body: Callable[[Task], None]) -> None:
    RUNNING_HERE.add(task_id)
    try:
        _run_task(tasks, task_id, kind, body)
    finally:
        RUNNING_HERE.discard(task_id)


def _run_task(tasks: TaskRepository, task_id: str, kind: TaskKind, body: Callable[[Task], None]) -> None:
    task = tasks.find_task(task_id)
    if task is None:
        logger.warning("job for task %s skipped: the task does not exist", task_id)
        return
    if task.kind is not kind:
        logger.warning("job for task %s skipped: it is a %s task, not %s", task_id, task.kind, kind)
        return
    started = tasks.start_task(task_id)
    if started is None:
        logger.info("task %s is %s, not pending: nothing to run", task_id, task.status.value)
        return
    try:
        body(started)
    except TaskCanceledError as error:
        tasks.finish_task(task_id, TaskStatus.canceled, error=str(error))
    except Exception as error:
        try:
            tasks.finish_task(task_id, TaskStatus.failed, error=_describe(error))
        except Exception:
            logger.exception("could not mark task %s failed", task_id)
        raise
    finally:
        _release_memory()


def progress_reporter(tasks: TaskRepository, task_id: str) -> Callable[[float, str], None]:
    def report(fraction: float, message: str) -> None:
        tasks.set_progress(task_id, fraction, message)

    return report


def cancel_checker(tasks: TaskRepository, task_id: str) -> Callable[[], bool]:
    def should_stop() -> bool:
        return tasks.is_cancel_requested(task_id)

    return should_stop


# ------------------------------------------------------------------------------------------ fine-tuning


def _fine_tune(tasks: TaskRepository, store: VectorStore, task: Task) -> None:
    from embedding_studio.clickstream.dao import ClickstreamRepository
    from embedding_studio.finetuning import run_fine_tuning
    from embedding_studio.finetuning.errors import FineTuningCanceled
    from embedding_studio.finetuning.method import get_method
    from embedding_studio.tasks.service import TaskService

    params = FineTuningTaskParams.model_validate(task.params)
    method = get_method(params.method, **params.method_options)
    blue_model_id = store.get_deployment().blue_model_id
    # since_blue is resolved now, not when the task was sent: a batch may have been released since. Named batches
    # go as they are: the pipeline checks them again before reading anything.
    service = TaskService(tasks)
    batch_ids = params.explicit_batch_ids() or service.resolve_batch_ids(params, blue_model_id)
    start_model = params.embedding_model_id or blue_model_id
    # The gate needs blue's figures on the very sessions and candidate pool the best model was validated on,
    # so the pipeline measures blue too; without deploy_as_blue nobody asks, and the time is saved.
    reference_model_id = blue_model_id if params.deploy_as_blue else None
    from embedding_studio.tasks.trials import drop_trial_jobs, shared_trials_for

    try:  # a search's trials run on every fine-tuning worker (tasks.trials); this job owns the task
        result = run_fine_tuning(
            ClickstreamRepository(tasks.database),
            batch_ids,
            method=method,
            embedding_model_id=start_model,
            progress=progress_reporter(tasks, task.id),
            should_stop=cancel_checker(tasks, task.id),
            reference_model_id=reference_model_id,
            replay_share=params.replay_share,
            shared=shared_trials_for(tasks, task.id, owner=True),
        )
    except FineTuningCanceled as error:
        # The pipeline saw the cancel flag; said here, at the one call into it, as the task layer's own type,
        # so run_task recognises every cancellation by class (finetuning sits below tasks and cannot raise it).
        raise TaskCanceledError(str(error)) from error
    finally:
        drop_trial_jobs(tasks, task.id)
    child_id: str | None = None
    decision: DeploymentDecision | None = None
    if params.deploy_as_blue:
        decision = _deployment_decision(store, params, result, reference_model_id)
        logger.info("fine-tuning task %s: %s", task.id, decision.reason)
    if decision is not None and decision.deployed:
        # As in the seed: the deployment is a reindex task of its own, a child of this one.
        child = service.create_reindex_task(
            ReindexTaskParams(
                source_model_id=start_model,
                dest_model_id=result.best_run_id,
                item_text=ItemTextOptions.of(method.item_text),  # search serves the texts it was trained on
                loader=_image_loader_of(method),
                deploy_as_blue=True,
                wait_on_conflict=params.wait_on_conflict,
            ),
            parent_id=task.id,
            check_model=False,
        )
        child_id = child.id
    final_message = f"best run {result.best_run_id}"
    if decision is not None:
        final_message = decision.reason + (f"; reindex task {child_id} deploys it" if child_id else "")
    tasks.finish_task(
        task.id,
        TaskStatus.done,
        best_run_id=result.best_run_id,
        best_model_url=result.best_model_url,
        result={
            "metrics": result.metrics,
            "experiment_id": result.experiment_id,
            "reindex_task_id": child_id,
            "start_model_id": start_model,
            "batch_ids": result.batch_ids,  # what the model was trained on: since_blue reads it back
            "replayed_sessions": result.replayed_sessions,
            "selection_mode": result.selection_mode,
            "trial_workers": dict(getattr(result, "trial_workers", None) or {}),  # trials each worker ran
            "search_reason": result.search_reason,
            "main_metric": result.main_metric,
            "blue_metrics": dict(result.reference_metrics),
            "validation_queries": result.validation_queries,
            "validation_pool_items": result.validation_pool_items,
            "held_out_queries": list(getattr(result, "held_out_queries", None) or []),  # the report's examples
            "deployment": decision.as_dict() if decision is not None else None,
        },
        message=final_message,
    )


def _image_loader_of(method: Any) -> LoaderSpec | None:
    """The images the method trained on, for its deployment's reindex: an image collection holds keys, not pixels,
    so the reindex must read them again, and from the method's loader (the configured catalog may be another);
    None for text, whose reindex copies the start model's collection when it was cut the same way."""
    from embedding_studio.finetuning.method import LoaderConfig
    from embedding_studio.items.registry import reads_images

    loader = method.loader
    if isinstance(loader, LoaderConfig) and reads_images(loader.name):
        return LoaderSpec(name=loader.name, options=dict(loader.options))
    return None


def _deployment_decision(
    store: VectorStore, params: FineTuningTaskParams, result: FineTuningResult, compared_with: str | None
) -> DeploymentDecision:
    """The gate, on the figures ``run_fine_tuning`` measured for the best model and for blue."""
    metric = result.main_metric
    candidate = result.metrics.get(metric)
    blue = result.reference_metrics.get(metric) if compared_with is not None else None
    blue_now = store.get_deployment().blue_model_id
    if blue_now != compared_with:  # another deployment while this task trained: the figures are not about it
        return blue_changed_decision(
            candidate, blue, metric, compared_with, blue_now, params.min_deploy_gain, params.force_deploy
        )
    return deployment_decision(
        candidate,
        blue,
        min_gain=params.min_deploy_gain,
        forced=params.force_deploy,
        metric=metric,
        blue_model_id=compared_with,
        higher_is_better=result.higher_is_better,
    )


# ---------------------------------------------------------------------------------------------- reindex


def _reindex(tasks: TaskRepository, store: VectorStore, task: Task) -> None:
    params = ReindexTaskParams.model_validate(task.params)
    try:
        result = run_reindex(
            params,
            progress=progress_reporter(tasks, task.id),
            should_stop=cancel_checker(tasks, task.id),
            task_id=task.id,  # a large catalog is embedded by shards on every reindex worker (tasks.shards)
            store=store,
        )
    except ReindexConflictError as error:
        tasks.finish_task(task.id, TaskStatus.refused, error=str(error))
        return
    except vectordb.CollectionStateError as error:
        tasks.finish_task(task.id, TaskStatus.refused, error=str(error))
        return
    tasks.finish_task(task.id, TaskStatus.done, best_run_id=None, result=result.as_dict(), message=result.summary())


# ----------------------------------------------------------------------------------------------- upsert


def _embedder_for(model_id: str) -> Callable[[list[str]], Any]:
    from embedding_studio.serving.models import resolve_model
    from embedding_studio.tasks.reindex import ENCODE_BATCH_SIZE

    model = resolve_model(model_id)
    from embedding_studio.models.clip import is_image_model
    from embedding_studio.tasks.image_index import image_embedder

    if is_image_model(model):  # its parts' content is an image key, read through the catalog's image loader
        return image_embedder(model, ENCODE_BATCH_SIZE)
    return lambda texts: model.encode_items(texts, batch_size=ENCODE_BATCH_SIZE)


def _upsert_payload(item: Any) -> dict[str, Any] | None:
    """An image carries its key and URL, as a reindexed image does; other items their own payload."""
    if item.image is None:
        return item.payload
    from embedding_studio.tasks.image_index import upserted_image_payload

    return upserted_image_payload(item.image, item.payload)


def _upsert(tasks: TaskRepository, store: VectorStore, task: Task) -> None:
    params = UpsertTaskParams.model_validate(task.params)
    changes = [
        vectordb.ItemChange(item.item_id, "upsert", item.data, _upsert_payload(item)) for item in params.upserts
    ] + [vectordb.ItemChange(item_id, "delete") for item_id in params.deletes]
    written = store.apply_item_changes(changes, _embedder_for)
    tasks.finish_task(
        task.id,
        TaskStatus.done,
        result={"upserted": len(params.upserts), "deleted": len(params.deletes), "collections": written},
        message=f"upserted {len(params.upserts):,} items, deleted {len(params.deletes):,}, in "
        f"{len(written)} collection{'s' if len(written) != 1 else ''}",
    )


# ---------------------------------------------------------------------------------------------- the jobs


class TaskWorkers:
    """The job functions of a worker process, on the task table and the vector store they are handed."""

    def __init__(self, tasks: TaskRepository, store: VectorStore) -> None:
        self._tasks = tasks
        self._store = store

    @property
    def tasks(self) -> TaskRepository:
        return self._tasks

    @property
    def store(self) -> VectorStore:
        return self._store

    def fine_tuning_worker(self, task_id: str) -> None:
        run_task(self._tasks, task_id, TaskKind.fine_tuning, functools.partial(_fine_tune, self._tasks, self._store))

    def reindex_worker(self, task_id: str) -> None:
        run_task(self._tasks, task_id, TaskKind.reindex, functools.partial(_reindex, self._tasks, self._store))

    def upsert_worker(self, task_id: str) -> None:
        run_task(self._tasks, task_id, TaskKind.upsert, functools.partial(_upsert, self._tasks, self._store))

    def functions(self) -> dict[TaskKind, Callable[[str], None]]:
        """The job function of each task kind (what ``runner.build_worker_app`` registers)."""
        return {
            TaskKind.fine_tuning: self.fine_tuning_worker,
            TaskKind.reindex: self.reindex_worker,
            TaskKind.upsert: self.upsert_worker,
        }
