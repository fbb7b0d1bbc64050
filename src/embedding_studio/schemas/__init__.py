"""What travels over the HTTP API: request bodies, answers, task kinds and statuses, as pydantic models.

One definition shared by the server (``api``, ``tasks``, ``clickstream`` import from here) and the Python client
(``embedding_studio.client``). Everything in this package needs pydantic and the standard library only, and imports
no other part of ``embedding_studio`` (import-linter checks it), so ``pip install embedding-studio`` gives the client
and these models without the server, training or cloud-storage dependencies.

* ``records``: a clickstream session and its events as sent (``SessionRecord``, ``EventRecord``);
* ``clickstream``: the clickstream endpoints' bodies and answers;
* ``params``: task parameters (``FineTuningTaskParams``, ``ReindexTaskParams``, ``LoaderSpec``, ``UpsertItem``, ...);
* ``tasks``: ``TaskKind``, ``TaskStatus`` and the task, model and search endpoints' bodies and answers;
* ``item_text``, ``display``, ``loader_paths``: the pure rules those models validate with.
"""

from embedding_studio.schemas.clickstream import (
    BatchOut,
    BulkOut,
    EventsOut,
    IrrelevantOut,
    ReleaseOut,
    SessionCreatedOut,
    SessionOut,
)
from embedding_studio.schemas.params import (
    FineTuningTaskParams,
    ItemDisplayOptions,
    ItemTextOptions,
    LoaderSpec,
    ReindexTaskParams,
    UpsertItem,
)
from embedding_studio.schemas.records import EventRecord, SessionRecord
from embedding_studio.schemas.tasks import (
    ModelListOut,
    ModelOut,
    SearchOut,
    SearchResultOut,
    TaskCreatedOut,
    TaskKind,
    TaskListOut,
    TaskOut,
    TaskStatus,
)

__all__ = [
    "BatchOut",
    "BulkOut",
    "EventRecord",
    "EventsOut",
    "FineTuningTaskParams",
    "IrrelevantOut",
    "ItemDisplayOptions",
    "ItemTextOptions",
    "LoaderSpec",
    "ModelListOut",
    "ModelOut",
    "ReindexTaskParams",
    "ReleaseOut",
    "SearchOut",
    "SearchResultOut",
    "SessionCreatedOut",
    "SessionOut",
    "SessionRecord",
    "TaskCreatedOut",
    "TaskKind",
    "TaskListOut",
    "TaskOut",
    "TaskStatus",
    "UpsertItem",
]
