"""Errors of the vector store; each names the model or collection and what state it is in."""

from __future__ import annotations


class VectorStoreError(RuntimeError):
    """Base of every error the vector store raises on purpose."""


class NoBlueModelError(VectorStoreError):
    """Search was asked for while no collection has been deployed as blue yet."""

    def __init__(self) -> None:
        super().__init__(
            "no model is deployed for search yet: index the catalog first "
            "(`embedding-studio reindex all-MiniLM-L6-v2 --deploy-as-blue --follow`, or POST /api/v1/reindex/tasks "
            "with deploy_as_blue=true)"
        )


class CollectionNotFoundError(VectorStoreError):
    def __init__(self, model_id: str) -> None:
        super().__init__(f"model {model_id!r} has no collection in the vector store")
        self.model_id = model_id


class CollectionStateError(VectorStoreError):
    """A collection is asked to do something its state does not allow (deploy one still building...)."""


class EmptyCollectionError(CollectionStateError):
    """A flip would put an empty collection in place of a blue one that serves items."""

    def __init__(self, model_id: str, blue_model_id: str) -> None:
        super().__init__(
            f"model {model_id!r} has no items in its collection while the blue model {blue_model_id!r} serves some: "
            "search is not flipped to an empty collection (did the catalog loader read nothing? check its options)"
        )
        self.model_id = model_id
        self.blue_model_id = blue_model_id


class DimensionMismatchError(VectorStoreError):
    def __init__(self, model_id: str, expected: int, given: int) -> None:
        super().__init__(f"model {model_id!r} has {expected}-dimensional vectors, got {given}-dimensional ones")
        self.model_id = model_id
        self.expected = expected
        self.given = given


class RollbackUnavailableError(VectorStoreError):
    """There is no previous blue model to go back to, or it can no longer serve."""
