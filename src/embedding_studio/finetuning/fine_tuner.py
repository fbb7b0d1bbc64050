"""EmbeddingsFineTuner: trains a two-tower text model on labelled sessions with Lightning.

The data path is built so that a training step never waits on the host: item parts and queries are
tokenized once up front (:class:`TokenCache`), batches are padded on the CPU by the collate function
from cached token ids, grouped by length so padding stays small, and the loss, the metrics and their
running sums stay on the device until a validation ends (the one place values are read back).
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from embedding_studio.clickstream.types import FineTuningInput
from embedding_studio.finetuning.errors import NotEnoughDataError
from embedding_studio.finetuning.features import FeatureExtractor, SessionFeatures
from embedding_studio.finetuning.losses import SimilarityBatch, create_loss
from embedding_studio.finetuning.metrics import rerank_metrics
from embedding_studio.finetuning.modality import item_input_cache, item_inputs, restrict_trainable_parts
from embedding_studio.finetuning.params import FineTuningParams
from embedding_studio.finetuning.query_retriever import QueryRetriever, TextQueryRetriever, normalize_query_text
from embedding_studio.finetuning.retrieval_validation import (
    PoolEmbeddings,
    RetrievalValidator,
    best_part_scores,
    group_validation_queries,
)

ValidationMetricsHook = Callable[[int, Mapping[str, float]], None]
RETRIEVAL_METRIC_NAMES = ("val_mrr", "val_ndcg_at_10", "val_recall_at_10")
RERANK_METRIC_NAMES = ("val_rerank_mrr", "val_rerank_ndcg_at_10", "val_rerank_recall_at_10")
METRIC_NAMES = ("val_loss", *RETRIEVAL_METRIC_NAMES, *RERANK_METRIC_NAMES)
GRADIENT_CLIP_NORM = 1.0


# ----- tokens --------------------------------------------------------------------------------------
class TokenCache:
    """Unpadded token tensors of many texts, tokenized once, stored flat (one tensor per key + offsets)."""

    def __init__(self, tokenize: Callable[[list[str]], dict[str, Tensor]], texts: Sequence[str], chunk_size: int = 512):
        self.pad_values, self.left_padding = _padding_of(tokenize)
        pieces: dict[str, list[Tensor]] = {}
        lengths: list[int] = []
        for start in range(0, len(texts), chunk_size):
            features = tokenize(list(texts[start : start + chunk_size]))
            mask = features.get("attention_mask")
            for row in range(next(iter(features.values())).shape[0]):
                keep = mask[row].bool() if mask is not None else slice(None)
                for key, value in features.items():
                    pieces.setdefault(key, []).append(value[row][keep])
                lengths.append(int(pieces[next(iter(features))][-1].shape[0]))
        self.keys = tuple(pieces)
        self.flat = {
            key: torch.cat(values) if values else torch.empty(0, dtype=torch.long) for key, values in pieces.items()
        }
        self.lengths = torch.tensor(lengths, dtype=torch.long)
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(self.lengths, 0)])

    def __len__(self) -> int:
        return len(self.lengths)

    def pad(self, indices: Sequence[int]) -> dict[str, Tensor]:
        """A padded batch of the given texts, as the tokenizer would have produced it."""
        width = max((int(self.lengths[index]) for index in indices), default=1)
        batch = {
            key: torch.full((len(indices), width), self.pad_values.get(key, 0), dtype=self.flat[key].dtype)
            for key in self.keys
        }
        for row, index in enumerate(indices):
            start, end = int(self.offsets[index]), int(self.offsets[index + 1])
            length = end - start
            columns = slice(width - length, width) if self.left_padding else slice(0, length)
            for key in self.keys:
                batch[key][row, columns] = self.flat[key][start:end]
        return batch


def _padding_of(tokenize: Callable[[list[str]], dict[str, Tensor]]) -> tuple[dict[str, int], bool]:
    """The tokenizer's pad values and side, read off a batch of a short and a long text."""
    features = tokenize(["a", "a a a a a a"])
    mask = features.get("attention_mask")
    if mask is None or bool(mask[0].all()):
        return {}, False
    padded = (mask[0] == 0).nonzero()[:, 0]
    position = int(padded[0])
    left = position == 0
    return {key: int(value[0, position]) for key, value in features.items()}, left


# ----- rows and batches ----------------------------------------------------------------------------
@dataclass(frozen=True)
class EncodedRow:
    """One labelled session with every text replaced by its index in a token cache."""

    session_id: str
    query_index: int
    query_group: int
    positive_items: tuple[int, ...]
    positive_weights: Tensor
    negative_items: tuple[int, ...]
    negative_weights: Tensor
    shown_items: tuple[int, ...]
    clicked_items: frozenset[int]
    length: int


