"""From sessions to training signal: positives, negatives and how much to trust each of them.

Rules (``r`` is the 1-based rank an item was shown at, ``r_d`` the rank of the deepest click):

* a clicked result is a positive; a shown-but-not-clicked one is a negative;
* a session the user marked irrelevant makes every shown result a negative (confidence 1);
* a session with neither clicks nor an irrelevance mark carries no label and yields no row (it still
  counts as impressions when propensities are estimated);
* an item some other session of the same query clicked is never a negative of that query: the skip is
  the noisier signal (the user may have found what they wanted above it, or skimmed past it), and
  pushing it away in one session while pulling it close in another only adds noise.

Weights, the ``w`` of the loss formulas:

* positive: ``w_p = min(1 / η(r), max_ips_weight) / Z`` with inverse propensity weighting on, else 1.
  A click deep in the list is stronger evidence because few users get that far; ``Z`` is the mean
  of the clipped ``1 / η`` over the training positives, so switching IPS on does not change the
  effective learning rate.
* negative shown above the deepest click (``r < r_d``): ``c_n = 1``. The user examined it on the way
  to a click and passed it over (cascade assumption).
* negative shown below the deepest click (``r > r_d``): ``c_n = ½ · η(r) / η(r_d)``: a non-click only
  says something if the result was looked at, which gets less likely further down.

``η(r)`` is the examination propensity of rank ``r`` relative to rank 1: estimated from the
clickstream itself with a position-based click model when IPS is on, otherwise the fixed prior
``η(r) = 1 / log2(1 + r)`` (the DCG discount).

Position-based model (PBM): ``P(click at r on d for q) = η(r) · γ(q, d)``. The estimate starts from
the ratio method (click-through rate by rank, normalised to rank 1, unbiased when what is shown at
each rank is equally attractive) and refines it by expectation-maximisation over the (query, item)
pairs, which separates position from relevance where the same item was shown to a query at
different ranks (Chuklin et al., *Click Models for Web Search*, 2015, ch. 4).
"""

from __future__ import annotations

import math
from collections.abc import Container, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from embedding_studio.clickstream.types import FineTuningInput
from embedding_studio.finetuning.query_retriever import QueryRetriever, TextQueryRetriever, normalize_query_text


@dataclass(frozen=True)
class PropensityCurve:
    """Examination propensity by rank, ``propensities[r - 1]``, with ``propensities[0] == 1``.

    Ranks past the curve reuse its last value.
    """

    propensities: tuple[float, ...]

    def propensity(self, rank: int) -> float:
        if rank < 1:
            raise ValueError(f"ranks start at 1, got {rank}")
        return self.propensities[min(rank, len(self.propensities)) - 1]

    def inverse_weight(self, rank: int, max_weight: float) -> float:
        return min(1.0 / max(self.propensity(rank), 1e-12), max_weight)


def prior_propensities(max_rank: int = 100) -> PropensityCurve:
    """The fixed curve used when IPS is off: ``η(r) = 1 / log2(1 + r)``."""
    return PropensityCurve(tuple(1.0 / math.log2(1.0 + rank) for rank in range(1, max_rank + 1)))


