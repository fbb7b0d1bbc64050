"""Serving: what answers a search with the blue model, apart from the task queue.

``models``: the per-process model cache (``resolve_model``), shared by search, the workers and the reports;
``search``: search on the blue model, each search recorded as a clickstream session (the API and the CLI's
in-process answer). It sits below ``tasks`` (which loads models for reindex and upserts through it) and above
``vectordb``/``models``/``clickstream``, which it reads.
"""

from embedding_studio.serving.errors import BlueModelUnavailableError, ServingError, UnknownModelError
from embedding_studio.serving.models import check_model_exists, forget_models, model_cache_stats, resolve_model

__all__ = [
    "BlueModelUnavailableError",
    "ServingError",
    "UnknownModelError",
    "check_model_exists",
    "forget_models",
    "model_cache_stats",
    "resolve_model",
]