class FeatureRowsDataset(Dataset[EncodedRow]):
    def __init__(self, rows: Sequence[EncodedRow]) -> None:
        self.rows = list(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> EncodedRow:
        return self.rows[index]


class RowCollator:
    """Pads a list of training rows into the tensors a step reads: tokens of the batch's queries and items, and
    positives and negatives as indexes into the batch's items."""

    def __init__(self, queries: TokenCache, parts: TokenCache, item_parts: Sequence[Sequence[int]]):
        self.queries = queries
        self.parts = parts
        self.item_parts = item_parts

    def __call__(self, rows: Sequence[EncodedRow]) -> dict[str, Any]:
        local: dict[int, int] = {}
        for row in rows:
            for item in row.positive_items + row.negative_items:
                local.setdefault(item, len(local))
        part_indices: list[int] = []
        part_owner: list[int] = []
        for item, position in local.items():
            part_indices.extend(self.item_parts[item])
            part_owner.extend([position] * len(self.item_parts[item]))

        batch: dict[str, Any] = {
            "query_tokens": self.queries.pad([row.query_index for row in rows]),
            "part_tokens": self.parts.pad(part_indices),
            "part_owner": torch.tensor(part_owner, dtype=torch.long),
            "item_count": len(local),
            "query_groups": torch.tensor([row.query_group for row in rows], dtype=torch.long),
        }
        batch["positive_index"], batch["positive_weights"] = _padded_index(
            [[local[item] for item in row.positive_items] for row in rows], [row.positive_weights for row in rows]
        )
        batch["negative_index"], batch["negative_weights"] = _padded_index(
            [[local[item] for item in row.negative_items] for row in rows], [row.negative_weights for row in rows]
        )
        return batch


class ValidationRowCollator:
    """Held-out rows with every item as its index in the validation pool (no tokens): a validation embeds the pool
    once and reads each row's scores off it, however many sessions showed the same items."""

    def __call__(self, rows: Sequence[EncodedRow]) -> dict[str, Any]:
        batch: dict[str, Any] = {
            "query_index": torch.tensor([row.query_index for row in rows], dtype=torch.long),
            "query_groups": torch.tensor([row.query_group for row in rows], dtype=torch.long),
        }
        batch["positive_index"], batch["positive_weights"] = _padded_index(
            [row.positive_items for row in rows], [row.positive_weights for row in rows]
        )
        batch["negative_index"], batch["negative_weights"] = _padded_index(
            [row.negative_items for row in rows], [row.negative_weights for row in rows]
        )
        shown, _ = _padded_index([row.shown_items for row in rows], None)
        clicked = torch.zeros_like(shown, dtype=torch.bool)
        for row_number, row in enumerate(rows):
            for column, item in enumerate(row.shown_items):
                clicked[row_number, column] = item in row.clicked_items
        batch["shown_index"] = shown
        batch["clicked"] = clicked
        return batch


def _padded_index(indexes: Sequence[Sequence[int]], weights: Sequence[Tensor] | None) -> tuple[Tensor, Tensor]:
    width = max(1, max((len(each) for each in indexes), default=0))
    index = torch.full((len(indexes), width), -1, dtype=torch.long)
    padded_weights = torch.zeros(len(indexes), width, dtype=torch.float32)
    for row, each in enumerate(indexes):
        if each:
            index[row, : len(each)] = torch.tensor(each, dtype=torch.long)
            if weights is not None:
                padded_weights[row, : len(each)] = weights[row]
    return index, padded_weights


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Shuffled batches of rows of similar length: shuffle, sort within pools of ``pool_batches`` batches,
    cut, shuffle the batches. Each pass over the data (epoch) draws a new order from ``seed`` and its count.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, shuffle: bool, pool_batches: int = 50):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.pool_batches = pool_batches
        self.passes = 0

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = list(range(len(self.lengths)))
        rng = random.Random(self.seed * 1_000_003 + self.passes)
        self.passes += 1
        if self.shuffle:
            rng.shuffle(order)
        pool = self.batch_size * self.pool_batches
        batches: list[list[int]] = []
        for start in range(0, len(order), pool):
            chunk = sorted(order[start : start + pool], key=lambda index: self.lengths[index])
            batches.extend(chunk[offset : offset + self.batch_size] for offset in range(0, len(chunk), self.batch_size))
        if self.shuffle:
            rng.shuffle(batches)
        return iter(batches)


# ----- the module ----------------------------------------------------------------------------------
@dataclass
class PreparedRows:
    train: list[EncodedRow]
    test: list[EncodedRow]
    train_collator: RowCollator
    test_collator: ValidationRowCollator
    retrieval_validator: RetrievalValidator


