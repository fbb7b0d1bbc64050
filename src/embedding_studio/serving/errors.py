"""Errors of the serving layer: a model id that names no model, a blue model that cannot be loaded.

Not a ``TaskError``: ``serving`` sits below ``tasks`` (search and the model cache need no task), so callers that
answered every ``TaskError`` as a user's mistake catch :class:`ServingError` beside it.
"""

from __future__ import annotations


class ServingError(RuntimeError):
    """Base of every error the serving package raises on purpose."""


class UnknownModelError(ServingError):
    """A model id that names no base model, local model directory or MLflow run with a model."""

    def __init__(self, model_id: str, detail: str = "") -> None:
        message = (
            f"model {model_id!r} does not exist: give a base model name (all-MiniLM-L6-v2), a local model "
            "directory or an MLflow run id of a fine-tuning run"
        )
        super().__init__(message + (f" ({detail})" if detail else ""))
        self.model_id = model_id


class BlueModelUnavailableError(UnknownModelError):
    """The blue model's id names no model this process can load, so search cannot answer.

    An :class:`UnknownModelError` with the same sentence (the CLI prints it as it is), of its own type because
    here it is the server's state, not the caller's mistake: the API answers 503, not 422.
    """

    def __init__(self, cause: UnknownModelError) -> None:
        RuntimeError.__init__(self, str(cause))
        self.model_id = cause.model_id
