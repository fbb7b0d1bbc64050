"""The vector store on pgvector: one collection per model, the blue pointer, search, upserts.

``VectorStore(database)`` does it all on the :class:`~embedding_studio.db.Database` it is handed; each caller is
handed its store (there are no module-level shortcuts on a default database).
"""

from embedding_studio.vectordb.errors import (
    CollectionNotFoundError,
    CollectionStateError,
    DimensionMismatchError,
    EmptyCollectionError,
    NoBlueModelError,
    RollbackUnavailableError,
    VectorStoreError,
)
from embedding_studio.vectordb.store import (
    MAINTAINED_STATES,
    VectorStore,
    collection_table_name,
)
from embedding_studio.vectordb.types import (
    BlueCollection,
    Collection,
    Deployment,
    EmbeddingModelRecord,
    ItemChange,
    ItemPart,
    SearchHit,
    SourcePart,
    UpsertedItem,
)

__all__ = [
    "MAINTAINED_STATES",
    "BlueCollection",
    "Collection",
    "CollectionNotFoundError",
    "CollectionStateError",
    "EmptyCollectionError",
    "Deployment",
    "DimensionMismatchError",
    "EmbeddingModelRecord",
    "ItemChange",
    "ItemPart",
    "NoBlueModelError",
    "RollbackUnavailableError",
    "SearchHit",
    "SourcePart",
    "UpsertedItem",
    "VectorStore",
    "VectorStoreError",
    "collection_table_name",
]