class EmbeddingsFineTuner(pl.LightningModule):
    """Fine-tunes ``model`` (a ``TextEmbeddingModel``) on clicks; ``items`` maps item id → part texts.

    An item scores as its best part: ``s(q, d) = max_k cos(q, part_k(d))``. ``items`` may also be a
    prepared item set with a ``parts`` mapping. ``on_validation_metrics(step, metrics)`` is called
    after every validation with plain floats (``step`` = optimizer steps so far), so the pipeline can
    forward them to the tracker.
    """

    def __init__(
        self,
        model: Any,
        items: Mapping[str, Sequence[str]] | Any,
        query_retriever: QueryRetriever | None = None,
        params: FineTuningParams | None = None,
        on_validation_metrics: ValidationMetricsHook | None = None,
        selection_metric: str = "val_ndcg_at_10",
    ) -> None:
        super().__init__()
        if selection_metric not in METRIC_NAMES:
            raise ValueError(f"selection_metric {selection_metric!r} is not one of {', '.join(METRIC_NAMES)}")
        self.model = model
        self.params = params or FineTuningParams()
        # Text items are their part texts; image items one image each (``modality.item_inputs``).
        self.item_parts_text: Mapping[str, Sequence[Any]] = item_inputs(items)
        self.query_retriever: QueryRetriever = query_retriever or TextQueryRetriever()
        self.on_validation_metrics = on_validation_metrics
        self.loss_function = create_loss(self.params)
        self.feature_extractor = FeatureExtractor(
            self.query_retriever,
            use_ips=self.params.use_ips,
            max_ips_weight=self.params.max_ips_weight,
            positives_per_query=self.params.positives_per_query,
            negatives_per_query=self.params.negatives_per_query,
        )
        self.history: list[dict[str, float]] = []
        self.best_metrics: dict[str, float] = {}
        self._best_state: dict[str, Tensor] | None = None
        # The best validation of trained weights only (the untrained ones excluded): what a weight share mixes in,
        # with the optimizer step it was taken at (how long a refit on every session trains).
        self._best_trained: tuple[dict[str, float], dict[str, Tensor], int] | None = None
        # Optimizer steps the learning-rate schedule spans; None: the Trainer's estimate (the whole fit).
        self.schedule_total_steps: int | None = None
        self.selection_metric = selection_metric
        self._validation_sums: dict[str, Tensor] = {}
        self._pool_embeddings: PoolEmbeddings | None = None
        self.prepared: PreparedRows | None = None

        train_last = self.params.train_last_n_layers
        model.set_trainable_layers(None if train_last < 0 else train_last)
        restrict_trainable_parts(model, self.params.trainable_parts)

    @classmethod
    def create(
        cls,
        model: Any,
        items: Mapping[str, Sequence[str]] | Any,
        query_retriever: QueryRetriever | None,
        params: FineTuningParams,
        tracker_callback: ValidationMetricsHook | None = None,
    ) -> EmbeddingsFineTuner:
        return cls(model, items, query_retriever, params, on_validation_metrics=tracker_callback)

    # ----- data ------------------------------------------------------------------------------------
    def preprocess_inputs(
        self, train_inputs: Sequence[FineTuningInput], test_inputs: Sequence[FineTuningInput]
    ) -> PreparedRows:
        """Label the sessions, learn propensities from train, and tokenize every query and needed part once."""
        known = {item_id for item_id, parts in self.item_parts_text.items() if len(parts) > 0}
        self.feature_extractor.fit(train_inputs)
        self.feature_extractor.remember_clicks(test_inputs)
        train_features = self._features(train_inputs, known)
        test_features = self._features(test_inputs, known)
        if not train_features:
            raise NotEnoughDataError(
                f"none of the {len(train_inputs)} training sessions has a click (or an irrelevance mark) on a "
                "loaded item: there is nothing to learn from"
            )
        if not any(clicked for _, _, clicked in test_features):
            raise NotEnoughDataError(
                f"none of the {len(test_inputs)} test sessions has a click on a loaded item: "
                "validation would measure nothing"
            )

        item_ids: dict[str, int] = {}
        query_ids: dict[str, int] = {}
        group_ids: dict[str, int] = {}
        for features, shown, _ in train_features + test_features:
            for item_id in features.positive_ids + features.negative_ids + shown:
                item_ids.setdefault(item_id, len(item_ids))
            query_ids.setdefault(features.query, len(query_ids))
            group_ids.setdefault(normalize_query_text(features.query), len(group_ids))
        # The retrieval validation searches every loaded item: the batch's shown items and the catalog sample.
        for item_id in sorted(known):
            item_ids.setdefault(item_id, len(item_ids))

        part_texts: list[str] = []
        item_parts: list[list[int]] = []
        for item_id in item_ids:
            parts = list(self.item_parts_text[item_id])
            item_parts.append(list(range(len(part_texts), len(part_texts) + len(parts))))
            part_texts.extend(parts)
        # Truncate to max_seq_length for training only: tokens are cached, so the saved model keeps
        # the sequence length it came with for inference.
        original_length = self.model.max_seq_length
        if original_length:
            self.model.max_seq_length = min(self.params.max_seq_length, original_length)
        else:
            self.model.max_seq_length = self.params.max_seq_length
        try:
            parts_cache = item_input_cache(self.model, part_texts)
            queries_cache = TokenCache(self.model.tokenize_queries, list(query_ids))
        finally:
            if original_length:
                self.model.max_seq_length = original_length
        part_lengths = parts_cache.lengths.tolist()

        def encode(features: SessionFeatures, shown: tuple[str, ...], clicked: frozenset[str]) -> EncodedRow:
            items = [item_ids[item_id] for item_id in features.positive_ids + features.negative_ids]
            return EncodedRow(
                session_id=features.session_id,
                query_index=query_ids[features.query],
                query_group=group_ids[normalize_query_text(features.query)],
                positive_items=tuple(item_ids[item_id] for item_id in features.positive_ids),
                positive_weights=features.positive_weights,
                negative_items=tuple(item_ids[item_id] for item_id in features.negative_ids),
                negative_weights=features.negative_weights,
                shown_items=tuple(item_ids[item_id] for item_id in shown),
                clicked_items=frozenset(item_ids[item_id] for item_id in clicked),
                length=max((part_lengths[part] for item in items for part in item_parts[item]), default=0),
            )

        validation_queries = group_validation_queries(
            [
                (
                    group_ids[normalize_query_text(features.query)],
                    query_ids[features.query],
                    frozenset(item_ids[item_id] for item_id in clicked if item_id in item_ids),
                )
                for features, _, clicked in test_features
            ]
        )
        self.prepared = PreparedRows(
            train=[encode(*row) for row in train_features],
            test=[encode(*row) for row in test_features],
            train_collator=RowCollator(queries_cache, parts_cache, item_parts),
            test_collator=ValidationRowCollator(),
            retrieval_validator=RetrievalValidator(
                queries_cache,
                parts_cache,
                item_parts,
                validation_queries,
                query_indices=[query_ids[features.query] for features, _, _ in test_features],
            ),
        )
        return self.prepared

    def _features(
        self, inputs: Sequence[FineTuningInput], known: set[str]
    ) -> list[tuple[SessionFeatures, tuple[str, ...], frozenset[str]]]:
        rows = []
        for fine_tuning_input, query in zip(inputs, self.query_retriever.get_queries(inputs), strict=True):
            features = self.feature_extractor.extract_one(fine_tuning_input, query, known)
            if features is None:
                continue
            shown = tuple(item_id for item_id in dict.fromkeys(fine_tuning_input.results) if item_id in known)
            clicked = frozenset(fine_tuning_input.events) if not fine_tuning_input.is_irrelevant else frozenset()
            rows.append((features, shown, clicked))
        return rows

    def train_dataloader_from(self, pin_memory: bool = False) -> DataLoader:
        prepared = self._require_prepared()
        return self._length_bucketed_loader(
            prepared.train, prepared.train_collator, shuffle=True, pin_memory=pin_memory
        )

    def test_dataloader_from(self, pin_memory: bool = False) -> DataLoader:
        prepared = self._require_prepared()
        return self._length_bucketed_loader(prepared.test, prepared.test_collator, shuffle=False, pin_memory=pin_memory)

    def _length_bucketed_loader(
        self, rows: Sequence[Any], collator: Callable[..., Any], shuffle: bool, pin_memory: bool
    ) -> DataLoader:
        """Batches of rows of similar length, so padding (and wasted compute) stays small."""
        sampler = LengthBucketBatchSampler(
            [row.length for row in rows], self.params.batch_size, seed=self.params.seed, shuffle=shuffle
        )
        return DataLoader(FeatureRowsDataset(rows), batch_sampler=sampler, collate_fn=collator, pin_memory=pin_memory)

    def _require_prepared(self) -> PreparedRows:
        if self.prepared is None:
            raise RuntimeError("call preprocess_inputs(train_inputs, test_inputs) before asking for data loaders")
        return self.prepared

    # ----- steps -----------------------------------------------------------------------------------
    def item_similarities(self, batch: Mapping[str, Any]) -> Tensor:
        """``[B, U]`` cosine of each query with each item of the batch, an item scoring as its best part.

        The product runs outside autocast, in float32: under bf16 a cosine near 0.8 moves in steps of 0.004, which
        ties the shown items of a session in validation and, divided by a 0.05 temperature, makes the logits of
        the loss jump by 0.08. The matrix is ``B x parts``, so float32 costs nothing measurable."""
        queries = self.model.forward_queries(batch["query_tokens"])
        parts = self.model.forward_items(batch["part_tokens"])
        with torch.autocast(device_type=queries.device.type, enabled=False):
            part_similarities = queries.float() @ parts.float().T
        return best_part_scores(part_similarities, batch["part_owner"], batch["item_count"])

    def _loss(self, batch: Mapping[str, Any], similarities: Tensor) -> Tensor:
        return self.loss_function(
            SimilarityBatch(
                similarities=similarities,
                positive_index=batch["positive_index"],
                positive_weights=batch["positive_weights"],
                negative_index=batch["negative_index"],
                negative_weights=batch["negative_weights"],
                query_groups=batch["query_groups"],
            )
        )

    def training_step(self, batch: Mapping[str, Any], batch_index: int) -> Tensor:
        loss = self._loss(batch, self.item_similarities(batch))
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=batch["query_groups"].shape[0])
        return loss

    def on_validation_epoch_start(self) -> None:
        self._validation_sums = {}
        # The pool and the held-out queries, embedded once for every figure of this validation.
        self._pool_embeddings = self._require_prepared().retrieval_validator.embed(self.model, self.device)

    def validation_step(self, batch: Mapping[str, Any], batch_index: int) -> None:
        """The loss and the re-ranking of shown results of held-out rows, from the validation's pool embeddings:
        ``similarities [B, I]`` covers every pool item, so in-batch negatives are the other rows' clicks as in
        training, and the shown results are a gather."""
        validator = self._require_prepared().retrieval_validator
        assert self._pool_embeddings is not None
        similarities = validator.item_scores(self._pool_embeddings, batch["query_index"])
        loss = self._loss(batch, similarities)
        shown = batch["shown_index"]
        scores = similarities.gather(1, shown.clamp_min(0))
        per_session = rerank_metrics(scores, shown >= 0, batch["clicked"], k=10)
        evaluated = per_session.pop("evaluated").float()
        rows = torch.tensor(float(shown.shape[0]), device=loss.device)
        sums = {
            "val_loss": loss.detach() * rows,
            "rows": rows,
            "evaluated": evaluated.sum(),
            **{f"val_rerank_{name}": (values.float() * evaluated).sum() for name, values in per_session.items()},
        }
        for name, value in sums.items():
            self._validation_sums[name] = self._validation_sums.get(name, 0.0) + value

    def on_validation_epoch_end(self) -> None:
        sums = self._validation_sums
        embeddings, self._pool_embeddings = self._pool_embeddings, None
        if not sums or embeddings is None or self.trainer.sanity_checking:
            return
        metrics = {"val_loss": sums["val_loss"] / sums["rows"]}
        for name in RERANK_METRIC_NAMES:
            metrics[name] = sums[name] / sums["evaluated"].clamp_min(1.0)
        # Once per validation: the only point where values come back to the host.
        values = {name: float(value) for name, value in metrics.items()}
        values.update(self._require_prepared().retrieval_validator.metrics(embeddings))
        for name, value in values.items():
            self.log(name, value, prog_bar=name == "val_ndcg_at_10")
        step = int(self.global_step)
        self.history.append({"step": float(step), **values})
        improves = self._improves_on_best(values)
        improves_trained = self._best_trained is None or _better(values, self._best_trained[0], self.selection_metric)
        if improves or improves_trained:
            state = self.trainable_state_on_cpu()  # one copy, shared when both improve
            if improves:
                self.best_metrics, self._best_state = dict(values), state
            if improves_trained:
                self._best_trained = (dict(values), state, step)
        if self.on_validation_metrics is not None:
            self.on_validation_metrics(step, values)

    def _improves_on_best(self, values: dict[str, float]) -> bool:
        """Whether this validation beats the best so far on the selection metric (val_loss breaks ties).

        Weights are kept by the metric the tracker ranks runs by (retrieval NDCG@10 of the held-out queries over the
        candidate pool by default, see ``retrieval_validation``): a lower val_loss with worse search is not a better
        model to deploy.
        """
        if not self.best_metrics:
            return True
        metric = self.selection_metric
        if values[metric] == self.best_metrics[metric]:
            return values["val_loss"] < self.best_metrics["val_loss"]
        return _better(values, self.best_metrics, metric)

    def trainable_state_on_cpu(self) -> dict[str, Tensor]:
        """A CPU copy of every trained parameter: what ``restore_best`` puts back."""
        return {
            name: parameter.detach().to("cpu", copy=True)
            for name, parameter in self.model.named_parameters()
            if parameter.requires_grad
        }

    def restore_best(self) -> bool:
        """Put back the weights of the best validation by the selection metric (see ``_improves_on_best``)."""
        if self._best_state is None:
            return False
        parameters = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in self._best_state.items():
                parameters[name].copy_(value.to(parameters[name].device))
        return True

    # ----- optimisation ----------------------------------------------------------------------------
    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip the global gradient norm to `GRADIENT_CLIP_NORM` here, not through the Trainer's
        `gradient_clip_val`: Lightning refuses that for a fused AdamW (it cannot tell whether the optimizer unscales
        internally), and under bf16 there is no loss scale to undo, so clipping right before the step is exact.
        `clip_grad_norm_` computes and applies the norm on the device: no host sync."""
        gradients = [parameter for parameter in self.parameters() if parameter.grad is not None]
        if gradients:
            torch.nn.utils.clip_grad_norm_(gradients, max_norm=GRADIENT_CLIP_NORM)

    def configure_optimizers(self) -> Any:
        query_parameters = list(self.model.query_parameters())
        item_parameters = list(self.model.item_parameters())
        if not query_parameters and not item_parameters:
            raise NotEnoughDataError(
                f"train_last_n_layers={self.params.train_last_n_layers} leaves no parameter to train"
            )
        # With shared weights the item tower has no parameters of its own: everything uses query_lr.
        groups = [{"params": query_parameters, "lr": self.params.query_lr}]
        if item_parameters:
            groups.append({"params": item_parameters, "lr": self.params.item_lr})
        on_cuda = all(parameter.is_cuda for group in groups for parameter in group["params"])
        optimizer = torch.optim.AdamW(groups, weight_decay=self.params.weight_decay, fused=on_cuda or None)
        total_steps = max(1, self.schedule_total_steps or int(self.trainer.estimated_stepping_batches))
        warmup_steps = int(self.params.warmup_share * total_steps)

        def schedule(step: int) -> float:
            # Linear warm-up to the full rate, then linear decay towards 0 at the last step.
            if step < warmup_steps:
                return (step + 1) / (warmup_steps + 1)
            return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


# ----- fitting ---------------------------------------------------------------------------------------
@dataclass
class FitResult:
    """``best_metrics``: the best validation by the selection metric (its weights are the ones left in the model);
    ``baseline_metrics``: the model before training; ``history``: every validation in order, with its step;
    ``weight_share``: the share of the fine-tuned change kept (0: the untrained weights came back).

    With a refit on every session (``refit_steps`` > 0) the model holds the refit weights at that share, while
    ``best_metrics`` stays the validation of the fit that chose them."""

    best_metrics: dict[str, float]
    history: list[dict[str, float]]
    stopped_epoch: int
    baseline_metrics: dict[str, float] = field(default_factory=dict)
    weight_share: float = 1.0
    weight_share_validations: dict[float, dict[str, float]] = field(default_factory=dict)
    #: optimizer steps of the final fit on every session (``refit_on_all_sessions``); 0: the weights left in the
    #: model are the validated ones
    refit_steps: int = 0
    #: epochs trained before the fit ended (at most ``max_epochs``); fewer when early stopping fired
    epochs_run: int = 0
    #: why the fit ended: "early stopping: <Lightning's message>" or "ran all N epochs"; logged with the run so a
    #: short run can be told apart from a capped one
    stop_reason: str = ""


def training_precision(on_gpu: bool) -> str:
    """bf16 autocast on a GPU that has it (about twice the speed and half the activation memory), fp32 elsewhere."""
    return "bf16-mixed" if on_gpu and torch.cuda.is_bf16_supported() else "32-true"


def validation_interval(test_each_n_inputs: int | float, batch_size: int, batches_per_epoch: int) -> int | float:
    """Lightning's ``val_check_interval``: a float in (0, 1] is a share of an epoch; otherwise a number of
    training inputs, turned into batches (at least one, at most an epoch)."""
    if isinstance(test_each_n_inputs, bool) or test_each_n_inputs <= 0:
        raise ValueError(f"test_each_n_inputs must be a positive number, got {test_each_n_inputs!r}")
    if isinstance(test_each_n_inputs, float) and test_each_n_inputs <= 1.0:
        return test_each_n_inputs
    batches = max(1, round(float(test_each_n_inputs) / batch_size))
    return min(batches, max(1, batches_per_epoch))


def _trainer_device(accelerator: str, device: Any) -> tuple[str, Any]:
    if device is not None:
        device = torch.device(device)
        if device.type == "cuda":
            return "gpu", [device.index or 0]
        return device.type, 1
    if accelerator == "auto":
        return ("gpu", 1) if torch.cuda.is_available() else ("cpu", 1)
    return accelerator, 1


def interpolate_weights(
    model: torch.nn.Module, initial_state: Mapping[str, Tensor], tuned_state: Mapping[str, Tensor], share: float
) -> None:
    """Keep a share of what training changed: ``W = W_0 + share * (W_tuned - W_0)`` for each trained parameter.

    Weight-space ensembling of the fine-tuned and the initial model (WiSE-FT, Wortsman et al., 2022): it trades
    some fit to the clicked queries for robustness on the ones nobody clicked yet.
    """
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, initial in initial_state.items():
            parameter = parameters[name]
            tuned = tuned_state[name].to(device=parameter.device, dtype=parameter.dtype)
            parameter.copy_(tuned).lerp_(initial.to(device=parameter.device, dtype=parameter.dtype), 1.0 - share)


# The shares of the fine-tuned change tried besides the whole of it when the share is chosen on validation. WiSE-FT
# sweeps a finer grid; each share costs one validation (one encode of the pool, minutes on a CPU), and half-way is
# where its curves gain most over both ends.
WEIGHT_SHARE_CHOICES = (0.5,)


def _validate_once(
    fine_tuner: EmbeddingsFineTuner, loader: DataLoader, trainer_arguments: Mapping[str, Any], device: torch.device
) -> dict[str, float]:
    """The metrics of one validation outside training (the baseline, the interpolated weights): not reported to
    the hook, not left in the history, and not taken as the best weights. The model is back on ``device`` after
    (Lightning's teardown leaves it on the CPU)."""
    hook, fine_tuner.on_validation_metrics = fine_tuner.on_validation_metrics, None
    best_metrics, best_state, best_trained = fine_tuner.best_metrics, fine_tuner._best_state, fine_tuner._best_trained
    history_length = len(fine_tuner.history)
    try:
        with _quiet_lightning():
            pl.Trainer(enable_checkpointing=False, **trainer_arguments).validate(fine_tuner, loader, verbose=False)
    finally:
        fine_tuner.on_validation_metrics = hook
        fine_tuner.best_metrics, fine_tuner._best_state, fine_tuner._best_trained = (
            best_metrics,
            best_state,
            best_trained,
        )
        fine_tuner.to(device)
    metrics = fine_tuner.history.pop() if len(fine_tuner.history) > history_length else {}
    metrics.pop("step", None)
    return metrics


def _training_device(accelerator_name: str, devices: Any) -> torch.device:
    """The torch device a Trainer with these arguments trains on."""
    if accelerator_name == "gpu":
        return torch.device("cuda", devices[0] if isinstance(devices, list) else 0)
    return torch.device(accelerator_name if accelerator_name in ("cpu", "mps") else "cpu")


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Lightning announces devices and tips at INFO on every Trainer; our progress goes to the tracker instead."""
    names = ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda", "lightning.fabric")
    loggers = [logging.getLogger(name) for name in names]
    levels = [each.level for each in loggers]
    for each in loggers:
        each.setLevel(logging.WARNING)
    # Lightning's `deterministic=True` flips a process-wide torch flag; give the process its own back.
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        with warnings.catch_warnings():
            # Tokens are cached and batches padded in microseconds: loader workers would only add start-up time.
            warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
            # A refit on every session trains without validating: nothing is left to validate on.
            warnings.filterwarnings("ignore", message=r".*defined a `validation_step` but have no `val_dataloader`.*")
            yield
    finally:
        for each, level in zip(loggers, levels, strict=True):
            each.setLevel(level)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def _trainer_arguments(accelerator: str, device: Any, enable_progress_bar: bool = False) -> dict[str, Any]:
    """What every Trainer of a fit shares: device, precision (bf16 autocast on a GPU), no logger."""
    accelerator_name, devices = _trainer_device(accelerator, device)
    on_gpu = accelerator_name == "gpu"
    return {
        "accelerator": accelerator_name,
        "devices": devices,
        "precision": training_precision(on_gpu),
        "logger": False,
        "enable_progress_bar": enable_progress_bar,
        "enable_model_summary": False,
        "deterministic": not on_gpu,
    }


def validate_model(
    model: Any,
    items: Mapping[str, Sequence[str]] | Any,
    query_retriever: QueryRetriever | None,
    train_inputs: Sequence[FineTuningInput],
    test_inputs: Sequence[FineTuningInput],
    params: FineTuningParams,
    device: Any = None,
) -> dict[str, float]:
    """The validation a fit would start with, for a model that is not trained: how the current blue model does on
    the same held-out sessions and candidate pool as a candidate, so the two can be compared."""
    fine_tuner = EmbeddingsFineTuner(model, items, query_retriever, params)
    fine_tuner.preprocess_inputs(train_inputs, test_inputs)
    common = _trainer_arguments("auto", device)
    loader = fine_tuner.test_dataloader_from(pin_memory=common["accelerator"] == "gpu")
    try:
        return _validate_once(fine_tuner, loader, common, _training_device(common["accelerator"], common["devices"]))
    finally:
        fine_tuner.eval()


def fit_fine_tuner(
    fine_tuner: EmbeddingsFineTuner,
    train_inputs: Sequence[FineTuningInput],
    test_inputs: Sequence[FineTuningInput],
    params: FineTuningParams | None = None,
    max_epochs: int | None = None,
    test_each_n_inputs: int | float = 1.0,
    callbacks: Sequence[pl.Callback] = (),
    enable_progress_bar: bool = False,
    accelerator: str = "auto",
    device: Any = None,
    on_validation_metrics: ValidationMetricsHook | None = None,
    checkpoint_dir: str | None = None,
) -> FitResult:
    """Validate once (baseline), train with early stopping on the selection metric, and leave the best weights in
    the model (best by ``fine_tuner.selection_metric``, the untrained weights included), at the chosen weight share;
    with ``params.refit_on_all_sessions``, the same recipe refit on every session instead.

    Precision follows the device: bf16 autocast on a GPU that supports it, fp32 elsewhere. Runs are
    reproducible for a seed on CPU (``params.seed``).
    """
    params = params or fine_tuner.params
    if on_validation_metrics is not None:
        fine_tuner.on_validation_metrics = on_validation_metrics
    pl.seed_everything(params.seed, workers=True, verbose=False)
    fine_tuner.preprocess_inputs(train_inputs, test_inputs)
    common = _trainer_arguments(accelerator, device, enable_progress_bar)
    on_gpu = common["accelerator"] == "gpu"
    train_loader = fine_tuner.train_dataloader_from(pin_memory=on_gpu)
    test_loader = fine_tuner.test_dataloader_from(pin_memory=on_gpu)
    training_device = _training_device(common["accelerator"], common["devices"])
    baseline = _validate_once(fine_tuner, test_loader, common, training_device)
    fine_tuner.history.clear()
    # The untrained model is a candidate too: if training only hurts, its weights come back.
    fine_tuner.best_metrics = dict(baseline)
    initial_state = fine_tuner.trainable_state_on_cpu()
    fine_tuner._best_state = dict(initial_state)
    if fine_tuner.on_validation_metrics is not None and baseline:
        fine_tuner.on_validation_metrics(0, baseline)

    # Stop when search on the held-out queries stops getting better (the metric that keeps weights), not val_loss.
    selection_mode = "min" if fine_tuner.selection_metric == "val_loss" else "max"
    early_stopping = EarlyStopping(monitor=fine_tuner.selection_metric, patience=3, mode=selection_mode, strict=False)
    all_callbacks: list[pl.Callback] = [early_stopping]
    if checkpoint_dir is not None:
        all_callbacks.append(ModelCheckpoint(dirpath=checkpoint_dir, monitor="val_loss", mode="min", save_top_k=1))
    all_callbacks.extend(callbacks)
    with _quiet_lightning():
        trainer = pl.Trainer(
            max_epochs=max_epochs or params.num_epochs,
            callbacks=all_callbacks,
            enable_checkpointing=checkpoint_dir is not None,
            num_sanity_val_steps=0,
            val_check_interval=validation_interval(test_each_n_inputs, params.batch_size, len(train_loader)),
            **common,
        )
    # Sentence-transformers hands its modules over in eval mode; training wants dropout on.
    fine_tuner.train()
    try:
        with _quiet_lightning():
            trainer.fit(fine_tuner, train_loader, test_loader)
    finally:
        # Lightning's teardown leaves the module on the CPU; the trained model stays where it was trained, so
        # evaluating or serving it next is not a CPU encode (on an H200 that made one evaluation take 105 s, not 3).
        fine_tuner.to(training_device)
        fine_tuner.restore_best()
        fine_tuner.eval()
        # The best weights are in place; the CPU copy is not needed any more.
        fine_tuner._best_state = None
    share_validations: dict[float, dict[str, float]] = {}
    trained_beat_base = fine_tuner.best_metrics != baseline
    weight_share = 1.0 if trained_beat_base else 0.0
    trained, fine_tuner._best_trained = fine_tuner._best_trained, None
    if trained is not None and (params.choose_weight_share or trained_beat_base):
        weight_share = _choose_weight_share(
            fine_tuner,
            initial_state,
            trained,
            baseline,
            params,
            test_loader,
            common,
            training_device,
            share_validations,
        )
    epochs_run = int(trainer.current_epoch)
    stop_reason = _stop_reason(early_stopping, epochs_run, max_epochs or params.num_epochs)
    refit_steps = 0
    if params.refit_on_all_sessions and trained is not None and weight_share > 0:
        refit_steps = _refit_on_all_sessions(
            fine_tuner,
            train_inputs,
            test_inputs,
            params,
            initial_state,
            validated_steps=trained[2],
            validated_batches_per_epoch=len(train_loader),
            max_epochs=max_epochs or params.num_epochs,
            weight_share=weight_share,
            common=common,
            device=training_device,
        )
    return FitResult(
        best_metrics=dict(fine_tuner.best_metrics),
        history=list(fine_tuner.history),
        stopped_epoch=int(trainer.current_epoch),
        baseline_metrics=baseline,
        weight_share=weight_share,
        weight_share_validations=share_validations,
        refit_steps=refit_steps,
        epochs_run=epochs_run,
        stop_reason=stop_reason,
    )


def _stop_reason(early_stopping: EarlyStopping, epochs_run: int, max_epochs: int) -> str:
    """Why the fit ended, in words: early stopping says which metric stalled and its best value, so a run that
    trained 4 of 30 epochs is not mistaken for one capped at 4."""
    if early_stopping.stopping_reason is not EarlyStoppingReason.NOT_STOPPED:
        message = (early_stopping.stopping_reason_message or early_stopping.stopping_reason.name).strip()
        return f"early stopping after {epochs_run} of {max_epochs} epochs: {message}"
    return f"ran all {max_epochs} epochs" if epochs_run >= max_epochs else f"stopped after {epochs_run} epochs"


def _refit_on_all_sessions(
    fine_tuner: EmbeddingsFineTuner,
    train_inputs: Sequence[FineTuningInput],
    test_inputs: Sequence[FineTuningInput],
    params: FineTuningParams,
    initial_state: Mapping[str, Tensor],
    *,
    validated_steps: int,
    validated_batches_per_epoch: int,
    max_epochs: int,
    weight_share: float,
    common: Mapping[str, Any],
    device: torch.device,
) -> int:
    """Train again from the initial weights on every session, held-out ones included, for as long as the kept
    checkpoint trained, then keep the chosen share of that change; return the optimizer steps taken.

    The held-out sessions were needed to choose how long to train and how much of the change to keep; once chosen,
    holding them out only withholds clicks (a fifth of them by default) from the model that ships. Refitting the
    chosen recipe on all the data is the usual last step of model selection (e.g. Hastie, Tibshirani & Friedman,
    *Elements of Statistical Learning*, 7.10). Steps and the schedule are scaled by the number of batches, so the
    refit sees each session as often as the validated fit did. The validated figures stay the run's metrics: they
    are the held-out estimate of this recipe, and what the tracker and the deployment gate compare.
    """
    fine_tuner.preprocess_inputs([*train_inputs, *test_inputs], test_inputs)
    loader = fine_tuner.train_dataloader_from(pin_memory=common["accelerator"] == "gpu")
    scale = len(loader) / max(1, validated_batches_per_epoch)
    steps = max(1, round(validated_steps * scale))
    fine_tuner.schedule_total_steps = max(steps, round(max_epochs * validated_batches_per_epoch * scale))
    parameters = dict(fine_tuner.model.named_parameters())
    with torch.no_grad():
        for name, initial in initial_state.items():
            parameters[name].copy_(initial.to(device=parameters[name].device, dtype=parameters[name].dtype))
    hook, fine_tuner.on_validation_metrics = fine_tuner.on_validation_metrics, None
    pl.seed_everything(params.seed, workers=True, verbose=False)
    fine_tuner.train()
    try:
        with _quiet_lightning():
            trainer = pl.Trainer(
                max_epochs=max_epochs,
                max_steps=steps,
                limit_val_batches=0,
                num_sanity_val_steps=0,
                enable_checkpointing=False,
                **common,
            )
            trainer.fit(fine_tuner, loader)
    finally:
        fine_tuner.on_validation_metrics = hook
        fine_tuner.schedule_total_steps = None
        fine_tuner.to(device)
        fine_tuner.eval()
    interpolate_weights(fine_tuner.model, initial_state, fine_tuner.trainable_state_on_cpu(), weight_share)
    return int(trainer.global_step)


def _choose_weight_share(
    fine_tuner: EmbeddingsFineTuner,
    initial_state: Mapping[str, Tensor],
    trained: tuple[dict[str, float], dict[str, Tensor], int],
    baseline: dict[str, float],
    params: FineTuningParams,
    test_loader: DataLoader,
    common: Mapping[str, Any],
    device: torch.device,
    validations: dict[float, dict[str, float]],
) -> float:
    """Leave in the model the share of the fine-tuned change that validates best, and return it.

    With ``choose_weight_share`` the shares ``s·c`` (``c`` in ``WEIGHT_SHARE_CHOICES``) and ``s`` itself, for
    ``s = fine_tuned_weight_share``, compete on the retrieval validation (WiSE-FT chooses its mixing coefficient on
    held-out data the same way); otherwise ``s`` is taken as it is. The fully tuned weights (share 1) were validated
    during training already. When choosing, the untrained weights (share 0) compete too, and the mixes are tried
    even when the fully trained weights validated below them: half-way weights can beat both ends. The tracker ranks
    runs by what the stored weights score, so the kept share's validation becomes the result's best metrics.
    """
    trained_metrics, tuned_state, _ = trained
    top = params.fine_tuned_weight_share
    shares = [top * choice for choice in WEIGHT_SHARE_CHOICES] if params.choose_weight_share else []
    shares.append(top)
    if shares == [1.0]:  # not choosing, and the fully trained weights (already in the model) beat base
        return 1.0
    best_share: float | None = 0.0 if params.choose_weight_share else None
    best_metrics: dict[str, float] = dict(baseline) if params.choose_weight_share else {}
    for share in shares:
        if share == 1.0:
            metrics = dict(trained_metrics)
        else:
            interpolate_weights(fine_tuner.model, initial_state, tuned_state, share)
            metrics = _validate_once(fine_tuner, test_loader, common, device)
            validations[share] = metrics
        if best_share is None or _better(metrics, best_metrics, fine_tuner.selection_metric):
            best_share, best_metrics = share, metrics
    assert best_share is not None
    interpolate_weights(fine_tuner.model, initial_state, tuned_state, best_share)
    fine_tuner.best_metrics = dict(best_metrics)
    fine_tuner.eval()
    return best_share


def _better(values: Mapping[str, float], best: Mapping[str, float], metric: str) -> bool:
    if metric == "val_loss":
        return values[metric] < best[metric]
    return values[metric] > best[metric]
