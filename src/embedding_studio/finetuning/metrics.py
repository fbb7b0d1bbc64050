"""How well a model re-ranks what users were shown, judged by what they clicked.

Two flavours share the formulas:

* batched tensor metrics for validation (:func:`rerank_metrics`): the shown results of each test
  session are re-ranked by the model's scores and the clicked ones are the relevant ones;
* plain functions on a ranked id list and a relevance dict (:func:`ndcg_at_k`, :func:`mrr_at_k`,
  :func:`recall_at_k`) for evaluation code over a whole corpus.

With ``rank(d)`` the 1-based position of ``d`` after sorting by score (ties keep the shown order),
``R`` the relevant (clicked) items, ``rel(d)`` the graded relevance:

* ``RR = 1 / min_{d∈R} rank(d)``; MRR is its mean over sessions with at least one click.
* ``DCG@k = Σ_{d: rank(d)≤k} rel(d) / log2(1 + rank(d))``; ``NDCG@k = DCG@k / IDCG@k``, IDCG@k the
  DCG of the ideal order (linear gain, as ``pytrec_eval``'s ``ndcg_cut`` and BEIR use).
* ``Recall@k = |{d ∈ R: rank(d) ≤ k}| / |R|``.

Sessions without a click have no relevant item and are left out of every mean (``evaluated`` mask).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor


def rerank_ranks(scores: Tensor, valid_mask: Tensor) -> Tensor:
    """``[B, S]`` 1-based rank of each shown result among the valid ones of its row, best score first."""
    scores = scores.float()
    shown = scores.shape[1]
    higher = scores.unsqueeze(1) > scores.unsqueeze(2)  # [b, j, k]: result k beats result j
    earlier = torch.ones(shown, shown, dtype=torch.bool, device=scores.device).tril(-1)  # k < j
    tied_earlier = (scores.unsqueeze(1) == scores.unsqueeze(2)) & earlier
    beaten_by = (higher | tied_earlier) & valid_mask.unsqueeze(1)
    return beaten_by.sum(dim=2) + 1


def rerank_metrics(scores: Tensor, valid_mask: Tensor, relevant_mask: Tensor, k: int = 10) -> dict[str, Tensor]:
    """Per-session ``mrr``, ``ndcg_at_{k}``, ``recall_at_{k}`` (binary gains) and the ``evaluated`` mask.

    ``scores``, ``valid_mask`` (a shown result, not padding) and ``relevant_mask`` (clicked) are ``[B, S]``.
    Values of sessions that are not evaluated are 0; average with :func:`mean_over_evaluated`.
    """
    relevant = relevant_mask & valid_mask
    ranks = rerank_ranks(scores, valid_mask).float()
    relevant_count = relevant.sum(dim=1)
    evaluated = relevant_count > 0

    reciprocal = torch.where(relevant, 1.0 / ranks, torch.zeros_like(ranks)).amax(dim=1)

    in_top = relevant & (ranks <= k)
    dcg = torch.where(in_top, 1.0 / torch.log2(1.0 + ranks), torch.zeros_like(ranks)).sum(dim=1)
    positions = torch.arange(1, k + 1, device=scores.device, dtype=torch.float32)
    ideal_prefix = torch.cumsum(1.0 / torch.log2(1.0 + positions), dim=0)
    ideal = ideal_prefix[(relevant_count.clamp(1, k) - 1)]
    ndcg = torch.where(evaluated, dcg / ideal, torch.zeros_like(dcg))

    recall = in_top.sum(dim=1).float() / relevant_count.clamp_min(1).float()
    return {
        "mrr": reciprocal,
        f"ndcg_at_{k}": ndcg,
        f"recall_at_{k}": recall,
        "evaluated": evaluated,
    }


def mean_over_evaluated(per_session: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Average each metric over the evaluated sessions (0 when none), still on the device."""
    evaluated = per_session["evaluated"].float()
    count = evaluated.sum().clamp_min(1.0)
    return {
        name: (values.float() * evaluated).sum() / count for name, values in per_session.items() if name != "evaluated"
    }


