"""Task parameters, defined in ``embedding_studio.schemas.params`` (the client sends them, so they install without
the server) and re-exported here, where the task code looks."""

from embedding_studio.schemas.params import (
    MAX_BATCHES_PER_TASK,
    FineTuningTaskParams,
    ItemDisplayOptions,
    ItemTextOptions,
    LoaderSpec,
    ModelId,
    ReindexTaskParams,
    UpsertItem,
    UpsertTaskParams,
)

__all__ = [
    "MAX_BATCHES_PER_TASK",
    "FineTuningTaskParams",
    "ItemDisplayOptions",
    "ItemTextOptions",
    "LoaderSpec",
    "ModelId",
    "ReindexTaskParams",
    "UpsertItem",
    "UpsertTaskParams",
]
