"""The text embedding model: a query tower and an item tower over sentence-transformers.

Both towers are `SentenceTransformer` instances, so a model on disk is sentence-transformers' own format
(safetensors weights, `modules.json`) and can be opened by any tool that reads that format. When the
towers share weights there is only one module; training then updates one encoder used for both sides.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from torch import Tensor, nn

from embedding_studio.models.errors import ModelError, ModelNotFoundError
from embedding_studio.models.tokenization import batch_tokenizer

if TYPE_CHECKING:
    from embedding_studio.models.frozen_prefix import FrozenPrefixCache

METADATA_FILE = "embedding_studio.json"
FORMAT_VERSION = 1
QUERY_TOWER_DIR = "query"
ITEM_TOWER_DIR = "item"
TEXT_MODEL_KIND = "text"


def tokenize_ahead(device: torch.device) -> bool:
    """Whether encoding tokenizes the next batch in a thread while this one computes: on a GPU, where tokenizing
    on the CPU, not the forward pass, bounds the encode rate. On a CPU it would only split the same cores."""
    return device.type == "cuda"


def quiet_transformers() -> None:
    """Keep per-shard progress bars of transformers out of worker logs and test output."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()


def inference_autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA (faster, half the activation memory); plain float32 elsewhere."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass(frozen=True)
class ModelMetadata:
    """What `embedding_studio.json` records next to the towers, so a load needs no guessing."""

    kind: str
    shares_weights: bool
    dim: int
    max_seq_length: int | None
    base_model: str | None
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=True)

    @classmethod
    def read(cls, directory: Path) -> ModelMetadata:
        metadata_path = directory / METADATA_FILE
        try:
            raw = json.loads(metadata_path.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise ModelNotFoundError(
                f"{directory} has no {METADATA_FILE}: it was not saved by Embedding Studio"
            ) from error
        except json.JSONDecodeError as error:
            raise ModelError(f"{metadata_path} is not valid JSON: {error}") from error
        known = {field: raw[field] for field in cls.__dataclass_fields__ if field in raw}
        missing = {"kind", "shares_weights", "dim"} - set(known)
        if missing:
            raise ModelError(f"{metadata_path} lacks the field(s) {sorted(missing)}")
        if int(known.get("format_version", FORMAT_VERSION)) > FORMAT_VERSION:
            raise ModelError(
                f"{metadata_path} has format_version {known['format_version']}, newer than this version reads "
                f"({FORMAT_VERSION}); upgrade embedding-studio"
            )
        return cls(**known)


def write_directory_atomically(path: Path, write: Any) -> None:
    """Write a model directory next to its destination and swap it in, so a crash never leaves half a model."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.parent / f".{path.name}.saving-{uuid.uuid4().hex}"
    backup = path.parent / f".{path.name}.replaced-{uuid.uuid4().hex}"
    try:
        staging.mkdir()
        write(staging)
        if path.exists():
            path.rename(backup)
        staging.rename(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(backup, ignore_errors=True)


def encoder_layers(transformer_model: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks (BERT's `encoder.layer`, most others' `layers`)."""
    for candidate in ("encoder.layer", "encoder.layers", "layers", "transformer.layer", "layer"):
        module: Any = transformer_model
        try:
            for part in candidate.split("."):
                module = getattr(module, part)
        except AttributeError:
            continue
        if isinstance(module, nn.ModuleList):
            return module
    raise ModelError(f"cannot find the transformer layers of {type(transformer_model).__name__}")


def embedding_modules(transformer_model: nn.Module) -> list[nn.Module]:
    embeddings = getattr(transformer_model, "embeddings", None)
    if embeddings is not None:
        return [embeddings]
    return [transformer_model.get_input_embeddings()]


def freeze_all_but_last_layers(transformer_model: nn.Module, n_last_layers: int | None, train_embeddings: bool) -> None:
    """Apply the layer-freezing policy to one transformers encoder (shared by the text and CLIP wrappers)."""
    if n_last_layers is None:
        for parameter in transformer_model.parameters():
            parameter.requires_grad_(True)
        return
    layers = encoder_layers(transformer_model)
    if n_last_layers < 0 or n_last_layers > len(layers):
        raise ValueError(
            f"n_last_layers={n_last_layers} is outside 0..{len(layers)} (the model has {len(layers)} layers)"
        )
    for parameter in transformer_model.parameters():
        parameter.requires_grad_(False)
    for layer in list(layers)[len(layers) - n_last_layers :]:
        for parameter in layer.parameters():
            parameter.requires_grad_(True)
    if train_embeddings:
        for module in embedding_modules(transformer_model):
            for parameter in module.parameters():
                parameter.requires_grad_(True)


class TextEmbeddingModel(nn.Module):
    """A two-tower text encoder: queries and items may be encoded by different weights.

    Being an `nn.Module`, it can sit inside a LightningModule and move with it; `parameters()` covers
    both towers once each.
    """

    def __init__(
        self,
        query_tower: SentenceTransformer,
        item_tower: SentenceTransformer | None = None,
        base_model: str | None = None,
    ) -> None:
        super().__init__()
        self.query_tower = query_tower
        if item_tower is not None and item_tower is not query_tower:
            query_dim = query_tower.get_embedding_dimension()
            item_dim = item_tower.get_embedding_dimension()
            if query_dim != item_dim:
                raise ModelError(f"query tower has dimension {query_dim} but item tower has {item_dim}")
            self.item_tower: SentenceTransformer | None = item_tower
        else:
            self.item_tower = None
        self.base_model = base_model
        #: set only inside :meth:`reusing_frozen_prefix`
        self._frozen_prefix_cache: FrozenPrefixCache | None = None
        # Loaded weights start in inference mode (no dropout); training code calls .train() explicitly.
        self.eval()

    # ----- structure -------------------------------------------------------------------------------
    @property
    def shares_weights(self) -> bool:
        return self.item_tower is None

    @property
    def _items(self) -> SentenceTransformer:
        return self.query_tower if self.item_tower is None else self.item_tower

    @property
    def dim(self) -> int:
        dimension = self.query_tower.get_embedding_dimension()
        if dimension is None:
            raise ModelError("the query tower does not declare its embedding dimension")
        return int(dimension)

    @property
    def max_seq_length(self) -> int | None:
        return self.query_tower.max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        self.query_tower.max_seq_length = value
        if self.item_tower is not None:
            self.item_tower.max_seq_length = value

    @property
    def device(self) -> torch.device:
        return next(self.query_tower.parameters()).device

    def with_separate_towers(self) -> TextEmbeddingModel:
        """A copy whose item tower starts as a copy of the query tower, so the two can diverge in training."""
        query_tower = copy.deepcopy(self.query_tower)
        item_tower = copy.deepcopy(self._items)
        return TextEmbeddingModel(query_tower, item_tower, base_model=self.base_model)

    def query_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters of the query tower; with shared weights, every trainable parameter."""
        return [parameter for parameter in self.query_tower.parameters() if parameter.requires_grad]

    def item_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters of the item tower; empty with shared weights, as they are in `query_parameters`.

        Keeping the shared case empty means an optimizer built from the two groups never sees one
        parameter twice.
        """
        if self.item_tower is None:
            return []
        return [parameter for parameter in self.item_tower.parameters() if parameter.requires_grad]

    def set_trainable_layers(self, n_last_layers: int | None, train_embeddings: bool = False) -> None:
        """Train only the last `n_last_layers` transformer blocks of each tower (None: train everything).

        Freezing the lower blocks keeps the general language knowledge of the base model while the top
        adapts to the clickstream, and makes a small batch of clicks less likely to overfit. Modules
        after the transformer (pooling, dense projections) always stay trainable.
        """
        for tower in (self.query_tower, self.item_tower):
            if tower is None:
                continue
            for index, module in enumerate(tower):
                auto_model = getattr(module, "auto_model", None)
                if index == 0 and isinstance(auto_model, nn.Module):
                    freeze_all_but_last_layers(auto_model, n_last_layers, train_embeddings)
                else:
                    for parameter in module.parameters():
                        parameter.requires_grad_(True)

    # ----- training path ----------------------------------------------------------------------------
    def tokenize_queries(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Token tensors (on the CPU, so a data loader worker may build them) truncated to max_seq_length."""
        return self._tokenize(self.query_tower, texts)

    def tokenize_items(self, texts: Sequence[str]) -> dict[str, Tensor]:
        return self._tokenize(self._items, texts)

    @staticmethod
    def _tokenize(tower: SentenceTransformer, texts: Sequence[str]) -> dict[str, Tensor]:
        if isinstance(texts, str):
            raise TypeError("expected a sequence of texts, got a single string")
        return batch_tokenizer(tower)(texts)

    def forward_queries(self, features: dict[str, Tensor]) -> Tensor:
        """L2-normalised query embeddings with gradients, the same space `encode_queries` returns."""
        return self._forward(self.query_tower, features)

    def forward_items(self, features: dict[str, Tensor]) -> Tensor:
        return self._forward(self._items, features)

    def _forward(self, tower: SentenceTransformer, features: dict[str, Tensor]) -> Tensor:
        device = next(tower.parameters()).device
        moved = {key: value.to(device) if isinstance(value, Tensor) else value for key, value in features.items()}
        cache = self._frozen_prefix_cache
        embeddings = cache.encode(tower, moved) if cache is not None else tower(moved)["sentence_embedding"]
        return nn.functional.normalize(embeddings.float(), p=2, dim=-1)

    @contextlib.contextmanager
    def reusing_frozen_prefix(self, cache: FrozenPrefixCache) -> Iterator[None]:
        """Within: `forward_queries` and `forward_items` run the frozen lower blocks (``set_trainable_layers``) only
        for token batches ``cache`` has not seen with these frozen weights, and reuse their states otherwise.

        For a validation, which encodes the same pool every time while only the top blocks change; the
        embeddings are the same as without it (:mod:`embedding_studio.models.frozen_prefix`)."""
        towers = [self.query_tower] if self.item_tower is None else [self.query_tower, self.item_tower]
        with cache.checked(towers):
            self._frozen_prefix_cache = cache
            try:
                yield
            finally:
                self._frozen_prefix_cache = None

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        return self.forward_queries(features)

    # ----- inference path ---------------------------------------------------------------------------
    def encode_queries(self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        """Float32, L2-normalised embeddings of the queries, one row per text, in input order."""
        return self._encode(self.query_tower, texts, batch_size, show_progress, "queries")

    def encode_items(self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        return self._encode(self._items, texts, batch_size, show_progress, "items")

    def _encode(
        self, tower: SentenceTransformer, texts: Sequence[str], batch_size: int, show_progress: bool, what: str
    ) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("expected a sequence of texts, got a single string")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        texts = list(texts)
        output = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return output
        # Longest first, so each batch pads to similar lengths and the first batch shows the peak memory.
        order = sorted(range(len(texts)), key=lambda index: -len(texts[index]))
        batches = [order[start : start + batch_size] for start in range(0, len(texts), batch_size)]
        device = self.device
        tokenize = batch_tokenizer(tower)
        # A tower being trained is switched to eval for the encode and back after; one already in eval (every
        # served model) is left alone: walking its ~100 modules twice cost ~4 ms per single-query search on CPU.
        modes = [(module, module.training) for module in tower.modules()] if tower.training else []
        if modes:
            tower.eval()
        prefetch = ThreadPoolExecutor(max_workers=1) if tokenize_ahead(device) and len(batches) > 1 else None
        try:

            def tokenized(number: int) -> Future[dict[str, Tensor]] | dict[str, Tensor]:
                batch_texts = [texts[index] for index in batches[number]]
                return prefetch.submit(tokenize, batch_texts) if prefetch is not None else tokenize(batch_texts)

            with torch.inference_mode(), inference_autocast(device):
                pending = tokenized(0)
                for number in _progress(range(len(batches)), show_progress, what):
                    features = pending.result() if isinstance(pending, Future) else pending
                    if number + 1 < len(batches):
                        pending = tokenized(number + 1)
                    embeddings = self._forward(tower, features)
                    output[batches[number]] = embeddings.float().cpu().numpy()
        finally:
            if prefetch is not None:
                prefetch.shutdown(wait=True, cancel_futures=True)
            for module, training in modes:
                module.training = training
        return output

    # ----- persistence ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Save both towers in sentence-transformers' format (safetensors) plus `embedding_studio.json`."""
        metadata = ModelMetadata(
            kind=TEXT_MODEL_KIND,
            shares_weights=self.shares_weights,
            dim=self.dim,
            max_seq_length=self.max_seq_length,
            base_model=self.base_model,
        )

        def write(directory: Path) -> None:
            self.query_tower.save(str(directory / QUERY_TOWER_DIR), create_model_card=False, safe_serialization=True)
            if self.item_tower is not None:
                self.item_tower.save(str(directory / ITEM_TOWER_DIR), create_model_card=False, safe_serialization=True)
            (directory / METADATA_FILE).write_text(metadata.to_json(), encoding="utf-8")

        write_directory_atomically(Path(path), write)

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | torch.device | None = None) -> TextEmbeddingModel:
        """Load a directory written by `save` (on the CPU unless a device is given)."""
        directory = Path(path)
        metadata = ModelMetadata.read(directory)
        if metadata.kind != TEXT_MODEL_KIND:
            raise ModelError(f"{directory} holds a {metadata.kind!r} model, not a text model")
        query_tower = load_sentence_transformer(directory / QUERY_TOWER_DIR, device)
        item_tower = None if metadata.shares_weights else load_sentence_transformer(directory / ITEM_TOWER_DIR, device)
        model = cls(query_tower, item_tower, base_model=metadata.base_model)
        if metadata.max_seq_length is not None:
            model.max_seq_length = metadata.max_seq_length
        return model


def load_sentence_transformer(directory: Path, device: str | torch.device | None = None) -> SentenceTransformer:
    if not directory.is_dir():
        raise ModelNotFoundError(f"{directory} does not exist or is not a directory")
    quiet_transformers()
    return SentenceTransformer(
        str(directory), device=str(device) if device is not None else "cpu", local_files_only=True
    )


def _progress(steps: range, show_progress: bool, what: str) -> Iterator[int]:
    if not show_progress:
        yield from steps
        return
    from tqdm.auto import tqdm

    yield from tqdm(steps, desc=f"Encoding {what}", unit="batch")