def estimate_propensities(
    inputs: Sequence[FineTuningInput],
    query_retriever: QueryRetriever | None = None,
    max_rank: int = 20,
    iterations: int = 100,
    method: str = "em",
    min_impressions: int = 10,
    floor: float = 1e-3,
) -> PropensityCurve:
    """Estimate the PBM examination curve from the sessions' impressions and clicks.

    Every shown result is an impression; ranks past ``max_rank`` share the last bucket. ``method`` is
    ``"ratio"`` (click-through rate by rank over that of rank 1) or ``"em"`` (the ratio estimate
    refined by EM). Ranks with fewer than ``min_impressions`` impressions, or no click at all, take
    the value of the rank above: there is not enough evidence to say anything about them.
    """
    if method not in ("em", "ratio"):
        raise ValueError(f"unknown propensity estimation method {method!r}; expected 'em' or 'ratio'")
    retriever = query_retriever or TextQueryRetriever()
    pair_ids: dict[tuple[str, str], int] = {}
    pairs: list[int] = []
    ranks: list[int] = []
    clicks: list[float] = []
    for fine_tuning_input, query in zip(inputs, retriever.get_queries(inputs), strict=True):
        key = normalize_query_text(query)
        clicked = set(fine_tuning_input.events)
        for position, item_id in enumerate(fine_tuning_input.results, 1):
            rank = fine_tuning_input.ranks.get(item_id, position)
            pairs.append(pair_ids.setdefault((key, item_id), len(pair_ids)))
            ranks.append(min(rank, max_rank) - 1)
            clicks.append(1.0 if item_id in clicked else 0.0)
    if not clicks or sum(clicks) == 0:
        return PropensityCurve((1.0,))

    rank_index = np.asarray(ranks, dtype=np.int64)
    pair_index = np.asarray(pairs, dtype=np.int64)
    click = np.asarray(clicks, dtype=np.float64)
    impressions = np.bincount(rank_index, minlength=max_rank).astype(np.float64)
    rank_clicks = np.bincount(rank_index, weights=click, minlength=max_rank)
    supported = (impressions >= min_impressions) & (rank_clicks > 0)
    if not supported[0]:
        # Without clicks at rank 1 nothing can be normalised to it; fall back to all ranks equal.
        return PropensityCurve((1.0,))

    click_rate = np.where(impressions > 0, rank_clicks / np.maximum(impressions, 1.0), 0.0)
    examination = np.clip(click_rate / click_rate[0], floor, 1.0)
    if method == "em":
        pair_impressions = np.bincount(pair_index).astype(np.float64)
        # Rank 1 starts fully examined, which fixes the scale PBM leaves free (η·γ is all clicks see).
        attractiveness = np.clip(
            np.bincount(pair_index, weights=click / examination[rank_index]) / pair_impressions, 0.01, 0.99
        )
        for _ in range(iterations):
            eta = examination[rank_index]
            gamma = attractiveness[pair_index]
            denominator = np.maximum(1.0 - eta * gamma, 1e-12)
            examined = click + (1.0 - click) * eta * (1.0 - gamma) / denominator
            relevant = click + (1.0 - click) * (1.0 - eta) * gamma / denominator
            examination = np.clip(
                np.bincount(rank_index, weights=examined, minlength=max_rank) / np.maximum(impressions, 1.0), floor, 1.0
            )
            attractiveness = np.clip(np.bincount(pair_index, weights=relevant) / pair_impressions, 1e-4, 1.0 - 1e-4)
        examination = np.clip(examination / examination[0], floor, 1.0)

    curve: list[float] = []
    for rank in range(max_rank):
        curve.append(float(examination[rank]) if supported[rank] or rank == 0 else curve[-1])
    return PropensityCurve(tuple(curve))


@dataclass(frozen=True)
class SessionFeatures:
    """One labelled session, compact: the query text, item ids, and weight tensors aligned with them."""

    session_id: str
    query: str
    positive_ids: tuple[str, ...]
    negative_ids: tuple[str, ...]
    positive_weights: Tensor
    negative_weights: Tensor
    is_irrelevant: bool


