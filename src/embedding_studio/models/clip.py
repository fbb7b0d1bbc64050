"""A CLIP-style text-to-image model: text queries, image items, one shared embedding space.

Images are preprocessed here (resize, centre crop, normalise) rather than by `CLIPProcessor`, so the
model needs only its weights, its tokenizer and three numbers on disk, and a caller may pass
already-preprocessed tensors straight from a data loader.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from embedding_studio.models.errors import ModelError, ModelNotFoundError
from embedding_studio.models.text import (
    METADATA_FILE,
    ModelMetadata,
    freeze_all_but_last_layers,
    inference_autocast,
    quiet_transformers,
    write_directory_atomically,
)

TEXT_TO_IMAGE_KIND = "text_to_image"
CLIP_DIR = "clip"
PREPROCESSING_FILE = "image_preprocessing.json"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ImagePreprocessing:
    """How pixels become the tensor the vision tower was trained on."""

    image_size: int
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD

    def __call__(self, images: Sequence[Any] | Tensor) -> Tensor:
        """PIL images, or tensors already shaped (3, size, size) / (n, 3, size, size), to one float batch."""
        if isinstance(images, Tensor):
            batch = images.unsqueeze(0) if images.dim() == 3 else images
            return self._check(batch.float())
        tensors = []
        for position, image in enumerate(images):
            if isinstance(image, Tensor):
                tensors.append(self._check(image.float().unsqueeze(0) if image.dim() == 3 else image.float()))
            elif hasattr(image, "convert"):
                tensors.append(self._from_pil(image))
            else:
                raise TypeError(f"item {position} is a {type(image).__name__}: expected a PIL image or a tensor")
        if not tensors:
            return torch.empty((0, 3, self.image_size, self.image_size))
        return torch.cat(tensors, dim=0)

    @classmethod
    def from_processor_config(cls, path: Path, fallback_size: int) -> ImagePreprocessing:
        """Read Hugging Face's ``preprocessor_config.json`` (``crop_size``, ``image_mean``, ``image_std``) so a
        user's own checkpoint is fed pixels the way it was trained; absent, CLIP's statistics at the vision
        config's size."""
        if not path.is_file():
            return cls(image_size=fallback_size)
        raw = json.loads(path.read_text(encoding="utf-8"))
        size: Any = raw.get("crop_size") or raw.get("size") or fallback_size
        if isinstance(size, dict):
            size = size.get("height") or size.get("shortest_edge") or fallback_size
        return cls(
            image_size=int(size),
            mean=tuple(float(value) for value in raw.get("image_mean", CLIP_MEAN)),  # type: ignore[arg-type]
            std=tuple(float(value) for value in raw.get("image_std", CLIP_STD)),  # type: ignore[arg-type]
        )

    def _check(self, batch: Tensor) -> Tensor:
        expected = (3, self.image_size, self.image_size)
        if batch.dim() != 4 or tuple(batch.shape[1:]) != expected:
            raise ValueError(f"preprocessed images must have shape (n, {expected}), got {tuple(batch.shape)}")
        return batch

    def _from_pil(self, image: Any) -> Tensor:
        from PIL import Image

        rgb = image.convert("RGB")
        width, height = rgb.size
        scale = self.image_size / min(width, height)
        resized = rgb.resize(
            (max(self.image_size, round(width * scale)), max(self.image_size, round(height * scale))),
            Image.Resampling.BICUBIC,
        )
        left = (resized.width - self.image_size) // 2
        top = (resized.height - self.image_size) // 2
        cropped = resized.crop((left, top, left + self.image_size, top + self.image_size))
        pixels = torch.from_numpy(np.asarray(cropped, dtype=np.float32) / 255.0).permute(2, 0, 1)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return ((pixels - mean) / std).unsqueeze(0)


def _features_tensor(output: Any) -> Tensor:
    """transformers 5 returns a model output whose pooler_output is the projected embedding; 4.x a tensor."""
    if isinstance(output, Tensor):
        return output
    return output.pooler_output


