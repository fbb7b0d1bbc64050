"""Creating and sending tasks, with the checks that belong before anything is queued.

The API and the CLI both come here: an unknown or unreleased batch, or a model that does not exist, is
refused with a reason before a task exists; a reindex into a model another reindex is building is
recorded as ``refused`` unless the caller asked to wait.

:class:`TaskService` is handed the ``TaskRepository`` it records tasks in (the clickstream batches it checks and the
vector store's blue pointer and collections are read on the same database); the checks that read no task
(``check_method_exists``, ``check_loader_spec``, ``check_reindex_request`` on the store it is handed) stay functions.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from embedding_studio.serving.errors import UnknownModelError
from embedding_studio.serving.models import check_model_exists
from embedding_studio.tasks import queue
from embedding_studio.tasks.errors import ModelStateError, TaskError
from embedding_studio.tasks.params import FineTuningTaskParams, ReindexTaskParams, UpsertTaskParams
from embedding_studio.tasks.repository import TaskRepository
from embedding_studio.tasks.types import Task, TaskKind, TaskStatus

if TYPE_CHECKING:
    from embedding_studio.clickstream.dao import ClickstreamRepository
    from embedding_studio.vectordb import VectorStore


class InvalidTaskError(TaskError):
    """The task asked for cannot run (unknown or unreleased batch, unknown method...); ``field`` is the request
    field at fault, so the API's 422 names it."""

    def __init__(self, message: str, field: str = "body") -> None:
        super().__init__(message)
        self.field = field


_RELEASE_HINT = "`embedding-studio clickstream release` (or POST /api/v1/clickstream/batches/release)"


def check_method_exists(method: str, options: dict[str, Any] | None = None) -> None:
    """Build the method as a worker will, so an unknown method, an option it does not take, an option of the
    wrong JSON type or a bad catalog loader in ``loader`` is refused when the task is asked for, not minutes
    later. Nothing is loaded: the method's loader is only built."""
    from embedding_studio.finetuning.errors import UnknownMethodError
    from embedding_studio.finetuning.method import FineTuningMethod, available_methods, get_method

    options = dict(options or {})
    if method not in available_methods():
        raise InvalidTaskError(
            f"unknown fine-tuning method {method!r}; known methods: {', '.join(available_methods())}",
            field="method",
        )
    _check_method_option_types(method, options)
    try:
        built = get_method(method, **options)
    except UnknownMethodError as error:
        raise InvalidTaskError(str(error), field="method") from error
    except TypeError as error:
        known = sorted(field.name for field in dataclasses.fields(FineTuningMethod) if field.name != "name")
        raise InvalidTaskError(
            f"fine-tuning method {method!r} refused its options ({error}); its options: {', '.join(known)}",
            field="method_options",
        ) from error
    except Exception as error:
        raise InvalidTaskError(f"fine-tuning method {method!r}: {error}", field="method_options") from error
    if "loader" in options and hasattr(built.loader, "name"):  # a loader named in the request, not the server's own
        check_loader_spec(built.loader.name, dict(built.loader.options), field="method_options.loader")


def _check_method_option_types(method: str, options: dict[str, Any]) -> None:
    """A JSON option whose ``FineTuningMethod`` default is a plain number, flag or text must be one too: the
    dataclass would take ``"max_evals": "four"`` and fail in the worker."""
    from embedding_studio.finetuning.method import FineTuningMethod

    defaults = {
        field.name: field.default
        for field in dataclasses.fields(FineTuningMethod)
        if field.default is not dataclasses.MISSING
    }
    for key, value in options.items():
        default = defaults.get(key)
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif isinstance(default, str):
            ok = isinstance(value, str)
        else:
            continue
        if not ok:
            raise InvalidTaskError(
                f"fine-tuning method {method!r}: option {key!r} must be {_KIND_NAMES[type(default)]}, got {value!r}",
                field=f"method_options.{key}",
            )


_KIND_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