class FeatureExtractor:
    """Turns inputs into :class:`SessionFeatures`; ``fit`` learns the propensities from the training inputs."""

    def __init__(
        self,
        query_retriever: QueryRetriever | None = None,
        use_ips: bool = True,
        max_ips_weight: float = 10.0,
        positives_per_query: int = 4,
        negatives_per_query: int = 16,
        propensity_method: str = "em",
    ) -> None:
        if max_ips_weight < 1.0:
            raise ValueError(f"max_ips_weight must be at least 1, got {max_ips_weight}")
        self.query_retriever: QueryRetriever = query_retriever or TextQueryRetriever()
        self.use_ips = use_ips
        self.max_ips_weight = max_ips_weight
        self.positives_per_query = positives_per_query
        self.negatives_per_query = negatives_per_query
        self.propensity_method = propensity_method
        self.propensities: PropensityCurve = prior_propensities()
        self.positive_normaliser = 1.0
        self.clicked_by_query: dict[str, set[str]] = {}

    def fit(self, inputs: Sequence[FineTuningInput]) -> FeatureExtractor:
        self.clicked_by_query = {}
        self.remember_clicks(inputs)
        if self.use_ips:
            self.propensities = estimate_propensities(inputs, self.query_retriever, method=self.propensity_method)
            weights = [
                self.propensities.inverse_weight(_rank(each, item_id), self.max_ips_weight)
                for each in inputs
                if not each.is_irrelevant
                for item_id in each.events
            ]
            self.positive_normaliser = float(np.mean(weights)) if weights else 1.0
        else:
            self.propensities = prior_propensities()
            self.positive_normaliser = 1.0
        return self

    def remember_clicks(self, inputs: Sequence[FineTuningInput]) -> None:
        """Note which items users clicked for each query, so no session of that query makes them negatives."""
        for fine_tuning_input, query in zip(inputs, self.query_retriever.get_queries(inputs), strict=True):
            if fine_tuning_input.events and not fine_tuning_input.is_irrelevant:
                self.clicked_by_query.setdefault(normalize_query_text(query), set()).update(fine_tuning_input.events)

    def extract(
        self, inputs: Sequence[FineTuningInput], known_items: Container[str] | None = None
    ) -> list[SessionFeatures]:
        """Labelled sessions; results missing from ``known_items`` (not loaded) are left out."""
        rows = []
        for fine_tuning_input, query in zip(inputs, self.query_retriever.get_queries(inputs), strict=True):
            row = self.extract_one(fine_tuning_input, query, known_items)
            if row is not None:
                rows.append(row)
        return rows

    def extract_one(
        self, fine_tuning_input: FineTuningInput, query: str, known_items: Container[str] | None = None
    ) -> SessionFeatures | None:
        """The features of one session (its query already rendered), or None when it carries no label."""
        shown = [item_id for item_id in dict.fromkeys(fine_tuning_input.results)]
        if known_items is not None:
            shown = [item_id for item_id in shown if item_id in known_items]
        ranked = sorted(shown, key=lambda item_id: _rank(fine_tuning_input, item_id))
        clicked = set(fine_tuning_input.events)
        clicked_elsewhere = self.clicked_by_query.get(normalize_query_text(query), set()) - clicked

        if fine_tuning_input.is_irrelevant:
            positives: list[tuple[str, float]] = []
            negatives = [(item_id, 1.0) for item_id in ranked if item_id not in clicked_elsewhere]
        else:
            positives = [
                (item_id, self._positive_weight(_rank(fine_tuning_input, item_id)))
                for item_id in ranked
                if item_id in clicked
            ]
            if not positives:
                return None
            deepest = max(_rank(fine_tuning_input, item_id) for item_id, _ in positives)
            negatives = [
                (item_id, self._negative_confidence(_rank(fine_tuning_input, item_id), deepest))
                for item_id in ranked
                if item_id not in clicked and item_id not in clicked_elsewhere
            ]
        # Strongest evidence first; ties keep the shown order (sorted is stable).
        positives = sorted(positives, key=lambda pair: -pair[1])[: self.positives_per_query]
        negatives = sorted(negatives, key=lambda pair: -pair[1])[: self.negatives_per_query]
        if not positives and not negatives:
            return None
        return SessionFeatures(
            session_id=fine_tuning_input.session_id,
            query=query,
            positive_ids=tuple(item_id for item_id, _ in positives),
            negative_ids=tuple(item_id for item_id, _ in negatives),
            positive_weights=torch.tensor([weight for _, weight in positives], dtype=torch.float32),
            negative_weights=torch.tensor([weight for _, weight in negatives], dtype=torch.float32),
            is_irrelevant=fine_tuning_input.is_irrelevant,
        )

    def _positive_weight(self, rank: int) -> float:
        if not self.use_ips:
            return 1.0
        return self.propensities.inverse_weight(rank, self.max_ips_weight) / self.positive_normaliser

    def _negative_confidence(self, rank: int, deepest_click_rank: int) -> float:
        if rank < deepest_click_rank:
            return 1.0
        ratio = self.propensities.propensity(rank) / self.propensities.propensity(deepest_click_rank)
        return float(min(1.0, 0.5 * ratio))


def _rank(fine_tuning_input: FineTuningInput, item_id: str) -> int:
    rank = fine_tuning_input.ranks.get(item_id)
    if rank is None:
        rank = fine_tuning_input.results.index(item_id) + 1
    return rank
