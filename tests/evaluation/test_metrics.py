from __future__ import annotations

import math

import numpy as np
import pytest

from embedding_studio.evaluation import (
    BeirDataset,
    encode_corpus,
    evaluate_rankings,
    evaluate_retrieval,
    evaluate_retrieval_detailed,
    mrr_at_k,
    ndcg_at_k,
    paired_bootstrap,
    recall_at_k,
)

LOG2_3 = math.log2(3)


def test_ndcg_uses_linear_gain_and_the_ideal_of_all_judged_items() -> None:
    judged = {"a": 0, "b": 2, "c": 1, "d": 3}
    # DCG = 0/1 + 2/log2(3) + 1/log2(4); IDCG = 3/1 + 2/log2(3) + 1/log2(4)
    expected = (2 / LOG2_3 + 0.5) / (3 + 2 / LOG2_3 + 0.5)
    assert ndcg_at_k(["a", "b", "c"], judged) == pytest.approx(expected)
    assert ndcg_at_k(["a", "b", "c"], judged) == pytest.approx(0.37000, abs=1e-5)
    assert ndcg_at_k(["d", "b", "c", "a"], judged) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "y"], judged) == 0.0
    assert ndcg_at_k(["a"], {"a": 0}) == 0.0  # no positive grade: 0, not a division by zero
    assert ndcg_at_k(["b", "d"], judged, k=1) == pytest.approx(2 / 3)  # cut-off applies to both rankings


def test_mrr_and_recall_by_hand() -> None:
    judged = {"a": 0, "b": 2, "c": 1, "d": 3}
    assert mrr_at_k(["a", "x", "c", "b"], judged) == pytest.approx(1 / 3)
    assert mrr_at_k(["a", "x"], judged) == 0.0
    assert mrr_at_k(["x"] * 10 + ["b"], judged) == 0.0  # rank 11 is past the cut-off
    assert recall_at_k(["a", "b", "x"], judged) == pytest.approx(1 / 3)
    assert recall_at_k(["b", "c", "d"], judged, k=2) == pytest.approx(2 / 3)
    assert recall_at_k(["b"], {"a": 0}) == 0.0


VECTORS = {
    "d1": [1.0, 0.0],
    "d2": [1.6, 1.2],  # not unit length: cosine must still rank it at 0.8 for query a
    "d3": [0.0, 1.0],
    "d4": [-1.0, 0.0],
    "query a": [1.0, 0.0],
    "query b": [0.0, 3.0],
}


