import math
import random

import pytest

from embedding_studio.clickstream.types import FineTuningInput
from embedding_studio.finetuning.features import FeatureExtractor, estimate_propensities, prior_propensities


def _session(session_id: str, results: list[str], clicks: list[str], irrelevant: bool = False, query: str = "q"):
    return FineTuningInput(
        session_id=session_id,
        query=query,
        results=results,
        ranks={item_id: rank for rank, item_id in enumerate(results, 1)},
        events=clicks,
        is_irrelevant=irrelevant,
    )


def test_clicks_are_positives_skips_above_the_click_are_full_negatives_and_below_weaker() -> None:
    extractor = FeatureExtractor(use_ips=False)
    features = extractor.extract([_session("s", ["a", "b", "c", "d"], ["c"])])[0]
    assert features.positive_ids == ("c",)
    assert features.positive_weights.tolist() == [1.0]
    assert features.negative_ids == ("a", "b", "d")
    prior = prior_propensities()
    below = 0.5 * prior.propensity(4) / prior.propensity(3)
    assert features.negative_weights.tolist() == pytest.approx([1.0, 1.0, below])


def test_irrelevant_sessions_make_every_result_a_negative_and_unlabelled_sessions_are_dropped() -> None:
    extractor = FeatureExtractor(use_ips=False)
    rows = extractor.extract(
        [_session("irrelevant", ["a", "b"], [], irrelevant=True), _session("nothing", ["a", "b"], [])]
    )
    assert len(rows) == 1
    assert rows[0].is_irrelevant
    assert rows[0].positive_ids == ()
    assert rows[0].negative_ids == ("a", "b")
    assert rows[0].negative_weights.tolist() == [1.0, 1.0]


def test_unloaded_items_are_left_out_and_negatives_are_capped_strongest_first() -> None:
    extractor = FeatureExtractor(use_ips=False, negatives_per_query=2)
    features = extractor.extract([_session("s", ["a", "b", "c", "d", "e"], ["d"])], known_items={"b", "c", "d", "e"})[0]
    assert features.positive_ids == ("d",)
    assert features.negative_ids == ("b", "c")  # skipped above the click beat 'e' shown below it


def test_ips_weights_grow_with_rank_are_clipped_and_average_one() -> None:
    sessions = _simulated_sessions(shuffle_share=1.0, sessions=1500, seed=2)
    extractor = FeatureExtractor(use_ips=True, max_ips_weight=3.0).fit(sessions)
    rows = extractor.extract(sessions)
    by_rank: dict[int, float] = {}
    for session, row in zip([s for s in sessions if s.events], rows, strict=True):
        for item_id, weight in zip(row.positive_ids, row.positive_weights.tolist(), strict=True):
            by_rank[session.ranks[item_id]] = weight
    assert by_rank[1] < by_rank[3] < by_rank[6]
    assert max(by_rank.values()) == pytest.approx(3.0 / extractor.positive_normaliser)
    all_weights = [weight for row in rows for weight in row.positive_weights.tolist()]
    assert sum(all_weights) / len(all_weights) == pytest.approx(1.0, abs=0.02)


TRUE_PROPENSITY = [1 / rank**0.8 for rank in range(1, 11)]


def _simulated_sessions(shuffle_share: float, sessions: int, seed: int) -> list[FineTuningInput]:
    """A PBM world: clicks happen with η(rank) · attractiveness; the ranker is noisy, sometimes random."""
    rng = random.Random(seed)
    attractiveness = {query: {f"d{query}-{i}": rng.random() ** 2 for i in range(15)} for query in range(40)}
    simulated = []
    for number in range(sessions):
        query = rng.randrange(40)
        relevance = attractiveness[query]
        ranked = sorted(relevance, key=lambda item_id: -relevance[item_id] + rng.gauss(0, 0.3))[:10]
        if rng.random() < shuffle_share:
            rng.shuffle(ranked)
        clicks = [
            item_id
            for rank, item_id in enumerate(ranked, 1)
            if rng.random() < TRUE_PROPENSITY[rank - 1] * relevance[item_id]
        ]
        simulated.append(_session(str(number), ranked, clicks, query=f"query {query}"))
    return simulated


def test_em_recovers_a_known_propensity_curve_even_when_the_ranker_is_biased() -> None:
    sessions = _simulated_sessions(shuffle_share=0.1, sessions=2500, seed=0)
    estimated = estimate_propensities(sessions, method="em").propensities[:10]
    assert max(abs(a - b) for a, b in zip(estimated, TRUE_PROPENSITY, strict=True)) < 0.05
    # The plain ratio confuses a good ranker with position bias: it is visibly worse here.
    ratio = estimate_propensities(sessions, method="ratio").propensities[:10]
    assert max(abs(a - b) for a, b in zip(ratio, TRUE_PROPENSITY, strict=True)) > 0.06


def test_ratio_method_recovers_the_curve_under_random_rankings() -> None:
    sessions = _simulated_sessions(shuffle_share=1.0, sessions=2500, seed=1)
    estimated = estimate_propensities(sessions, method="ratio").propensities[:10]
    assert max(abs(a - b) for a, b in zip(estimated, TRUE_PROPENSITY, strict=True)) < 0.05


def test_without_clicks_the_curve_is_flat_and_bad_method_is_refused() -> None:
    assert estimate_propensities([_session("s", ["a", "b"], [])]).propensity(5) == 1.0
    with pytest.raises(ValueError, match="method"):
        estimate_propensities([], method="magic")
    assert prior_propensities().propensity(3) == pytest.approx(1 / math.log2(4))


def test_an_item_clicked_for_the_same_query_elsewhere_is_not_a_negative() -> None:
    sessions = [
        _session("s1", ["a", "b", "c"], ["c"], query="Red Shoes"),
        _session("s2", ["a", "b", "c"], ["b"], query="red shoes"),
        _session("s3", ["a", "b", "c"], [], irrelevant=True, query="red shoes"),
        _session("s4", ["a", "b", "c"], ["c"], query="blue dress"),
    ]
    extractor = FeatureExtractor(use_ips=False).fit(sessions)
    rows = {row.session_id: row for row in extractor.extract(sessions)}
    assert rows["s1"].negative_ids == ("a",)
    assert rows["s2"].negative_ids == ("a",)
    assert rows["s3"].negative_ids == ("a",)
    assert rows["s4"].negative_ids == ("a", "b")
