import math

import pytest
import torch

from embedding_studio.finetuning.losses import InfoNCELoss, MarginRankingLoss, SimilarityBatch, create_loss
from embedding_studio.finetuning.params import FineTuningParams


def _batch(similarities, positive_index, positive_weights, negative_index, negative_weights, query_groups=None):
    return SimilarityBatch(
        similarities=torch.tensor(similarities, dtype=torch.float32, requires_grad=True),
        positive_index=torch.tensor(positive_index),
        positive_weights=torch.tensor(positive_weights, dtype=torch.float32),
        negative_index=torch.tensor(negative_index),
        negative_weights=torch.tensor(negative_weights, dtype=torch.float32),
        query_groups=None if query_groups is None else torch.tensor(query_groups),
    )


def test_margin_ranking_loss_matches_hand_computed_pairs_with_padding() -> None:
    batch = _batch(
        similarities=[[0.9, 0.5, 0.8], [0.1, 0.3, 0.6]],
        positive_index=[[0], [1]],
        positive_weights=[[2.0], [1.0]],
        negative_index=[[1, 2], [2, -1]],
        negative_weights=[[1.0, 0.5], [1.0, 0.0]],
    )
    loss = MarginRankingLoss(margin=0.2)(batch)
    # pairs: (0.9 vs 0.5) -> 0; (0.9 vs 0.8) -> 2*0.5*(0.2-0.1)=0.1; (0.3 vs 0.6) -> 1*1*(0.2+0.3)=0.5; 3 pairs
    assert loss.item() == pytest.approx((0.0 + 0.1 + 0.5) / 3, abs=1e-6)


def test_irrelevant_session_pushes_its_results_below_the_ceiling() -> None:
    batch = _batch(
        similarities=[[0.9, 0.5, 0.8], [0.5, 0.1, 0.0]],
        positive_index=[[0], [-1]],
        positive_weights=[[1.0], [0.0]],
        negative_index=[[1], [0]],
        negative_weights=[[1.0], [2.0]],
    )
    batch.negative_index = torch.tensor([[1, -1], [0, 1]])
    batch.negative_weights = torch.tensor([[1.0, 0.0], [2.0, 1.0]])
    loss = MarginRankingLoss(margin=0.2, irrelevant_ceiling=0.3)(batch)
    # pair (0.9 vs 0.5) -> 0; irrelevant row: 2*(0.5-0.3) and 1*max(0, 0.1-0.3)=0 over 2 negatives
    assert loss.item() == pytest.approx(0.0 + (0.4 + 0.0) / 2, abs=1e-6)


def test_info_nce_matches_hand_computed_value_with_hard_and_in_batch_negatives() -> None:
    batch = _batch(
        similarities=[[0.8, 0.2, 0.5, 0.1], [0.3, 0.4, 0.9, 0.6]],
        positive_index=[[0], [2]],
        positive_weights=[[1.0], [2.0]],
        negative_index=[[1], [3]],
        negative_weights=[[1.0], [0.5]],
    )
    loss = InfoNCELoss(temperature=0.5)(batch)
    first = -math.log(math.exp(1.6) / (math.exp(1.6) + math.exp(0.4) + math.exp(1.0)))
    second = -math.log(math.exp(1.8) / (math.exp(1.8) + 0.5 * math.exp(1.2) + math.exp(0.6)))
    assert loss.item() == pytest.approx((1.0 * first + 2.0 * second) / 2, abs=1e-5)


def test_info_nce_does_not_use_clicks_of_the_same_query_as_negatives() -> None:
    batch = _batch(
        similarities=[[0.8, 0.2, 0.5, 0.1], [0.3, 0.4, 0.9, 0.6]],
        positive_index=[[0], [2]],
        positive_weights=[[1.0], [1.0]],
        negative_index=[[1], [3]],
        negative_weights=[[1.0], [1.0]],
        query_groups=[7, 7],
    )
    loss = InfoNCELoss(temperature=0.5)(batch)
    first = -math.log(math.exp(1.6) / (math.exp(1.6) + math.exp(0.4)))
    second = -math.log(math.exp(1.8) / (math.exp(1.8) + math.exp(1.2)))
    assert loss.item() == pytest.approx((first + second) / 2, abs=1e-5)


