"""Ranking metrics, the one definition every figure uses: validation while training, the deployment gate, the
offline evaluation of the demo and the benchmarks.

Two flavours share the formulas:

* batched tensor metrics, kept on the device: :func:`rerank_metrics` (each held-out session's shown results
  re-ranked by the model's scores, the clicked ones relevant) and :func:`retrieval_metrics` (each query searched
  over a whole candidate pool, graded relevance);
* plain functions on a ranked id list and a relevance mapping (:func:`ndcg_at_k`, :func:`mrr_at_k`,
  :func:`recall_at_k`) for evaluation over a corpus or a search engine's answers.

With ``rank(d)`` the 1-based position of ``d`` in the ranking (after sorting by score; ties keep the shown or
index order), ``R`` the relevant items (gain ``rel(d) > 0``), ``rel(d)`` the graded relevance (judgment grades,
or the share of a query's sessions that clicked ``d``; a grade of 0 or below, or no judgment, gains 0):

* ``DCG@k = Σ_{d: rank(d)≤k} rel(d) / log2(1 + rank(d))``; ``NDCG@k = DCG@k / IDCG@k``, IDCG@k the DCG of the
  ideal order of every judged item (linear gain, as ``pytrec_eval``'s ``ndcg_cut`` and BEIR use, so figures
  compare with published ones);
* ``RR@k = 1 / min_{d∈R} rank(d)`` when that rank is at most ``k``, else 0; MRR is its mean over queries;
* ``Recall@k = |{d ∈ R: rank(d) ≤ k}| / |R|``.

Queries (sessions) without a relevant item score 0 everywhere; the tensor metrics mark them in an ``evaluated``
mask so means leave them out. A ranked id list is scored as given: it should name each item once (search answers
do, by an item's best part), since a repeated id takes a position again.

This module sits below every package (it imports none of them): ``finetuning`` and ``evaluation`` are siblings and
both use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

NDCG_CUTOFF = 10
MRR_CUTOFF = 10
RECALL_CUTOFF = 100


# ----- on tensors, batched ------------------------------------------------------------------------------------
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


# ----- on ranked id lists -----------------------------------------------------------------------------------------
def dcg(gains: Sequence[float]) -> float:
    """``DCG = Σ_{i=1..n} g_i / log2(i + 1)`` of gains in ranked order, linear gain (as BEIR's pytrec_eval)."""
    return float(sum(gain / math.log2(position + 1) for position, gain in enumerate(gains, start=1)))


def ndcg_at_k(ranked_ids: Sequence[str], relevance: Mapping[str, float], k: int = NDCG_CUTOFF) -> float:
    """``NDCG@k = DCG@k(ranking) / DCG@k(ideal ranking)``, linear gain ``max(0, rel(d))`` (unjudged: 0).

    The ideal ranking sorts every judged item by gain, whether or not it was retrieved. A query with no positive
    gain scores 0.
    """
    gains = [max(0.0, relevance.get(item_id, 0.0)) for item_id in ranked_ids[:k]]
    ideal = dcg(sorted((gain for gain in relevance.values() if gain > 0), reverse=True)[:k])
    return dcg(gains) / ideal if ideal > 0 else 0.0


def mrr_at_k(ranked_ids: Sequence[str], relevance: Mapping[str, float], k: int = MRR_CUTOFF) -> float:
    """``RR@k = 1 / rank`` of the first relevant item (gain > 0) within the top ``k``; 0 when none is there."""
    for position, item_id in enumerate(ranked_ids[:k], 1):
        if relevance.get(item_id, 0.0) > 0:
            return 1.0 / position
    return 0.0


def recall_at_k(ranked_ids: Sequence[str], relevance: Mapping[str, float], k: int = RECALL_CUTOFF) -> float:
    """``Recall@k``: the share of the relevant items (gain > 0) found in the top ``k``; 0 when none is relevant."""
    relevant = {item_id for item_id, gain in relevance.items() if gain > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked_ids[:k])) / len(relevant)
