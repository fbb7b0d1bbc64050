"""Losses that turn clicks into gradients, on a batch of query-to-candidate similarities.

Every loss reads a :class:`SimilarityBatch`: the cosine similarity of each query of the batch to
each candidate item of the batch (``U`` unique items; an item with several parts scores by its best
part), and per query the indexes of its positives and hard negatives into those candidates, padded
with ``-1``, with their weights (confidence × inverse propensity, see ``features``). Padding carries
weight 0 and never reaches a sum. The losses are written on whole tensors: no python loop over pairs
and no ``.item()``, so a step never waits on the device.

Sessions the user marked irrelevant have negatives but no positive. They add, to every loss,
``L_irr = mean_{n} w_n · max(0, s(q, n) − c)``: with nothing to rank them under, their results are
pushed below the cosine ceiling ``c`` (``irrelevant_ceiling``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from embedding_studio.finetuning.params import FineTuningParams

_MASKED_LOGIT = -1.0e9


@dataclass
class SimilarityBatch:
    """Shapes: ``similarities [B, U]``, ``positive_index/weights [B, P]``, ``negative_index/weights [B, N]``.

    ``query_groups [B]`` (optional) gives rows of the same query the same id, so one session's click
    is not used as an in-batch negative of another session of the same query.
    """

    similarities: Tensor
    positive_index: Tensor
    positive_weights: Tensor
    negative_index: Tensor
    negative_weights: Tensor
    query_groups: Tensor | None = None


def _gather(similarities: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
    valid = index >= 0
    return similarities.gather(1, index.clamp_min(0)), valid


def _row_membership(index: Tensor, weights: Tensor, candidate_count: int) -> Tensor:
    """``[B, U]`` weight of each candidate in each row (max when listed twice); padding goes to a spare column."""
    rows = index.shape[0]
    spare = torch.full_like(index, candidate_count)
    target = torch.where(index >= 0, index, spare)
    membership = torch.zeros(rows, candidate_count + 1, dtype=weights.dtype, device=weights.device)
    membership = membership.scatter_reduce(1, target, weights, reduce="amax", include_self=True)
    return membership[:, :candidate_count]


def irrelevant_session_loss(batch: SimilarityBatch, ceiling: float) -> Tensor:
    """``L_irr = Σ_{rows without positives} Σ_n w_n · max(0, s(q,n) − ceiling) / #those negatives``."""
    similarities = batch.similarities.float()
    negative_similarities, negative_valid = _gather(similarities, batch.negative_index)
    has_positive = (batch.positive_index >= 0).any(dim=1, keepdim=True)
    mask = negative_valid & ~has_positive
    penalty = torch.relu(negative_similarities - ceiling) * batch.negative_weights.float() * mask
    return penalty.sum() / mask.sum().clamp_min(1)


class MarginRankingLoss(nn.Module):
    """The seed's loss: every clicked result should beat every skipped one of its session by a margin.

    ``L = (1/|pairs|) Σ_{q} Σ_{(p, n)} w_p · w_n · max(0, m − (s(q,p) − s(q,n))) + L_irr``

    over the pairs of a positive ``p`` and a negative ``n`` of the same session, ``s`` the cosine
    similarity, ``m`` the margin, ``w`` the weights of the features.

    Args:
        margin: ``m``, in cosine units; a pair already ordered by more than ``m`` adds nothing.
        irrelevant_ceiling: ``c`` of ``L_irr`` (see the module docstring).

    Inputs (one :class:`SimilarityBatch`):

    +--------------------------------------------+----------------------------------------------------------+
    | field                                      | what it holds                                            |
    +============================================+==========================================================+
    | ``similarities [B, U]``                    | cosine of each session's query with each batch item      |
    +--------------------------------------------+----------------------------------------------------------+
    | ``positive_index, positive_weights [B, P]``| clicked items (index into ``U``, ``-1`` pads) and weights|
    +--------------------------------------------+----------------------------------------------------------+
    | ``negative_index, negative_weights [B, N]``| shown-not-clicked items and their confidences            |
    +--------------------------------------------+----------------------------------------------------------+

    Requirements: sessions with skipped results (``negatives_per_query > 0``); a session without a
    negative adds nothing but ``L_irr``.

    References:
        - Joachims, "Optimizing Search Engines using Clickthrough Data", KDD 2002 (skips above a click as
          pairwise preferences).
        - The seed design, ``../shared/seed/data-flow-in-fine-tuning.md``.

    Example::

        >>> import torch
        >>> batch = SimilarityBatch(
        ...     similarities=torch.tensor([[0.9, 0.8]]),          # one query, two shown items
        ...     positive_index=torch.tensor([[0]]), positive_weights=torch.tensor([[1.0]]),
        ...     negative_index=torch.tensor([[1]]), negative_weights=torch.tensor([[1.0]]),
        ... )
        >>> round(MarginRankingLoss(margin=0.2)(batch).item(), 4)  # 0.2 − (0.9 − 0.8)
        0.1
    """

    def __init__(self, margin: float = 0.2, irrelevant_ceiling: float = 0.3) -> None:
        super().__init__()
        self.margin = margin
        self.irrelevant_ceiling = irrelevant_ceiling

    def forward(self, batch: SimilarityBatch) -> Tensor:
        similarities = batch.similarities.float()
        positive_similarities, positive_valid = _gather(similarities, batch.positive_index)  # [B, P]
        negative_similarities, negative_valid = _gather(similarities, batch.negative_index)  # [B, N]
        # [B, P, N]: every positive against every negative of its own row
        hinge = torch.relu(self.margin - (positive_similarities.unsqueeze(2) - negative_similarities.unsqueeze(1)))
        pair_weights = (batch.positive_weights.float() * positive_valid).unsqueeze(2) * (
            batch.negative_weights.float() * negative_valid
        ).unsqueeze(1)
        pair_count = (positive_valid.unsqueeze(2) & negative_valid.unsqueeze(1)).sum()
        pair_loss = (hinge * pair_weights).sum() / pair_count.clamp_min(1)
        return pair_loss + irrelevant_session_loss(batch, self.irrelevant_ceiling)