def check_loader_spec(name: str, options: dict[str, Any], field: str = "loader") -> None:
    """A loader named in a request: known name, options it takes, absolute local paths that exist."""
    from embedding_studio.items.loader import LoaderError
    from embedding_studio.items.registry import check_loader

    try:
        check_loader(name, options)
    except LoaderError as error:
        raise InvalidTaskError(str(error), field=field) from error


def check_reindex_request(params: ReindexTaskParams, store: VectorStore) -> None:
    """What a worker would find wrong only after the task waited in the queue: a destination or source that
    names no model, a destination that is already blue in ``store`` (its collection is what search reads: it is
    never rebuilt in place), a loader that cannot be built."""
    for field, model_id in (("dest_model_id", params.dest_model_id), ("source_model_id", params.source_model_id)):
        if model_id is None:
            continue
        try:
            check_model_exists(model_id)
        except UnknownModelError as error:
            raise InvalidTaskError(str(error), field=field) from error
    if store.get_deployment().blue_model_id == params.dest_model_id:
        raise ModelStateError(
            f"model {params.dest_model_id!r} is already the blue model: search answers from its collection, which "
            "is never rebuilt in place; reindex into another model (or `embedding-studio models rollback` first)"
        )
    if params.loader is not None:
        check_loader_spec(params.loader.name, params.loader.options)


