"""The vector store on pgvector: one collection per model, the blue pointer, search, upserts.

``VectorStore(database)`` does it all on the :class:`~embedding_studio.db.Database` it is handed; the module-level
functions below are its methods on the process's default database, for the callers not handed a store yet.
"""

from embedding_studio.vectordb.errors import (
    CollectionNotFoundError,
    CollectionStateError,
    DimensionMismatchError,
    NoBlueModelError,
    RollbackUnavailableError,
    VectorStoreError,
)
from embedding_studio.vectordb.store import (
    MAINTAINED_STATES,
    VectorStore,
    apply_item_changes,
    build_index,
    collection_table_name,
    copy_parts,
    default_vector_store,
    finish_collection,
    get_collection,
    get_deployment,
    get_model_record,
    iter_source_parts,
    list_collections,
    list_models,
    register_model,
    rollback,
    start_collection,
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
    "apply_item_changes",
    "build_index",
    "collection_table_name",
    "copy_parts",
    "default_vector_store",
    "finish_collection",
    "get_collection",
    "get_deployment",
    "get_model_record",
    "iter_source_parts",
    "list_collections",
    "list_models",
    "register_model",
    "rollback",
    "start_collection",
]
