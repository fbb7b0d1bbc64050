"""Retrieval validation: how well a model finds what held-out searchers clicked, in a whole candidate pool.

A search user never sees "the same ten results in another order"; they see what the model retrieves from the
catalog. Re-ranking the shown results of held-out sessions moved *against* held-out retrieval quality on two
datasets (issue 11: re-ranking NDCG@10 fell from 0.7368 to 0.7111 while retrieval NDCG@10 rose by 11%), so
the figure that keeps or rejects weights, ranks runs and gates a deployment is this one:

1. the held-out sessions are grouped by query (normalised text); a query's relevance for an item is the share
   of its sessions that clicked it, ``rel(q, d) = #sessions of q clicking d / #sessions of q``;
2. the candidate pool is every item shown in the batch plus a sample of the catalog (``validation_pool_size``):
   the distractors search has to beat;
3. each query is searched over the pool by cosine similarity (an item scores as its best part), and the top 10
   are scored: NDCG@10 (graded by ``rel``), Recall@10 and MRR@10 (clicked = relevant), see
   :func:`~embedding_studio.metrics.retrieval_metrics`.

Every text is tokenized once (the training token caches); a validation only runs the two towers forward.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from embedding_studio.metrics import retrieval_metrics
from embedding_studio.models.frozen_prefix import FrozenPrefixCache

RETRIEVAL_CUTOFF = 10
_ENCODE_BATCH = 64


def best_part_scores(part_scores: Tensor, part_owner: Tensor, item_count: int) -> Tensor:
    """``[B, I]`` from ``part_scores [B, P]``: an item scores as its best part, ``s(q, d) = max_k s(q, part_k(d))``.

    ``part_owner [P]`` is each part's item; an item without a part scores -2, below any cosine."""
    owners = part_owner.unsqueeze(0).expand_as(part_scores)
    empty = torch.full((part_scores.shape[0], item_count), -2.0, dtype=part_scores.dtype, device=part_scores.device)
    return empty.scatter_reduce(1, owners, part_scores, reduce="amax", include_self=False)


@dataclass(frozen=True)
class ValidationQuery:
    """One held-out query: its index in the query token cache and ``relevance`` by pool item index."""

    query_index: int
    relevance: Mapping[int, float]


def group_validation_queries(
    sessions: Sequence[tuple[int, int, frozenset[int]]],
) -> list[ValidationQuery]:
    """Held-out sessions ``(query_group, query_index, clicked pool indexes)`` → one query per group.

    ``rel(q, d)`` is the share of the group's sessions that clicked ``d``; groups without a click are dropped
    (nothing to find). The first session's rendering of the query text stands for the group.
    """
    counts: dict[int, dict[int, int]] = {}
    sessions_of: dict[int, int] = {}
    text_of: dict[int, int] = {}
    for group, query_index, clicked in sessions:
        text_of.setdefault(group, query_index)
        sessions_of[group] = sessions_of.get(group, 0) + 1
        per_item = counts.setdefault(group, {})
        for item in clicked:
            per_item[item] = per_item.get(item, 0) + 1
    queries = []
    for group, per_item in counts.items():
        if per_item:
            total = sessions_of[group]
            queries.append(
                ValidationQuery(text_of[group], {item: count / total for item, count in sorted(per_item.items())})
            )
    return queries


@dataclass
class PoolEmbeddings:
    """One validation's embeddings: every pool part, and every held-out query (rows in ``query_indices`` order)."""

    parts: Tensor  # [P, dim]
    queries: Tensor  # [Q_all, dim]


