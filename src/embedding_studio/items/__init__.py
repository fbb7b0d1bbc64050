"""Items: where they live (loaders), the text parts a model embeds (``item_parts``), and how they become
training input (``ItemSetManager``)."""

from embedding_studio.items.augmentation import AugmentationConfig, Augmenter, ChangeCase, Misspell
from embedding_studio.items.item_text import ItemText, ItemTextError, item_parts, item_text
from embedding_studio.items.loader import (
    DataLoader,
    ItemMissingError,
    ItemUnreadableError,
    LoaderError,
    LoadResult,
    RetryPolicy,
    TransientLoadError,
)
from embedding_studio.items.manager import (
    ClickstreamPreparationReport,
    ItemSetManager,
    PreparedClickstream,
    PreparedItemSet,
    SimpleTrainingDataset,
    TrainingDataset,
    items_set_manager,
    items_to_load,
)
from embedding_studio.items.registry import LoaderConfig, UnknownLoaderError, create_configured_loader, create_loader
from embedding_studio.items.types import DownloadedItem, FailedItem, ItemMeta


def __getattr__(name: str) -> object:
    """The preprocessors need torch; import it only when one is asked for (loaders and the API do without)."""
    if name in ("ImagePreprocessor", "TextPreprocessor"):
        from embedding_studio.items import preprocessors

        return getattr(preprocessors, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AugmentationConfig",
    "Augmenter",
    "ChangeCase",
    "ClickstreamPreparationReport",
    "DataLoader",
    "DownloadedItem",
    "FailedItem",
    "ImagePreprocessor",
    "ItemMeta",
    "ItemMissingError",
    "ItemSetManager",
    "ItemText",
    "ItemTextError",
    "ItemUnreadableError",
    "LoadResult",
    "LoaderConfig",
    "LoaderError",
    "Misspell",
    "PreparedClickstream",
    "PreparedItemSet",
    "RetryPolicy",
    "SimpleTrainingDataset",
    "TextPreprocessor",
    "TrainingDataset",
    "TransientLoadError",
    "UnknownLoaderError",
    "create_configured_loader",
    "create_loader",
    "item_parts",
    "item_text",
    "items_set_manager",
    "items_to_load",
]