class ImageInputCache:
    """Preprocessed images held once for a whole fine-tuning, in the shape the fine-tuner's token caches have
    (``pad(indices)`` and ``lengths``), so the fine-tuner and the retrieval validation batch images the way they
    batch text parts. Every image has length 1: there is no padding to bucket by."""

    def __init__(self, pixel_values: Tensor) -> None:
        self.pixel_values = pixel_values
        self.lengths = torch.ones(pixel_values.shape[0], dtype=torch.long)

    def __len__(self) -> int:
        return int(self.pixel_values.shape[0])

    def pad(self, indices: Sequence[int]) -> dict[str, Tensor]:
        return {"pixel_values": self.pixel_values[torch.as_tensor(list(indices), dtype=torch.long)]}


#: which parameters a fine-tuning trains (``FineTuningParams.trainable_parts``): the whole model (within
#: ``train_last_n_layers``), the text tower and its projection only (image embeddings stay as indexed), or the two
#: projection heads only (the smallest change, for a few hundred clicks)
TRAINABLE_PARTS = ("all", "query_tower", "projections")


class TextToImageEmbeddingModel(nn.Module):
    """Queries through CLIP's text tower, items through its vision tower; never shares weights."""

    def __init__(self, clip_model: nn.Module, tokenizer: Any, preprocessing: ImagePreprocessing | None = None) -> None:
        super().__init__()
        self.clip_model = clip_model
        self.tokenizer = tokenizer
        self.preprocessing = preprocessing or ImagePreprocessing(
            image_size=int(clip_model.config.vision_config.image_size)
        )
        self.eval()

    shares_weights = False

    @property
    def dim(self) -> int:
        return int(self.clip_model.config.projection_dim)

    @property
    def max_seq_length(self) -> int:
        """Query tokens kept; at most the text tower's positions. Settable, so training may truncate harder."""
        limit = int(self.clip_model.config.text_config.max_position_embeddings)
        chosen = getattr(self, "_max_seq_length", None)
        return min(limit, chosen) if chosen else limit

    @max_seq_length.setter
    def max_seq_length(self, value: int | None) -> None:
        self._max_seq_length = value

    @property
    def device(self) -> torch.device:
        return next(self.clip_model.parameters()).device

    def query_parameters(self) -> list[nn.Parameter]:
        """Trainable text-side parameters, including the shared temperature (logit_scale)."""
        modules = [self.clip_model.text_model, self.clip_model.text_projection]
        parameters = [parameter for module in modules for parameter in module.parameters()]
        parameters.append(self.clip_model.logit_scale)
        return [parameter for parameter in parameters if parameter.requires_grad]

    def item_parameters(self) -> list[nn.Parameter]:
        modules = [self.clip_model.vision_model, self.clip_model.visual_projection]
        return [parameter for module in modules for parameter in module.parameters() if parameter.requires_grad]

    def set_trainable_layers(self, n_last_layers: int | None, train_embeddings: bool = False) -> None:
        """Train only the last blocks of both encoders; the projections always train."""
        freeze_all_but_last_layers(self.clip_model.text_model, n_last_layers, train_embeddings)
        freeze_all_but_last_layers(self.clip_model.vision_model, n_last_layers, train_embeddings)
        for module in (self.clip_model.text_projection, self.clip_model.visual_projection):
            for parameter in module.parameters():
                parameter.requires_grad_(True)

    def set_trainable_parts(self, parts: str) -> None:
        """Narrow what trains after ``set_trainable_layers``: ``query_tower`` freezes the vision tower and its
        projection (indexed image vectors stay valid for the old model's geometry only through the text side),
        ``projections`` freezes both encoders and trains the two projection heads."""
        if parts not in TRAINABLE_PARTS:
            raise ValueError(f"trainable_parts must be one of {', '.join(TRAINABLE_PARTS)}, got {parts!r}")
        frozen: list[nn.Module] = []
        if parts == "query_tower":
            frozen = [self.clip_model.vision_model, self.clip_model.visual_projection]
        elif parts == "projections":
            frozen = [self.clip_model.vision_model, self.clip_model.text_model]
        for module in frozen:
            for parameter in module.parameters():
                parameter.requires_grad_(False)

    def item_input_cache(self, images: Sequence[Any]) -> ImageInputCache:
        """Every item image preprocessed once (PIL images, or tensors the item set manager's image preprocessor
        made): the fine-tuner's item cache for a model whose items are not text."""
        return ImageInputCache(self.preprocess_items(list(images)))

    def tokenize_queries(self, texts: Sequence[str]) -> dict[str, Tensor]:
        if isinstance(texts, str):
            raise TypeError("expected a sequence of texts, got a single string")
        encoded = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="pt"
        )
        return {key: encoded[key] for key in ("input_ids", "attention_mask")}

    def preprocess_items(self, images: Sequence[Any] | Tensor) -> Tensor:
        return self.preprocessing(images)

    def forward_queries(self, features: dict[str, Tensor]) -> Tensor:
        """L2-normalised text embeddings with gradients."""
        device = self.device
        output = self.clip_model.get_text_features(
            input_ids=features["input_ids"].to(device), attention_mask=features["attention_mask"].to(device)
        )
        return nn.functional.normalize(_features_tensor(output).float(), dim=-1)

    def forward_items(self, pixel_values: Tensor | Mapping[str, Tensor]) -> Tensor:
        """L2-normalised image embeddings with gradients; takes the pixels or an item cache's ``pad`` dict."""
        if isinstance(pixel_values, Mapping):
            pixel_values = pixel_values["pixel_values"]
        output = self.clip_model.get_image_features(pixel_values=pixel_values.to(self.device))
        return nn.functional.normalize(_features_tensor(output).float(), dim=-1)

    def encode_queries(self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        texts = list(texts)
        return self._encode(
            len(texts), batch_size, lambda part: self.forward_queries(self.tokenize_queries(part)), texts
        )

    def encode_items(
        self, images: Sequence[Any] | Tensor, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        """Float32, L2-normalised embeddings of PIL images or preprocessed tensors, in input order."""
        items: Sequence[Any] | Tensor = images if isinstance(images, Tensor) else list(images)
        return self._encode(len(items), batch_size, lambda part: self.forward_items(self.preprocess_items(part)), items)

    def _encode(self, count: int, batch_size: int, embed: Any, inputs: Any) -> np.ndarray:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        output = np.empty((count, self.dim), dtype=np.float32)
        modes = [(module, module.training) for module in self.clip_model.modules()]
        self.clip_model.eval()
        try:
            with torch.inference_mode(), inference_autocast(self.device):
                for start in range(0, count, batch_size):
                    output[start : start + batch_size] = embed(inputs[start : start + batch_size]).float().cpu().numpy()
        finally:
            for module, training in modes:
                module.training = training
        return output

    def save(self, path: str | os.PathLike[str]) -> None:
        """Weights via `save_pretrained` (safetensors), the tokenizer, and the preprocessing numbers."""
        metadata = ModelMetadata(
            kind=TEXT_TO_IMAGE_KIND,
            shares_weights=False,
            dim=self.dim,
            max_seq_length=self.max_seq_length,
            base_model=None,
        )

        def write(directory: Path) -> None:
            self.clip_model.save_pretrained(directory / CLIP_DIR)
            self.tokenizer.save_pretrained(directory / CLIP_DIR)
            (directory / PREPROCESSING_FILE).write_text(json.dumps(asdict(self.preprocessing)), encoding="utf-8")
            (directory / METADATA_FILE).write_text(metadata.to_json(), encoding="utf-8")

        write_directory_atomically(Path(path), write)

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | torch.device | None = None) -> TextToImageEmbeddingModel:
        directory = Path(path)
        metadata = ModelMetadata.read(directory)
        if metadata.kind != TEXT_TO_IMAGE_KIND:
            raise ModelError(f"{directory} holds a {metadata.kind!r} model, not a text-to-image model")
        if not (directory / CLIP_DIR).is_dir():
            raise ModelNotFoundError(f"{directory} has no {CLIP_DIR}/ directory with the CLIP weights")
        quiet_transformers()
        from transformers import AutoTokenizer, CLIPModel

        clip_model = CLIPModel.from_pretrained(str(directory / CLIP_DIR), local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(directory / CLIP_DIR), local_files_only=True)
        raw = json.loads((directory / PREPROCESSING_FILE).read_text(encoding="utf-8"))
        preprocessing = ImagePreprocessing(
            image_size=int(raw["image_size"]), mean=tuple(raw["mean"]), std=tuple(raw["std"])
        )
        model = cls(clip_model, tokenizer, preprocessing)
        return model.to(torch.device(device) if device is not None else torch.device("cpu"))

    @classmethod
    def from_hugging_face_directory(
        cls, path: str | os.PathLike[str], device: str | torch.device | None = None
    ) -> TextToImageEmbeddingModel:
        """A CLIP checkpoint in Hugging Face's layout (``config.json``, ``model.safetensors`` or
        ``pytorch_model.bin``, the tokenizer files, optionally ``preprocessor_config.json``) from a local
        directory: the user's own model, read with ``local_files_only`` so nothing is ever downloaded."""
        directory = Path(path)
        if not is_hugging_face_clip_directory(directory):
            raise ModelNotFoundError(f"{directory} has no config.json of a CLIP model (model_type 'clip')")
        quiet_transformers()
        from transformers import AutoTokenizer, CLIPModel

        try:
            clip_model = CLIPModel.from_pretrained(str(directory), local_files_only=True)
        except OSError as error:
            raise ModelNotFoundError(f"{directory}: the CLIP weights could not be read ({error})") from error
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        except (OSError, ValueError) as error:
            raise ModelError(f"{directory}: the CLIP tokenizer files could not be read ({error})") from error
        preprocessing = ImagePreprocessing.from_processor_config(
            directory / HF_PROCESSOR_FILE, int(clip_model.config.vision_config.image_size)
        )
        model = cls(clip_model, tokenizer, preprocessing)
        return model.to(torch.device(device) if device is not None else torch.device("cpu"))

    def save_hugging_face_layout(self, path: str | os.PathLike[str]) -> None:
        """Write the model as Hugging Face lays out a CLIP checkpoint (safetensors weights, tokenizer, processor
        config): what a user's own fine-tuned CLIP directory looks like, for tests and for taking a model out."""
        quiet_transformers()
        from transformers import CLIPImageProcessor

        directory = Path(path)
        self.clip_model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        size = self.preprocessing.image_size
        CLIPImageProcessor(
            size={"shortest_edge": size},
            crop_size={"height": size, "width": size},
            image_mean=list(self.preprocessing.mean),
            image_std=list(self.preprocessing.std),
        ).save_pretrained(directory)


HF_CONFIG_FILE = "config.json"
HF_PROCESSOR_FILE = "preprocessor_config.json"


def is_hugging_face_clip_directory(directory: Path) -> bool:
    """Whether ``directory`` holds a CLIP checkpoint in Hugging Face's layout (its config names model_type clip)."""
    config = directory / HF_CONFIG_FILE
    if not config.is_file():
        return False
    try:
        raw = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(raw, dict) and raw.get("model_type") == "clip"


def build_tiny_clip_model(
    seed: int = 0, dim: int = 16, image_size: int = 32, vocab: Sequence[str] | None = None
) -> TextToImageEmbeddingModel:
    """A 2-layer text and 2-layer vision CLIP built from a config in code; the same seed, the same weights.

    ``vocab`` adds whole words to the tokenizer (a toy set's colours and shapes), as ``build_tiny_text_model``'s does.
    """
    quiet_transformers()
    from transformers import CLIPConfig, CLIPModel

    from embedding_studio.models.tiny import build_vocabulary, build_wordpiece_tokenizer

    vocabulary = build_vocabulary(vocab)
    max_length = 32
    tokenizer = build_wordpiece_tokenizer(vocabulary, model_max_length=max_length)
    sep_id = vocabulary.index("[SEP]")
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocabulary),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": max_length,
            "pad_token_id": 0,
            "bos_token_id": vocabulary.index("[CLS]"),
            "eos_token_id": sep_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": 8,
        },
        projection_dim=dim,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clip_model = CLIPModel(config)
    return TextToImageEmbeddingModel(clip_model, tokenizer, ImagePreprocessing(image_size=image_size))


def is_image_model(model: Any) -> bool:
    """A model whose items are images builds its own item inputs (``TextToImageEmbeddingModel``)."""
    return callable(getattr(model, "item_input_cache", None))