class RetrievalValidator:
    """Scores a two-tower model on held-out queries searched over a candidate pool.

    ``pool_parts[i]`` lists the part indexes (into ``parts``) of pool item ``i``; ``queries`` and ``parts``
    are token caches with a ``pad(indices)`` method and ``lengths`` (``fine_tuner.TokenCache``);
    ``query_indices`` are all the queries of held-out sessions (the validation queries among them).

    A validation embeds the pool and the queries once (:meth:`embed`); every validation figure, the retrieval
    metrics, the re-ranking of shown results and the validation loss, is read off those embeddings
    (:meth:`item_scores`), so no item is encoded twice however many sessions showed it.
    """

    def __init__(
        self,
        queries: Any,
        parts: Any,
        pool_parts: Sequence[Sequence[int]],
        validation_queries: Sequence[ValidationQuery],
        query_indices: Sequence[int] = (),
        cutoff: int = RETRIEVAL_CUTOFF,
        frozen_prefix_cache: FrozenPrefixCache | None = None,
    ) -> None:
        self.queries = queries
        self.parts = parts
        self.validation_queries = list(validation_queries)
        self.cutoff = cutoff
        self.pool_size = len(pool_parts)
        self.part_indices = [part for item_parts in pool_parts for part in item_parts]
        self.part_owner = torch.tensor(
            [item for item, item_parts in enumerate(pool_parts) for _ in item_parts], dtype=torch.long
        )
        self.query_indices = sorted({*query_indices, *(query.query_index for query in self.validation_queries)})
        self.query_row = {query_index: row for row, query_index in enumerate(self.query_indices)}
        relevance = torch.zeros(len(self.validation_queries), self.pool_size, dtype=torch.float32)
        for row, query in enumerate(self.validation_queries):
            for item, value in query.relevance.items():
                relevance[row, item] = value
        self.relevance = relevance
        #: the frozen blocks' states for this pool's batches; one handed in may hold an earlier fit's, which are
        #: reused only where its frozen weights and batches are these
        self.frozen_prefix_cache = frozen_prefix_cache if frozen_prefix_cache is not None else FrozenPrefixCache()

    @torch.no_grad()
    def embed(self, model: Any, device: torch.device) -> PoolEmbeddings:
        """The pool and the held-out queries embedded by ``model`` as it is now.

        Every validation of a fit, and every weight share scored, encodes the same token batches; a model that
        trains only its top blocks reuses what its frozen blocks gave them the first time (exact, see
        :mod:`embedding_studio.models.frozen_prefix`), so a validation runs only the blocks that train."""
        reusing = getattr(model, "reusing_frozen_prefix", None)
        scope = reusing(self.frozen_prefix_cache) if reusing is not None else contextlib.nullcontext()
        with scope:
            return PoolEmbeddings(
                parts=self._encode(model.forward_items, self.parts, self.part_indices, device),
                queries=self._encode(model.forward_queries, self.queries, self.query_indices, device),
            )

    def item_scores(self, embeddings: PoolEmbeddings, query_indices: Tensor) -> Tensor:
        """``[B, I]`` cosine of each query with each pool item, an item scoring as its best part (float32)."""
        device = embeddings.parts.device
        rows = torch.tensor([self.query_row[int(index)] for index in query_indices], device=device)
        with torch.autocast(device_type=device.type, enabled=False):
            part_scores = embeddings.queries[rows] @ embeddings.parts.T  # [B, P]
        return best_part_scores(part_scores, self.part_owner.to(device), self.pool_size)

    def metrics(self, embeddings: PoolEmbeddings) -> dict[str, float]:
        """``val_ndcg_at_10``, ``val_recall_at_10`` and ``val_mrr`` (means over the held-out queries)."""
        if not self.validation_queries or not self.part_indices:
            return {}
        device = embeddings.parts.device
        query_indices = torch.tensor([query.query_index for query in self.validation_queries])
        per_query = retrieval_metrics(
            self.item_scores(embeddings, query_indices), self.relevance.to(device), k=self.cutoff
        )
        evaluated = per_query.pop("evaluated").float()
        count = evaluated.sum().clamp_min(1.0)
        means = {name: float((values.float() * evaluated).sum() / count) for name, values in per_query.items()}
        return {
            f"val_ndcg_at_{self.cutoff}": means[f"ndcg_at_{self.cutoff}"],
            f"val_recall_at_{self.cutoff}": means[f"recall_at_{self.cutoff}"],
            "val_mrr": means["mrr"],
        }

    @staticmethod
    def _encode(forward: Any, cache: Any, indices: Sequence[int], device: torch.device) -> Tensor:
        """``[len(indices), dim]`` float32 embeddings, in batches of similar length (little padding).

        Float32 even on a GPU: bf16 embeddings move a cosine in steps of about 0.004, more than the difference
        between two checkpoints on many queries."""
        order = sorted(range(len(indices)), key=lambda position: int(cache.lengths[indices[position]]))
        output: Tensor | None = None
        for start in range(0, len(order), _ENCODE_BATCH):
            chosen = order[start : start + _ENCODE_BATCH]
            tokens = {key: value.to(device) for key, value in cache.pad([indices[i] for i in chosen]).items()}
            with torch.autocast(device_type=device.type, enabled=False):
                embeddings = forward(tokens).float()  # [batch, dim]
            if output is None:
                output = torch.empty(len(indices), embeddings.shape[1], dtype=torch.float32, device=device)
            output[torch.tensor(chosen, device=device)] = embeddings
        if output is None:
            return torch.empty(0, 0, dtype=torch.float32, device=device)
        return output
