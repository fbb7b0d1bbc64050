import random

import pytest

from embedding_studio.clickstream.types import FineTuningInput
from embedding_studio.finetuning.splitter import TooFewQueriesError, TrainTestSplitter, session_kind


def _sessions(query_count: int = 120, seed: int = 3) -> list[FineTuningInput]:
    rng = random.Random(seed)
    sessions = []
    for query_number in range(query_count):
        kind = rng.choices(["clicked", "irrelevant", "no_click"], weights=[0.6, 0.2, 0.2])[0]
        for repeat in range(rng.randint(1, 4)):
            # Spelling varies between sessions of one query: case and spaces do not make a new query.
            query = f"Query  {query_number}" if repeat % 2 else f"query {query_number}"
            results = [f"item-{query_number}-{rank}" for rank in range(5)]
            sessions.append(
                FineTuningInput(
                    session_id=f"s-{query_number}-{repeat}",
                    query=query,
                    results=results,
                    ranks={item_id: rank for rank, item_id in enumerate(results, 1)},
                    events=[results[1]] if kind == "clicked" else [],
                    is_irrelevant=kind == "irrelevant",
                )
            )
    return sessions


def _query_key(fine_tuning_input: FineTuningInput) -> str:
    return " ".join(str(fine_tuning_input.query).lower().split())


def _share(sessions: list[FineTuningInput], kind: str) -> float:
    return sum(session_kind(session) == kind for session in sessions) / len(sessions)


def test_same_query_lands_on_one_side_and_shares_are_kept() -> None:
    sessions = _sessions()
    split = TrainTestSplitter(test_share=0.2, seed=0).split(sessions)
    assert len(split.train) + len(split.test) == len(sessions)
    assert {_query_key(s) for s in split.train}.isdisjoint({_query_key(s) for s in split.test})
    assert len(split.test) / len(sessions) == pytest.approx(0.2, abs=0.03)
    for kind in ("clicked", "irrelevant", "no_click"):
        assert _share(split.test, kind) == pytest.approx(_share(split.train, kind), abs=0.06)


def test_split_is_deterministic_for_a_seed_and_ignores_input_order() -> None:
    sessions = _sessions()
    first = TrainTestSplitter(seed=5).split(sessions)
    shuffled = list(sessions)
    random.Random(1).shuffle(shuffled)
    second = TrainTestSplitter(seed=5).split(shuffled)
    assert {s.session_id for s in first.test} == {s.session_id for s in second.test}
    other_seed = TrainTestSplitter(seed=6).split(sessions)
    assert {s.session_id for s in first.test} != {s.session_id for s in other_seed.test}


def test_configurable_share() -> None:
    sessions = _sessions()
    split = TrainTestSplitter(test_share=0.5, seed=0).split(sessions)
    assert len(split.test) / len(sessions) == pytest.approx(0.5, abs=0.03)


def test_two_queries_give_both_sides_one_and_one_query_is_an_error() -> None:
    sessions = [s for s in _sessions(query_count=2)]
    split = TrainTestSplitter(test_share=0.1).split(sessions)
    assert split.train and split.test
    only_one = [s for s in sessions if _query_key(s) == "query 0"]
    with pytest.raises(TooFewQueriesError, match="1 distinct queries"):
        TrainTestSplitter().split(only_one)


def test_share_must_be_a_proper_fraction() -> None:
    with pytest.raises(ValueError, match="test_share"):
        TrainTestSplitter(test_share=1.0)