class VectorTableModel:
    """Stands in for TextEmbeddingModel: each text maps to a fixed vector."""

    def __init__(self) -> None:
        self.item_calls = 0

    def encode_queries(self, texts: list[str], batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        return np.array([VECTORS[text] for text in texts], dtype=np.float32)

    def encode_items(self, texts: list[str], batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        self.item_calls += 1
        return np.array([VECTORS[text] for text in texts], dtype=np.float32)


class SentenceTransformerLike:
    def encode(self, texts: list[str], **_: object) -> np.ndarray:
        return np.array([VECTORS[text] for text in texts], dtype=np.float32)


def toy_dataset() -> BeirDataset:
    return BeirDataset(
        corpus={item_id: ("", item_id) for item_id in ("d1", "d2", "d3", "d4")},
        queries={"qa": "query a", "qb": "query b"},
        qrels={"qa": {"d2": 2, "d3": 1, "d1": 0}, "qb": {"d4": 1}},
    )


def test_evaluate_retrieval_by_hand() -> None:
    dataset = toy_dataset()
    model = VectorTableModel()
    detailed = evaluate_retrieval_detailed(model, dataset, ["qa", "qb"])
    # qa ranks d1 (1.0), d2 (0.8), d3 (0.0), d4 (-1.0); qb ranks d3, d2, then d1/d4 tied at 0 (corpus order)
    assert detailed.per_query["qa"].ranked_ids == ["d1", "d2", "d3", "d4"]
    assert detailed.per_query["qb"].ranked_ids == ["d3", "d2", "d1", "d4"]
    ndcg_a = (2 / LOG2_3 + 1 / 2) / (2 + 1 / LOG2_3)
    ndcg_b = (1 / math.log2(5)) / 1
    assert detailed.per_query["qa"].ndcg_at_10 == pytest.approx(ndcg_a)
    assert detailed.per_query["qb"].ndcg_at_10 == pytest.approx(ndcg_b)
    metrics = evaluate_retrieval(model, dataset, ["qa", "qb"])
    assert set(metrics) == {"ndcg@10", "mrr@10", "recall@100"}
    assert metrics["ndcg@10"] == pytest.approx((ndcg_a + ndcg_b) / 2)
    assert metrics["mrr@10"] == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert metrics["recall@100"] == pytest.approx(1.0)


def test_precomputed_corpus_embeddings_are_reused_and_checked() -> None:
    dataset = toy_dataset()
    model = VectorTableModel()
    corpus = encode_corpus(model, dataset)
    assert np.allclose(np.linalg.norm(corpus, axis=1), 1.0)
    first = evaluate_retrieval(model, dataset, ["qa"], corpus_embeddings=corpus)
    second = evaluate_retrieval(model, dataset, ["qb"], corpus_embeddings=corpus)
    assert model.item_calls == 1
    assert first["mrr@10"] == pytest.approx(0.5) and second["mrr@10"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="3 rows"):
        evaluate_retrieval(model, dataset, ["qa"], corpus_embeddings=corpus[:3])
    with pytest.raises(KeyError, match="nope"):
        evaluate_retrieval(model, dataset, ["nope"])


def test_plain_sentence_transformers_models_work_too() -> None:
    dataset = toy_dataset()
    assert evaluate_retrieval(SentenceTransformerLike(), dataset, ["qa", "qb"]) == pytest.approx(
        evaluate_retrieval(VectorTableModel(), dataset, ["qa", "qb"])
    )


def test_evaluate_rankings_from_elsewhere() -> None:
    dataset = toy_dataset()
    evaluation = evaluate_rankings({"qa": ["d2", "d3"], "qb": []}, dataset)
    assert evaluation.per_query["qa"].ndcg_at_10 == pytest.approx(1.0)
    assert evaluation.metrics == pytest.approx({"ndcg@10": 0.5, "mrr@10": 0.5, "recall@100": 0.5})
    with pytest.raises(KeyError, match="qb"):
        evaluate_rankings({"qa": []}, dataset, ["qa", "qb"])


def test_paired_bootstrap_matches_the_normal_interval_for_many_queries() -> None:
    rng = np.random.default_rng(3)
    before = rng.uniform(0.0, 1.0, size=400)
    differences = rng.normal(0.02, 0.1, size=400)
    after = before + differences
    interval = paired_bootstrap(before.tolist(), after.tolist(), samples=20_000, seed=1)
    assert interval.mean_difference == pytest.approx(differences.mean())
    # For a mean of n paired differences the bootstrap interval approaches d̄ ± 1.96 · s / √n.
    half_width = 1.96 * differences.std(ddof=1) / math.sqrt(len(differences))
    assert interval.low == pytest.approx(differences.mean() - half_width, abs=0.002)
    assert interval.high == pytest.approx(differences.mean() + half_width, abs=0.002)
    assert interval.samples == 20_000
    assert interval.low < interval.mean_difference < interval.high


def test_paired_bootstrap_of_two_queries_by_hand() -> None:
    # differences 0 and 1: a resampled mean is 0, 0.5 or 1 with P = 1/4, 1/2, 1/4, so the 95% interval is [0, 1]
    interval = paired_bootstrap([0.3, 0.2], [0.3, 1.2], samples=4_000, seed=0)
    assert interval.mean_difference == pytest.approx(0.5)
    assert interval.low == pytest.approx(0.0)
    assert interval.high == pytest.approx(1.0)
    narrower = paired_bootstrap([0.3, 0.2], [0.3, 1.2], samples=4_000, seed=0, confidence=0.4)
    assert narrower.low == pytest.approx(0.5) and narrower.high == pytest.approx(0.5)


def test_paired_bootstrap_without_a_difference_is_zero_and_deterministic() -> None:
    values = [0.1, 0.5, 0.9, 0.4]
    interval = paired_bootstrap(values, list(values))
    assert (interval.mean_difference, interval.low, interval.high) == (0.0, 0.0, 0.0)
    assert not interval.excludes_zero
    before, after = [0.1, 0.4, 0.2, 0.8, 0.5], [0.3, 0.3, 0.6, 0.8, 0.9]
    assert paired_bootstrap(before, after, seed=5) == paired_bootstrap(before, after, seed=5)


def test_paired_bootstrap_rejects_mismatched_or_empty_values() -> None:
    with pytest.raises(ValueError, match="before has 3 values, after has 2"):
        paired_bootstrap([0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(ValueError, match="at least one"):
        paired_bootstrap([], [])
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap([0.1], [0.2], confidence=1.0)