class InfoNCELoss(nn.Module):
    """Contrastive loss: the click must win a softmax over its session's skips and the batch's other clicks.

    For each positive ``p`` of query ``q`` (``τ`` the temperature, ``s`` the cosine):

    ``ℓ(q,p) = −log( e^{s(q,p)/τ} / (e^{s(q,p)/τ} + Σ_{n∈hard(q)} c_n·e^{s(q,n)/τ} + Σ_{p'∈batch(q)} e^{s(q,p')/τ}) )``

    ``hard(q)``: the shown-but-not-clicked results of the session, each counted with its confidence
    ``c_n`` (1 for a result skipped above a click, as in the plain formula; less for results the user
    probably never examined). ``batch(q)``: the positives of the other queries of the batch, minus the
    positives of ``q`` itself and of rows with the same query. An item in both sets counts once, with
    the larger coefficient.

    ``L = (1/|positives|) Σ_{(q,p)} w_p · ℓ(q,p) + L_irr``, ``w_p`` the positive's (IPS) weight.

    With ``symmetric`` the clicked item must also pick its query out of the batch's queries (CLIP's and
    sentence-transformers' ``MultipleNegativesSymmetricRankingLoss``' second direction):

    ``ℓ'(q,p) = −log( e^{s(q,p)/τ} / (e^{s(q,p)/τ} + Σ_{q'∈batch(p)} e^{s(q',p)/τ}) )``

    and ``L = (1/|positives|) Σ_{(q,p)} w_p · (ℓ(q,p) + ℓ'(q,p)) / 2 + L_irr``. ``batch(p)``: the batch's rows of
    other queries that did not click ``p`` themselves (rows of the same query and other clickers of ``p`` are
    false negatives, left out as ``ℓ`` leaves them out). Why: the second direction shapes the item side of the
    space too (an item moves towards the queries that clicked it and away from the others), at the price of a
    ``[B, B, U]`` logsumexp and no extra forward pass.

    Args:
        temperature: ``τ``; 0.05 is sentence-transformers' ``scale=20``. Lower sharpens the softmax onto the
            hardest negatives.
        in_batch_negatives: count the other queries' clicks as negatives (False: the session's skips only).
        irrelevant_ceiling: ``c`` of ``L_irr`` (see the module docstring).
        symmetric: add the item-to-query direction ``ℓ'``.

    Inputs (one :class:`SimilarityBatch`):

    +--------------------------------------------+-----------------------------------------------------------+
    | field                                      | what it holds                                             |
    +============================================+===========================================================+
    | ``similarities [B, U]``                    | cosine of each session's query with each batch item       |
    +--------------------------------------------+-----------------------------------------------------------+
    | ``positive_index, positive_weights [B, P]``| clicked items (index into ``U``, ``-1`` pads), IPS weights|
    +--------------------------------------------+-----------------------------------------------------------+
    | ``negative_index, negative_weights [B, N]``| hard negatives and their confidences ``c_n`` (may be all  |
    |                                            | padding: the recipe uses in-batch negatives only)         |
    +--------------------------------------------+-----------------------------------------------------------+
    | ``query_groups [B]``                       | rows of one query share an id (optional)                  |
    +--------------------------------------------+-----------------------------------------------------------+

    Requirements: batches of several queries (one query alone has no in-batch negative); rows with the same
    query in one batch are fine, ``query_groups`` keeps them from pushing each other's clicks away.

    References:
        - van den Oord et al., "Representation Learning with Contrastive Predictive Coding", 2018 (InfoNCE).
        - Henderson et al., "Efficient Natural Language Response Suggestion for Smart Reply", 2017, and
          sentence-transformers' ``MultipleNegativesRankingLoss`` (in-batch negatives).
        - Radford et al., "Learning Transferable Visual Models From Natural Language Supervision", 2021 (the
          symmetric form).
        - Huang et al., "Embedding-based Retrieval in Facebook Search", KDD 2020 (in-batch over shown negatives).

    Example::

        >>> import torch
        >>> batch = SimilarityBatch(
        ...     similarities=torch.tensor([[0.8, 0.3], [0.2, 0.7]]),  # two queries, each clicked one item
        ...     positive_index=torch.tensor([[0], [1]]), positive_weights=torch.ones(2, 1),
        ...     negative_index=torch.full((2, 1), -1), negative_weights=torch.zeros(2, 1),
        ... )
        >>> loss = InfoNCELoss(temperature=0.5)(batch)  # each click against the other query's click
        >>> round(loss.item(), 4)  # softplus((0.3 − 0.8) / 0.5), the same for both rows
        0.3133
    """

    def __init__(
        self,
        temperature: float = 0.05,
        in_batch_negatives: bool = True,
        irrelevant_ceiling: float = 0.3,
        symmetric: bool = False,
    ):
        super().__init__()
        self.temperature = temperature
        self.in_batch_negatives = in_batch_negatives
        self.irrelevant_ceiling = irrelevant_ceiling
        self.symmetric = symmetric

    def forward(self, batch: SimilarityBatch) -> Tensor:
        similarities = batch.similarities.float()
        rows, candidate_count = similarities.shape
        logits = similarities / self.temperature  # [B, U]

        positive_valid = batch.positive_index >= 0
        own_positive = _row_membership(batch.positive_index, positive_valid.float(), candidate_count) > 0  # [B, U]
        # [B, U]: c_n of each row's hard negatives, 0 elsewhere
        coefficients = _row_membership(
            batch.negative_index, batch.negative_weights.float() * (batch.negative_index >= 0), candidate_count
        )
        if self.in_batch_negatives:
            groups = batch.query_groups
            if groups is None:
                groups = torch.arange(rows, device=similarities.device)
            other_query = (groups.unsqueeze(0) != groups.unsqueeze(1)).float()  # [B, B]
            in_batch = (other_query @ own_positive.float()) > 0  # [B, U]: clicked by a row of another query
            coefficients = torch.maximum(coefficients, in_batch.float())
        coefficients = coefficients.masked_fill(own_positive, 0.0)

        log_coefficients = torch.where(
            coefficients > 0, torch.log(coefficients.clamp_min(1e-30)), torch.full_like(coefficients, _MASKED_LOGIT)
        )
        negative_log_sum = torch.logsumexp(logits + log_coefficients, dim=1, keepdim=True)  # [B, 1]
        positive_logits, _ = _gather(logits, batch.positive_index)  # [B, P]
        # −log(e^a / (e^a + e^b)) = softplus(b − a): stable for any temperature.
        per_positive = nn.functional.softplus(negative_log_sum - positive_logits)  # [B, P]
        if self.symmetric:
            per_positive = (per_positive + self._item_to_query(batch, logits)) / 2
        weights = batch.positive_weights.float() * positive_valid
        pair_loss = (per_positive * weights).sum() / positive_valid.sum().clamp_min(1)
        return pair_loss + irrelevant_session_loss(batch, self.irrelevant_ceiling)

    @staticmethod
    def _item_to_query(batch: SimilarityBatch, logits: Tensor) -> Tensor:
        """``[B, P]`` ``ℓ'(q,p)``: each positive item's softmax over the batch's queries of other groups."""
        rows = logits.shape[0]
        groups = batch.query_groups
        if groups is None:
            groups = torch.arange(rows, device=logits.device)
        other_query = groups.unsqueeze(0) != groups.unsqueeze(1)  # [B, B]: row q, row q'
        column_logits = logits.T.unsqueeze(0).expand(rows, -1, -1)  # [B(q), U, B(q')]: s(q', u)/τ
        candidate_count = logits.shape[1]
        positive_valid = (batch.positive_index >= 0).float()
        clicked_by = _row_membership(batch.positive_index, positive_valid, candidate_count) > 0  # [B(q'), U]
        # q' counts against u when it is another query and did not click u itself.
        counts = other_query.unsqueeze(1) & ~clicked_by.T.unsqueeze(0)  # [B(q), U, B(q')]
        masked = column_logits.masked_fill(~counts, _MASKED_LOGIT)
        other_log_sum = torch.logsumexp(masked, dim=2)  # [B, U]: log Σ_{q' of another group} e^{s(q',u)/τ}
        negative_log_sum, _ = _gather(other_log_sum, batch.positive_index)  # [B, P]
        positive_logits, _ = _gather(logits, batch.positive_index)
        return nn.functional.softplus(negative_log_sum - positive_logits)


LOSS_NAMES = ("margin_ranking", "info_nce")


def create_loss(params: FineTuningParams) -> nn.Module:
    """The loss a parameter set names, configured from it."""
    if params.loss == "margin_ranking":
        return MarginRankingLoss(margin=params.margin, irrelevant_ceiling=params.irrelevant_ceiling)
    if params.loss == "info_nce":
        return InfoNCELoss(
            temperature=params.temperature,
            irrelevant_ceiling=params.irrelevant_ceiling,
            symmetric=params.symmetric_loss,
        )
    raise ValueError(f"unknown loss {params.loss!r}; expected one of {', '.join(LOSS_NAMES)}")
