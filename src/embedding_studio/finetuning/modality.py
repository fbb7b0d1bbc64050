"""What the fine-tuner feeds a model for its items, whatever the items are (text parts or images).

The fine-tuner was written for text: each item is a list of part texts, tokenized once into a token cache with
``pad(indices)`` and ``lengths``. An image item is one input, preprocessed once into a cache of the same shape,
so training, the retrieval validation and the deployment gate run unchanged for a text-to-image model. The model
chooses: one with ``item_input_cache(inputs)`` (``TextToImageEmbeddingModel``) builds its own; any other has its
item parts tokenized by ``tokenize_items``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from embedding_studio.finetuning.errors import FineTuningError


def item_inputs(items: Mapping[str, Sequence[Any]] | Any) -> Mapping[str, Sequence[Any]]:
    """Item id → the inputs the item tower embeds: a prepared item set's text ``parts``, and each of its
    ``images`` as one input (the image preprocessor's tensor when the item set manager ran one, else the image);
    a plain mapping is taken as it is."""
    parts = getattr(items, "parts", items)
    images = getattr(items, "images", None)
    if not images:
        return parts
    features = getattr(items, "features", {}) or {}
    combined: dict[str, Sequence[Any]] = dict(parts)
    for item_id, image in images.items():
        combined[item_id] = [features.get(item_id, image)]
    return combined


def item_input_cache(model: Any, inputs: Sequence[Any]) -> Any:
    """The cache of every item input, built once per fine-tuning: the model's own for images, else tokens."""
    build = getattr(model, "item_input_cache", None)
    if build is not None:
        return build(inputs)
    from embedding_studio.finetuning.data import TokenCache

    return TokenCache(model.tokenize_items, list(inputs))


def restrict_trainable_parts(model: Any, parts: str) -> None:
    """Apply ``FineTuningParams.trainable_parts``; only a model that has such parts (text-to-image) accepts a
    value other than ``all``, so a text method asking for projection heads fails with its reason, not silently."""
    if parts == "all":
        return
    restrict = getattr(model, "set_trainable_parts", None)
    if restrict is None:
        raise FineTuningError(
            f"trainable_parts={parts!r} needs a text-to-image model (text tower, projection heads); "
            f"{type(model).__name__} has none: use 'all' and train_last_n_layers"
        )
    restrict(parts)