class TaskService:
    """Checking, recording and sending tasks in the task table it is handed (and reading the clickstream batches
    and the vector store of the same database)."""

    def __init__(self, tasks: TaskRepository) -> None:
        from embedding_studio.clickstream.dao import ClickstreamRepository
        from embedding_studio.vectordb import VectorStore

        self._tasks = tasks
        self._clickstream: ClickstreamRepository = ClickstreamRepository(tasks.database)
        self._store = VectorStore(tasks.database)

    @property
    def tasks(self) -> TaskRepository:
        return self._tasks

    # -------------------------------------------------------------------------------------------- batches

    def check_batch_is_released(self, batch_id: int, field: str = "batch_id") -> None:
        from embedding_studio.clickstream import errors as clickstream_errors

        try:
            batch = self._clickstream.get_batch(batch_id)
        except clickstream_errors.UnknownBatchError as error:
            raise InvalidTaskError(
                f"{error}: only released batches can be trained on; `embedding-studio clickstream stats` lists the "
                f"batches, and {_RELEASE_HINT} releases the one collecting",
                field=field,
            ) from error
        if batch.status != "released":
            raise InvalidTaskError(
                f"clickstream batch {batch_id} is still {batch.status!r}: release it first with {_RELEASE_HINT}",
                field=field,
            )

    def released_batches_since(self, model_id: str | None) -> tuple[list[int], int | None]:
        """Every released batch newer than the newest batch ``model_id`` was trained on, oldest first, and that
        newest batch (None when the model was trained on none: a base model, or no model at all)."""
        trained = self._tasks.trained_batch_ids(model_id) if model_id is not None else None
        last = max(trained) if trained else None
        released = sorted(batch.id for batch in self._clickstream.list_batches() if batch.status == "released")
        return [batch for batch in released if last is None or batch > last], last

    def resolve_batch_ids(self, params: FineTuningTaskParams, blue_model_id: str | None) -> list[int]:
        """The batches a fine-tuning task trains on, oldest first, each checked to exist and be released.

        ``since_blue`` is resolved against ``blue_model_id`` (the API checks it when the task is created, the
        worker resolves it again when the task runs, since a batch may have been released in between)."""
        explicit = params.explicit_batch_ids()
        if explicit is not None:
            field = "batch_id" if params.batch_id is not None else "batch_ids"
            for batch_id in explicit:
                self.check_batch_is_released(batch_id, field=field)
            return explicit
        batch_ids, last = self.released_batches_since(blue_model_id)
        if not batch_ids:
            trained = f"batch {last}, the newest the blue model {blue_model_id!r} was trained on" if last else "blue"
            raise InvalidTaskError(
                f"since_blue: no clickstream batch was released after {trained}; release the batch collecting "
                f"now with {_RELEASE_HINT}",
                field="since_blue",
            )
        return batch_ids

    # ---------------------------------------------------------------------------------------------- tasks

    def create_fine_tuning_task(
        self, params: FineTuningTaskParams, idempotency_key: str | None = None
    ) -> tuple[Task, bool]:
        """Check, record and send a fine-tuning task; the same idempotency key gives the first task back."""
        if idempotency_key is not None:
            existing = self._existing(idempotency_key, TaskKind.fine_tuning)
            if existing is not None:
                return existing, False
        self.resolve_batch_ids(params, self._store.get_deployment().blue_model_id)
        check_method_exists(params.method, params.method_options)
        if params.embedding_model_id is not None:
            check_model_exists(params.embedding_model_id)
        task, created = self._tasks.create_task(
            TaskKind.fine_tuning, params.model_dump(mode="json"), idempotency_key=idempotency_key
        )
        if created:
            task = queue.send_task(self._tasks, task)
        return task, created

    def create_reindex_task(
        self,
        params: ReindexTaskParams,
        parent_id: str | None = None,
        idempotency_key: str | None = None,
        check_model: bool = True,
    ) -> Task:
        """Record and send a reindex task, or record it ``refused`` when another one builds the same model.

        ``check_model`` (every request) runs :func:`check_reindex_request` first; a fine-tuning deployment's own
        child task skips it, its model having just been made."""
        if idempotency_key is not None:
            existing = self._existing(idempotency_key, TaskKind.reindex)
            if existing is not None:
                return existing
        if check_model:
            check_reindex_request(params, self._store)
        stored_params = params.model_dump(mode="json")
        conflicts = self._tasks.active_reindex_tasks(params.dest_model_id)
        if conflicts and not params.wait_on_conflict:
            task, _ = self._tasks.create_task(
                TaskKind.reindex,
                stored_params,
                parent_id=parent_id,
                idempotency_key=idempotency_key,
                status=TaskStatus.refused,
                error=(
                    f"reindex task {conflicts[0].id} into model {params.dest_model_id!r} is "
                    f"{conflicts[0].status.value}; send this one with wait_on_conflict=true to run it after that one"
                ),
            )
            return task
        task, created = self._tasks.create_task(
            TaskKind.reindex, stored_params, parent_id=parent_id, idempotency_key=idempotency_key
        )
        return queue.send_task(self._tasks, task) if created else task

    def create_upsert_task(self, params: UpsertTaskParams, idempotency_key: str | None = None) -> Task:
        if not params.upserts and not params.deletes:
            raise InvalidTaskError("nothing to do: give at least one item to upsert or one item id to delete")
        from embedding_studio.tasks.image_index import check_upsert_kinds

        try:
            check_upsert_kinds(params.upserts, self._store)
        except ValueError as error:
            raise InvalidTaskError(str(error), field="upserts") from None
        task, created = self._tasks.create_task(
            TaskKind.upsert, params.model_dump(mode="json"), idempotency_key=idempotency_key
        )
        return queue.send_task(self._tasks, task) if created else task

    def cancel_task(self, task_id: str) -> Task:
        """Cancel a pending task at once (and drop its job); ask a running one to stop at its next check."""
        task = self._tasks.request_cancel(task_id)
        if task.status is TaskStatus.canceled and task.job_id is not None:
            queue.cancel_job(task.job_id, self._tasks.database)
        return task

    def _existing(self, idempotency_key: str, kind: TaskKind) -> Task | None:
        from embedding_studio.tasks.errors import IdempotencyConflictError

        for task in self._tasks.list_tasks_by_idempotency_key(idempotency_key):
            if task.kind is not kind:
                raise IdempotencyConflictError(
                    f"idempotency key {idempotency_key!r} already belongs to {task.kind.value} task {task.id}"
                )
            return task
        return None
