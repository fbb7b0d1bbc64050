"""Holding out whole queries for validation, keeping the mix of session kinds on both sides.

Sessions of one query land on one side: if the same query sat on both sides, validation would
measure memorised queries rather than generalisation. Query groups are stratified by their dominant
session kind (clicked / irrelevant / neither) so that both sides see the same mix of evidence.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from embedding_studio.clickstream.types import FineTuningInput
from embedding_studio.finetuning.query_retriever import QueryRetriever, TextQueryRetriever, normalize_query_text

SESSION_KINDS = ("clicked", "irrelevant", "no_click")


class TooFewQueriesError(ValueError):
    """There are not enough distinct queries to put at least one on each side."""


@dataclass(frozen=True)
class TrainTestSplit:
    train: list[FineTuningInput]
    test: list[FineTuningInput]


def session_kind(fine_tuning_input: FineTuningInput) -> str:
    """``irrelevant`` wins over clicks: a user who flagged the results judged all of them."""
    if fine_tuning_input.is_irrelevant:
        return "irrelevant"
    if fine_tuning_input.events:
        return "clicked"
    return "no_click"


class TrainTestSplitter:
    """Split inputs into train and test by query, ``test_share`` of the sessions going to test.

    The split does not depend on the order of the inputs, only on their content and ``seed``.
    """

    def __init__(self, test_share: float = 0.2, seed: int = 0, query_retriever: QueryRetriever | None = None) -> None:
        if not 0.0 < test_share < 1.0:
            raise ValueError(f"test_share must be strictly between 0 and 1, got {test_share}")
        self.test_share = test_share
        self.seed = seed
        self.query_retriever: QueryRetriever = query_retriever or TextQueryRetriever()

    def split(self, inputs: Sequence[FineTuningInput]) -> TrainTestSplit:
        keys = [normalize_query_text(text) for text in self.query_retriever.get_queries(inputs)]
        groups: dict[str, list[FineTuningInput]] = {}
        for fine_tuning_input, key in zip(inputs, keys, strict=True):
            groups.setdefault(key, []).append(fine_tuning_input)
        if len(groups) < 2:
            raise TooFewQueriesError(
                f"{len(inputs)} sessions hold {len(groups)} distinct queries; at least 2 are needed so that "
                "train and test each get one (all sessions of a query stay on one side)"
            )

        strata: dict[str, list[str]] = {kind: [] for kind in SESSION_KINDS}
        for group_key in sorted(groups):
            strata[_dominant_kind(groups[group_key])].append(group_key)

        rng = random.Random(self.seed)
        test_keys: set[str] = set()
        for kind in SESSION_KINDS:
            stratum_keys = strata[kind]
            rng.shuffle(stratum_keys)
            target = self.test_share * sum(len(groups[key]) for key in stratum_keys)
            taken = 0
            for key in stratum_keys:
                size = len(groups[key])
                # Take a group when it brings the test count closer to this stratum's target.
                if abs(taken + size - target) < abs(taken - target):
                    test_keys.add(key)
                    taken += size

        if not test_keys:
            # Tiny inputs: every stratum's target rounded to no group; hold out the smallest group.
            test_keys.add(min(groups, key=lambda key: (len(groups[key]), key)))
        if len(test_keys) == len(groups):
            test_keys.remove(max(test_keys, key=lambda key: (len(groups[key]), key)))

        train = [item for item, key in zip(inputs, keys, strict=True) if key not in test_keys]
        test = [item for item, key in zip(inputs, keys, strict=True) if key in test_keys]
        return TrainTestSplit(train=train, test=test)


def _dominant_kind(sessions: Sequence[FineTuningInput]) -> str:
    counts = Counter(session_kind(session) for session in sessions)
    return max(SESSION_KINDS, key=lambda kind: (counts[kind], -SESSION_KINDS.index(kind)))
