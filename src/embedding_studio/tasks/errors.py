"""Errors of the task layer: each says which task or model and why."""

from __future__ import annotations


class TaskError(RuntimeError):
    """Base of every error the tasks package raises on purpose."""


class UnknownTaskError(TaskError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id!r} does not exist")
        self.task_id = task_id


class TaskStateError(TaskError):
    """The task is in a state that does not allow what was asked (cancel a finished task...)."""


class ModelStateError(TaskStateError):
    """The model asked for is in a state that does not allow the task (a reindex into the blue model, whose
    collection search reads and which is never rebuilt in place); answered 409 like any state conflict."""


class IdempotencyConflictError(TaskError):
    """The idempotency key is already used by a task of another kind."""


class TaskCanceledError(TaskError):
    """Raised inside a worker when the task's cancel flag is seen; the task ends ``canceled``.

    The one type ``workers.run_task`` recognises as a cancellation: code below ``tasks`` that stops on a
    cancel (``finetuning.FineTuningCanceled``) is turned into it where a worker calls that code."""


class AmbiguousIdError(TaskError):
    """An id prefix matches several tasks or models; the message lists them so the user can type more."""

    def __init__(self, what: str, prefix: str, candidates: list[str]) -> None:
        shown = "; ".join(candidates[:10]) + ("; …" if len(candidates) > 10 else "")
        super().__init__(f"{prefix!r} starts the id of {len(candidates)} {what}s: {shown}. Type more of the id")
        self.prefix = prefix
        self.candidates = candidates
