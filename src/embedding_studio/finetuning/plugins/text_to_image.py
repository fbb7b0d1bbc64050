"""The text-to-image method: an image catalog searched by text, a CLIP-style model fine-tuned on clicks.

Items are images read by an image loader (``local_image``, ``s3_image``, ``gcs_image``), queries are the search
texts, and a clicked image is a positive of its query. Everything after the items is the text method's: the
same clickstream split, retrieval validation on held-out queries over a candidate pool of images, tracker, parameter
search, WiSE-FT share, refit on every session and deployment gate (see ``default_text``), because the fine-tuner
reads items through ``finetuning.modality`` and the model preprocesses and embeds images itself.

The image preprocessor (resize the shorter side, centre-crop, normalise) is the ``ItemSetManager``'s, with the
size and pixel statistics of the base model, read from its directory (Hugging Face's ``preprocessor_config.json``
or Embedding Studio's ``image_preprocessing.json``); when the start model is not a directory (an MLflow run id)
the model preprocesses the images itself, the same way.

What trains is ``trainable_parts`` (a ``FineTuningParams`` field, so it may be searched): ``all`` (both towers,
within ``train_last_n_layers``), ``query_tower`` (the text tower and its projection: the image side is unchanged),
or ``projections`` (the two projection heads only: the smallest change, for a few hundred clicks).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from optuna.distributions import FloatDistribution

from embedding_studio.config import Settings, get_settings
from embedding_studio.finetuning.errors import FineTuningError
from embedding_studio.finetuning.method import FineTuningMethod, LoaderConfig
from embedding_studio.items.item_text import ItemText
from embedding_studio.items.registry import IMAGE_LOADERS

NAME = "text_to_image"
TRAINABLE_PARTS = ("all", "query_tower", "projections")

#: shared by every trial unless the search space draws it; the text recipe with CLIP's smaller learning rates
RECIPE: dict[str, Any] = {
    "loss": "info_nce",
    "temperature": 0.05,
    "query_lr": 1e-5,
    "item_lr": 1e-5,
    "negatives_per_query": 0,
    "use_ips": False,
    "choose_weight_share": True,
    "refit_on_all_sessions": True,
    "trainable_parts": "all",
}
RECIPE_BATCH_SIZE = 32
RECIPE_EPOCHS = 1
#: images are held preprocessed in memory for a fine-tuning (600 kB each at 224 pixels): a smaller pool than text's
VALIDATION_POOL_SIZE = 500


def default_search_space() -> dict[str, Any]:
    return {
        "query_lr": FloatDistribution(2e-6, 1e-4, log=True),
        "temperature": [0.02, 0.05, 0.1],
    }


def image_preprocessor_for(base_model: str) -> Any | None:
    """The ``ItemSetManager`` image preprocessor with the base model's size and pixel statistics, or None when the
    base model is no directory to read them from (the model then preprocesses images itself)."""
    from embedding_studio.items.preprocessors import ImagePreprocessor
    from embedding_studio.models.clip import HF_PROCESSOR_FILE, PREPROCESSING_FILE, ImagePreprocessing

    directory = Path(base_model).expanduser()
    if (directory / PREPROCESSING_FILE).is_file():
        raw = json.loads((directory / PREPROCESSING_FILE).read_text(encoding="utf-8"))
        preprocessing = ImagePreprocessing(int(raw["image_size"]), tuple(raw["mean"]), tuple(raw["std"]))
    elif (directory / HF_PROCESSOR_FILE).is_file():
        config = (
            json.loads((directory / "config.json").read_text(encoding="utf-8"))
            if (directory / "config.json").is_file()
            else {}
        )
        fallback = int((config.get("vision_config") or {}).get("image_size", 224))
        preprocessing = ImagePreprocessing.from_processor_config(directory / HF_PROCESSOR_FILE, fallback)
    else:
        return None
    return ImagePreprocessor(size=preprocessing.image_size, mean=preprocessing.mean, std=preprocessing.std)


def _item_set_manager_factory(base_model: str) -> Any:
    def factory(item_text: ItemText) -> Any:
        from embedding_studio.items import ItemSetManager

        preprocessor = image_preprocessor_for(base_model)
        return ItemSetManager(item_text=item_text, preprocessors={"image": preprocessor} if preprocessor else None)

    return factory


def create_plugin(
    settings: Settings | None = None,
    *,
    trainable_parts: str | Sequence[str] | None = None,
    **overrides: Any,
) -> FineTuningMethod:
    """The text-to-image method; ``overrides`` replace any FineTuningMethod field.

    ``base_model`` names a local CLIP directory (Hugging Face's layout, or one Embedding Studio saved); it is
    required unless the settings' base model is one. ``loader`` is an image loader with its options; by default the
    settings' catalog loader, which must then be an image loader. ``trainable_parts`` is one of ``all``,
    ``query_tower``, ``projections``, or a list of them for the parameter search to choose from.
    """
    settings = settings or get_settings()
    base_model = overrides.pop("base_model", None) or settings.base_model
    if not _looks_like_clip(base_model):
        raise FineTuningError(
            f"method {NAME!r} needs base_model: a local directory of a CLIP checkpoint (Hugging Face's layout or one "
            f"Embedding Studio saved); {base_model!r} is not one"
        )
    loader = overrides.pop("loader", None) or LoaderConfig(
        name=settings.catalog_loader, options=dict(settings.catalog_loader_options)
    )
    if isinstance(loader, dict):
        loader = LoaderConfig.model_validate(loader)
    if isinstance(loader, LoaderConfig) and loader.name not in IMAGE_LOADERS:
        raise FineTuningError(
            f"method {NAME!r} reads images: loader must be one of {', '.join(IMAGE_LOADERS)}, got {loader.name!r}"
        )
    fixed_params = {**RECIPE, **dict(overrides.pop("fixed_params", None) or {})}
    search_space = dict(overrides.pop("search_space", None) or default_search_space())
    if trainable_parts is not None:
        choices = [trainable_parts] if isinstance(trainable_parts, str) else list(trainable_parts)
        unknown = [choice for choice in choices if choice not in TRAINABLE_PARTS]
        if unknown or not choices:
            raise FineTuningError(
                f"method {NAME!r}: trainable_parts must be one of {', '.join(TRAINABLE_PARTS)} or a list of them, "
                f"got {trainable_parts!r}"
            )
        if len(choices) == 1:
            fixed_params["trainable_parts"] = choices[0]
            search_space.pop("trainable_parts", None)
        else:
            search_space["trainable_parts"] = choices
    fields: dict[str, Any] = {
        "name": NAME,
        "loader": loader,
        "base_model": base_model,
        "item_set_manager_factory": _item_set_manager_factory(base_model),
        "loss": fixed_params["loss"],
        "search_space": search_space,
        "fixed_params": fixed_params,
        "num_epochs": RECIPE_EPOCHS,
        "batch_size": RECIPE_BATCH_SIZE,
        "max_evals": 8,
        "test_each_n_inputs": 1.0,
        "validation_pool_size": VALIDATION_POOL_SIZE,
        "main_metric": "val_ndcg_at_10",
        "higher_is_better": True,
    }
    fields.update(overrides)
    return FineTuningMethod(**fields)


def _looks_like_clip(base_model: str | None) -> bool:
    """A directory holding a CLIP in either layout; checked when the method is built, so a task naming the method
    without a usable base model is refused when it is created, not when a worker picks it up."""
    if not base_model:
        return False
    from embedding_studio.models.clip import is_hugging_face_clip_directory
    from embedding_studio.models.text import METADATA_FILE, ModelMetadata

    directory = Path(base_model).expanduser()
    if (directory / METADATA_FILE).is_file():
        try:
            return ModelMetadata.read(directory).kind == "text_to_image"
        except Exception:  # noqa: BLE001 - an unreadable directory is simply not a CLIP
            return False
    return is_hugging_face_clip_directory(directory)