def test_info_nce_with_several_positives_keeps_them_out_of_each_others_denominator() -> None:
    batch = _batch(
        similarities=[[0.8, 0.6, 0.2]],
        positive_index=[[0, 1]],
        positive_weights=[[1.0, 1.0]],
        negative_index=[[2]],
        negative_weights=[[1.0]],
    )
    loss = InfoNCELoss(temperature=1.0)(batch)
    expected = (-math.log(math.exp(0.8) / (math.exp(0.8) + math.exp(0.2)))) + (
        -math.log(math.exp(0.6) / (math.exp(0.6) + math.exp(0.2)))
    )
    assert loss.item() == pytest.approx(expected / 2, abs=1e-6)


def test_losses_give_finite_gradients_when_a_row_has_nothing_to_compare() -> None:
    batch = _batch(
        similarities=[[0.8, 0.6], [0.1, 0.2]],
        positive_index=[[0], [-1]],
        positive_weights=[[1.0], [0.0]],
        negative_index=[[-1], [-1]],
        negative_weights=[[0.0], [0.0]],
        query_groups=[0, 0],
    )
    for loss_function in (InfoNCELoss(temperature=0.05), MarginRankingLoss()):
        loss = loss_function(batch)
        loss.backward()
        assert torch.isfinite(loss)
        assert torch.isfinite(batch.similarities.grad).all()
        batch.similarities.grad = None
    assert InfoNCELoss(temperature=0.05)(batch).item() == pytest.approx(0.0, abs=1e-6)


def test_info_nce_decreases_when_the_click_moves_above_the_skip() -> None:
    worse = _batch([[0.2, 0.6]], [[0]], [[1.0]], [[1]], [[1.0]])
    better = _batch([[0.6, 0.2]], [[0]], [[1.0]], [[1]], [[1.0]])
    loss = InfoNCELoss(temperature=0.1)
    assert loss(better).item() < loss(worse).item()


def test_create_loss_follows_params() -> None:
    assert isinstance(create_loss(FineTuningParams(loss="margin_ranking", margin=0.3)), MarginRankingLoss)
    info_nce = create_loss(FineTuningParams(loss="info_nce", temperature=0.07))
    assert isinstance(info_nce, InfoNCELoss)
    assert info_nce.temperature == 0.07


def test_symmetric_info_nce_adds_each_items_choice_among_queries_that_did_not_click_it() -> None:
    batch = _batch(
        similarities=[[0.8, 0.3], [0.2, 0.7], [0.4, 0.5]],
        positive_index=[[0], [1], [1]],
        positive_weights=[[1.0], [1.0], [1.0]],
        negative_index=[[-1], [-1], [-1]],
        negative_weights=[[0.0], [0.0], [0.0]],
    )

    def nll(positive: float, *others: float) -> float:
        return -math.log(math.exp(positive) / (math.exp(positive) + sum(math.exp(other) for other in others)))

    query_to_item = [nll(0.8, 0.3), nll(0.7, 0.2), nll(0.5, 0.4)]
    # item 1 was clicked by rows 1 and 2: neither counts against the other; item 0 is chosen among all three rows
    item_to_query = [nll(0.8, 0.2, 0.4), nll(0.7, 0.3), nll(0.5, 0.3)]
    expected = sum((forward + backward) / 2 for forward, backward in zip(query_to_item, item_to_query, strict=True)) / 3

    assert InfoNCELoss(temperature=1.0, symmetric=True)(batch).item() == pytest.approx(expected, abs=1e-6)
    assert InfoNCELoss(temperature=1.0)(batch).item() == pytest.approx(sum(query_to_item) / 3, abs=1e-6)
    params = FineTuningParams(symmetric_loss=True)
    assert create_loss(params)(batch).item() == pytest.approx(
        InfoNCELoss(temperature=params.temperature, symmetric=True)(batch).item(), abs=1e-6
    )


def test_the_loss_docstring_examples_run() -> None:
    import doctest

    from embedding_studio.finetuning import losses

    failures, attempted = doctest.testmod(losses, raise_on_error=False)
    assert attempted >= 2 and failures == 0
