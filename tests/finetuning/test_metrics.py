import math

import pytest
import torch

from embedding_studio.metrics import (
    mean_over_evaluated,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
    rerank_metrics,
    rerank_ranks,
)


def test_rerank_metrics_match_hand_computed_values() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3]])
    valid = torch.ones(1, 4, dtype=torch.bool)
    clicked = torch.tensor([[True, False, True, False]])
    # re-ranked: item 1, item 2 (clicked, rank 2), item 3, item 0 (clicked, rank 4)
    metrics = rerank_metrics(scores, valid, clicked, k=10)
    assert metrics["mrr"].item() == pytest.approx(0.5)
    ideal = 1.0 + 1.0 / math.log2(3)
    assert metrics["ndcg_at_10"].item() == pytest.approx((1.0 / math.log2(3) + 1.0 / math.log2(5)) / ideal)
    assert metrics["recall_at_10"].item() == pytest.approx(1.0)

    at_two = rerank_metrics(scores, valid, clicked, k=2)
    assert at_two["ndcg_at_2"].item() == pytest.approx((1.0 / math.log2(3)) / ideal)
    assert at_two["recall_at_2"].item() == pytest.approx(0.5)


def test_padding_is_ignored_ties_keep_shown_order_and_unclicked_sessions_are_not_averaged() -> None:
    scores = torch.tensor([[0.2, 0.1, 5.0, 5.0], [0.3, 0.3, 0.3, 0.0], [0.5, 0.4, 0.0, 0.0]])
    valid = torch.tensor([[True, True, False, False], [True, True, True, True], [True, True, False, False]])
    clicked = torch.tensor([[False, True, False, False], [False, False, True, False], [False, False, False, False]])
    assert rerank_ranks(scores, valid)[:2].tolist() == [[1, 2, 1, 1], [1, 2, 3, 4]]
    metrics = rerank_metrics(scores, valid, clicked, k=10)
    assert metrics["mrr"].tolist() == pytest.approx([0.5, 1 / 3, 0.0])
    assert metrics["evaluated"].tolist() == [True, True, False]
    means = mean_over_evaluated(metrics)
    assert means["mrr"].item() == pytest.approx((0.5 + 1 / 3) / 2)
    assert means["recall_at_10"].item() == pytest.approx(1.0)


def test_ndcg_with_graded_relevance() -> None:
    relevance = {"b": 2.0, "c": 1.0, "z": 1.0}
    dcg = 2 / math.log2(3) + 1 / math.log2(4)
    ideal = 2 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(["a", "b", "c"], relevance, k=3) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(["a"], {}, k=10) == 0.0
    assert ndcg_at_k(["b", "z", "c"], relevance, k=3) == pytest.approx(1.0)


def test_mrr_and_recall_at_k() -> None:
    relevance = {"c": 1.0, "d": 1.0, "x": 0.0}
    assert mrr_at_k(["a", "x", "c", "d"], relevance, k=10) == pytest.approx(1 / 3)
    assert mrr_at_k(["a", "x", "c", "d"], relevance, k=2) == 0.0
    assert recall_at_k(["a", "c", "b", "d"], relevance, k=3) == pytest.approx(0.5)
    assert recall_at_k(["a", "c", "c", "d"], relevance, k=3) == pytest.approx(0.5)  # a list is scored as given
    assert recall_at_k(["a"], {"a": 0.0}, k=3) == 0.0
