from __future__ import annotations

import math

import pytest

from embedding_studio.evaluation import PositionBasedClickModel, default_examination


def click_rates(model: PositionBasedClickModel, ranked: list[str], qrels: dict[str, int], users: int) -> list[float]:
    counts = dict.fromkeys(ranked, 0)
    for _ in range(users):
        for item_id in model.simulate(ranked, qrels):
            counts[item_id] += 1
    return [counts[item_id] / users for item_id in ranked]


def within_four_sigma(observed: float, expected: float, users: int) -> bool:
    sigma = math.sqrt(expected * (1 - expected) / users)
    return abs(observed - expected) <= 4 * sigma + 1e-9


def test_click_rate_is_examination_times_attractiveness() -> None:
    model = PositionBasedClickModel(
        examination=[1.0, 0.5, 0.25], attractiveness_by_grade={1: 0.4, 2: 0.8}, noise=0.1, seed=3
    )
    ranked = ["relevant", "very_relevant", "unjudged", "past_the_table"]
    qrels = {"relevant": 1, "very_relevant": 2, "past_the_table": 2}
    users = 20_000
    rates = click_rates(model, ranked, qrels, users)
    expected = [1.0 * 0.4, 0.5 * 0.8, 0.25 * 0.1, 0.0]
    for observed, wanted in zip(rates, expected, strict=True):
        assert within_four_sigma(observed, wanted, users), (rates, expected)
    assert rates[3] == 0.0


def test_same_item_gets_fewer_clicks_further_down() -> None:
    model = PositionBasedClickModel(attractiveness_by_grade={1: 0.5}, noise=0.0, seed=1)
    users = 10_000
    top = click_rates(model, ["a", "b"], {"a": 1}, users)[0]
    model = PositionBasedClickModel(attractiveness_by_grade={1: 0.5}, noise=0.0, seed=1)
    ranked = [f"filler{index}" for index in range(9)] + ["a"]
    bottom = click_rates(model, ranked, {"a": 1}, users)[9]
    assert within_four_sigma(top, 0.5, users)
    assert within_four_sigma(bottom, 0.5 / 10**0.7, users)
    assert all(rate == 0.0 for rate in click_rates(model, ranked[:9], {"a": 1}, 200))  # noise 0: no stray clicks


def test_default_attractiveness_rises_with_grade_and_noise_below() -> None:
    model = PositionBasedClickModel(max_grade=3, noise=0.02)
    values = [model.attractiveness(grade) for grade in (None, -1, 0, 1, 2, 3, 4)]
    assert values[:3] == [0.02, 0.02, 0.02]
    assert values[3] == pytest.approx(0.2) and values[5] == pytest.approx(0.9)
    assert values[3] < values[4] < values[5] == values[6]
    assert model.click_probability(1, 3) == pytest.approx(0.9)
    assert model.click_probability(10, 3) == pytest.approx(0.9 * default_examination(10))


def test_same_seed_same_clicks() -> None:
    ranked = [f"doc{index}" for index in range(10)]
    qrels = {f"doc{index}": index % 4 for index in range(10)}
    first = PositionBasedClickModel(seed=42)
    second = PositionBasedClickModel(seed=42)
    assert [first.simulate(ranked, qrels) for _ in range(50)] == [second.simulate(ranked, qrels) for _ in range(50)]


def test_rejects_probabilities_outside_zero_one() -> None:
    with pytest.raises(ValueError, match="noise"):
        PositionBasedClickModel(noise=1.5)
    with pytest.raises(ValueError, match="grade 2"):
        PositionBasedClickModel(attractiveness_by_grade={2: 1.2})
    with pytest.raises(ValueError, match="rank 2"):
        PositionBasedClickModel(examination=[1.0, -0.1])
