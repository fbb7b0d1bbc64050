"""Retrieval quality against graded judgments: NDCG@10, MRR@10, Recall@100 per query, and paired bootstrap intervals.

Every figure the demo and the benchmarks print comes from here; the formulas themselves are
:mod:`embedding_studio.metrics`, the one definition training's validation uses too.
Retrieval is exact (brute force over L2-normalised vectors with numpy), so a change in a figure is a
change in the model, never in an approximate index.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from embedding_studio.evaluation.beir import BeirDataset
from embedding_studio.metrics import (
    RECALL_CUTOFF,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
)


class _TwoTowerModel(Protocol):
    def encode_queries(self, texts: list[str], batch_size: int = ..., show_progress: bool = ...) -> np.ndarray: ...

    def encode_items(self, texts: list[str], batch_size: int = ..., show_progress: bool = ...) -> np.ndarray: ...


@dataclass
class QueryEvaluation:
    query_id: str
    query: str
    ndcg_at_10: float
    mrr_at_10: float
    recall_at_100: float
    ranked_ids: list[str]


@dataclass
class RetrievalEvaluation:
    """Mean metrics plus the per-query results and rankings (the report shows queries whose top results moved)."""

    per_query: dict[str, QueryEvaluation] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, float]:
        """Means over the evaluated queries: ``{"ndcg@10", "mrr@10", "recall@100"}``."""
        count = len(self.per_query)
        if count == 0:
            return {"ndcg@10": 0.0, "mrr@10": 0.0, "recall@100": 0.0}
        values = self.per_query.values()
        return {
            "ndcg@10": sum(result.ndcg_at_10 for result in values) / count,
            "mrr@10": sum(result.mrr_at_10 for result in values) / count,
            "recall@100": sum(result.recall_at_100 for result in values) / count,
        }


def evaluate_rankings(
    rankings: Mapping[str, Sequence[str]], dataset: BeirDataset, query_ids: Iterable[str] | None = None
) -> RetrievalEvaluation:
    """Score rankings produced elsewhere (for example by the search API) against the dataset's judgments."""
    evaluation = RetrievalEvaluation()
    for query_id in query_ids if query_ids is not None else rankings:
        if query_id not in rankings:
            raise KeyError(f"no ranking for query {query_id!r}")
        ranked = list(rankings[query_id])
        judged = dataset.qrels.get(query_id, {})
        evaluation.per_query[query_id] = QueryEvaluation(
            query_id=query_id,
            query=dataset.queries.get(query_id, ""),
            ndcg_at_10=ndcg_at_k(ranked, judged),
            mrr_at_10=mrr_at_k(ranked, judged),
            recall_at_100=recall_at_k(ranked, judged),
            ranked_ids=ranked[:RECALL_CUTOFF],
        )
    return evaluation


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _encode(model: Any, texts: list[str], side: str, batch_size: int) -> np.ndarray:
    """Encode with our two-tower models, or with any sentence-transformers model (benchmark baselines)."""
    method = getattr(model, f"encode_{side}", None)
    if method is not None:
        return _normalise(method(texts, batch_size=batch_size, show_progress=False))
    return _normalise(model.encode(texts, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True))


def encode_corpus(model: Any, dataset: BeirDataset, batch_size: int = 64) -> np.ndarray:
    """Item embeddings in ``dataset.item_ids`` order, L2-normalised; pass them to several evaluations."""
    texts = [dataset.item_text(item_id) for item_id in dataset.item_ids]
    return _encode(model, texts, "items", batch_size)