def dcg_at_k(ranked_ids: Sequence[str], relevance: Mapping[str, float], k: int) -> float:
    """``Σ_{i≤k} rel(d_i) / log2(1 + i)``."""
    return sum(
        relevance.get(item_id, 0.0) / math.log2(position + 1) for position, item_id in enumerate(ranked_ids[:k], 1)
    )


def ndcg_at_k(ranked_ids: Sequence[str], relevance: Mapping[str, float], k: int = 10) -> float:
    """``DCG@k / IDCG@k`` with linear gains; 0 when nothing is relevant."""
    ideal_gains = sorted((gain for gain in relevance.values() if gain > 0), reverse=True)[:k]
    ideal = sum(gain / math.log2(position + 1) for position, gain in enumerate(ideal_gains, 1))
    if ideal == 0:
        return 0.0
    return dcg_at_k(_deduplicated(ranked_ids), relevance, k) / ideal


def mrr_at_k(ranked_ids: Sequence[str], relevance: Mapping[str, float], k: int = 10) -> float:
    """``1 / rank`` of the first relevant (gain > 0) item within the top ``k``; 0 when none is there."""
    for position, item_id in enumerate(_deduplicated(ranked_ids)[:k], 1):
        if relevance.get(item_id, 0.0) > 0:
            return 1.0 / position
    return 0.0


def recall_at_k(ranked_ids: Sequence[str], relevance: Mapping[str, float], k: int = 100) -> float:
    """Share of the relevant (gain > 0) items found in the top ``k``; 0 when nothing is relevant."""
    relevant = {item_id for item_id, gain in relevance.items() if gain > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(_deduplicated(ranked_ids)[:k])) / len(relevant)


def _deduplicated(ranked_ids: Sequence[str]) -> list[str]:
    """An item returned twice (e.g. two of its parts) counts at its best position only."""
    return list(dict.fromkeys(ranked_ids))


def retrieval_metrics(item_scores: Tensor, relevance: Tensor, k: int = 10) -> dict[str, Tensor]:
    """Per-query ``mrr``, ``ndcg_at_{k}``, ``recall_at_{k}`` of a search over a whole candidate pool.

    ``item_scores [Q, I]``: each query's score for each pool item; ``relevance [Q, I]``: its graded relevance
    (0 for irrelevant). The top ``k`` by score are what a searcher sees (``torch.topk``; ties in index order):

    * ``DCG@k = Σ_{r≤k} rel(d_r) / log2(1 + r)`` and ``NDCG@k = DCG@k / IDCG@k`` (the ideal order's DCG);
    * ``RR@k = 1 / r`` of the first ``d_r`` with ``rel > 0`` in the top k, 0 when there is none;
    * ``Recall@k = |{d_r: r ≤ k, rel(d_r) > 0}| / |{d: rel(d) > 0}|``.

    Queries without a relevant item have ``evaluated`` False and 0 everywhere.
    """
    relevance = relevance.float()
    depth = min(k, item_scores.shape[1])
    top = torch.topk(item_scores.float(), depth, dim=1).indices  # [Q, depth]
    gains = relevance.gather(1, top)  # [Q, depth]
    discounts = 1.0 / torch.log2(torch.arange(2, depth + 2, device=item_scores.device, dtype=torch.float32))
    dcg = (gains * discounts).sum(dim=1)
    ideal = (torch.topk(relevance, depth, dim=1).values * discounts).sum(dim=1)
    relevant_count = (relevance > 0).sum(dim=1)
    evaluated = relevant_count > 0
    hits = gains > 0
    first_hit = torch.where(hits.any(dim=1), hits.float().argmax(dim=1) + 1, torch.zeros_like(relevant_count))
    reciprocal = torch.where(first_hit > 0, 1.0 / first_hit.clamp_min(1).float(), torch.zeros_like(dcg))
    return {
        "mrr": reciprocal,
        f"ndcg_at_{k}": torch.where(evaluated, dcg / ideal.clamp_min(1e-12), torch.zeros_like(dcg)),
        f"recall_at_{k}": hits.sum(dim=1).float() / relevant_count.clamp_min(1).float(),
        "evaluated": evaluated,
    }