def rank_corpus(
    model: Any,
    dataset: BeirDataset,
    query_ids: Sequence[str],
    corpus_embeddings: np.ndarray | None = None,
    top_k: int = RECALL_CUTOFF,
    batch_size: int = 64,
) -> dict[str, list[str]]:
    """The top ``top_k`` item ids per query by cosine similarity, exact."""
    unknown = [query_id for query_id in query_ids if query_id not in dataset.queries]
    if unknown:
        raise KeyError(f"unknown query ids: {', '.join(unknown[:5])}")
    if corpus_embeddings is None:
        corpus_embeddings = encode_corpus(model, dataset, batch_size)
    corpus_embeddings = _normalise(corpus_embeddings)
    if corpus_embeddings.shape[0] != len(dataset.item_ids):
        raise ValueError(
            f"corpus_embeddings has {corpus_embeddings.shape[0]} rows, the corpus {len(dataset.item_ids)} items"
        )
    if not query_ids:
        return {}
    query_embeddings = _encode(model, [dataset.queries[query_id] for query_id in query_ids], "queries", batch_size)
    scores = query_embeddings @ corpus_embeddings.T
    k = min(top_k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    item_ids = dataset.item_ids
    rankings: dict[str, list[str]] = {}
    for row, query_id in enumerate(query_ids):
        # ties broken by corpus position so rankings are deterministic
        order = sorted(top[row], key=lambda column: (-scores[row, column], column))
        rankings[query_id] = [item_ids[column] for column in order]
    return rankings


def evaluate_retrieval_detailed(
    model: Any,
    dataset: BeirDataset,
    query_ids: Sequence[str],
    corpus_embeddings: np.ndarray | None = None,
    batch_size: int = 64,
) -> RetrievalEvaluation:
    rankings = rank_corpus(model, dataset, list(query_ids), corpus_embeddings, RECALL_CUTOFF, batch_size)
    return evaluate_rankings(rankings, dataset, list(query_ids))


def evaluate_retrieval(
    model: Any,
    dataset: BeirDataset,
    query_ids: Sequence[str],
    corpus_embeddings: np.ndarray | None = None,
    batch_size: int = 64,
) -> dict[str, float]:
    """Mean NDCG@10 (linear gain), MRR@10 and Recall@100 of ``model`` over ``query_ids``, exact search.

    ``model`` is a :class:`~embedding_studio.models.TextEmbeddingModel` (``encode_queries``/``encode_items``)
    or a plain sentence-transformers model (``encode``). Pass ``corpus_embeddings`` (from
    :func:`encode_corpus`) to score several query sets without re-encoding the corpus.
    """
    return evaluate_retrieval_detailed(model, dataset, query_ids, corpus_embeddings, batch_size).metrics


@dataclass(frozen=True)
class BootstrapInterval:
    """A mean paired difference (after − before) and its percentile bootstrap confidence interval."""

    mean_difference: float
    low: float
    high: float
    samples: int
    confidence: float = 0.95

    def __str__(self) -> str:
        return f"{self.mean_difference:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly on one side of zero: the change is not explained by which queries ran."""
        return self.low > 0.0 or self.high < 0.0


def paired_bootstrap(
    before: Sequence[float],
    after: Sequence[float],
    samples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> BootstrapInterval:
    """Paired percentile bootstrap over queries of the mean change ``after − before`` of a per-query metric.

    Why paired: both models answer the same queries, and queries differ far more from one another than two
    models differ on one query; resampling the per-query *differences* keeps that pairing, so the interval
    measures the change, not how hard the sampled queries happen to be.

    With d_i = after_i − before_i for the n queries, the estimate is d̄ = (1/n) Σ_i d_i. Each of the B =
    ``samples`` resamples draws n query indexes j_1..j_n uniformly with replacement (the same indexes for both
    models) and takes d̄*_b = (1/n) Σ_k d_{j_k}. The interval is the (α/2, 1 − α/2) percentiles of
    d̄*_1..d̄*_B, α = 1 − ``confidence`` (numpy's linear interpolation between order statistics).
    Deterministic for a ``seed``. Raises ``ValueError`` for sequences of different lengths, no values,
    ``samples`` < 1 or a confidence outside (0, 1).
    """
    if len(before) != len(after):
        raise ValueError(f"paired values need equal lengths: before has {len(before)} values, after has {len(after)}")
    if not before:
        raise ValueError("paired_bootstrap needs at least one pair of values")
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")
    differences = np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)
    count = differences.shape[0]
    rng = np.random.default_rng(seed)
    means = np.empty(samples, dtype=np.float64)
    # In chunks, so 10,000 resamples of a few thousand queries never hold one huge index matrix.
    chunk = max(1, 2_000_000 // count)
    for start in range(0, samples, chunk):
        stop = min(samples, start + chunk)
        indexes = rng.integers(0, count, size=(stop - start, count))
        means[start:stop] = differences[indexes].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.percentile(means, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    return BootstrapInterval(
        mean_difference=float(differences.mean()),
        low=float(low),
        high=float(high),
        samples=samples,
        confidence=confidence,
    )
