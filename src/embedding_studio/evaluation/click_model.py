"""Simulated users for the demo and the benchmarks: clicks drawn from relevance labels.

A position-based click model (PBM) separates *seeing* a result from *liking* it:

    P(click at rank r) = P(examine r) × P(attractive | grade of the item at r)

so simulated clicks carry the same position bias real clicks do (a mediocre item at rank 1 gets more
clicks than a good one at rank 9), which is exactly what the fine-tuning has to learn through.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np


def default_examination(rank: int) -> float:
    """P(examine r) = 1 / r^0.7: a user nearly always sees rank 1 and about one time in five sees rank 10."""
    return 1.0 / rank**0.7


class PositionBasedClickModel:
    """Draws clicks on a ranked list from graded judgments.

    ``examination``: a function of the 1-based rank, or a table whose entry ``r - 1`` is P(examine r)
    (ranks past the table's end are never examined). ``attractiveness_by_grade``: P(attractive | grade)
    for the grades above 0; when omitted it rises linearly from 0.2 at grade 1 to 0.9 at ``max_grade``.
    Unjudged items and grades ≤ 0 are attractive with the small ``noise`` probability (users misclick,
    and titles can look better than what lies behind them).
    """

    def __init__(
        self,
        examination: Callable[[int], float] | Sequence[float] = default_examination,
        attractiveness_by_grade: Mapping[int, float] | None = None,
        noise: float = 0.02,
        max_grade: int = 3,
        seed: int | None = 0,
    ) -> None:
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise must be a probability, got {noise}")
        if max_grade < 1:
            raise ValueError(f"max_grade must be at least 1, got {max_grade}")
        if attractiveness_by_grade is None:
            attractiveness_by_grade = {
                grade: 0.2 + 0.7 * (grade - 1) / max(1, max_grade - 1) for grade in range(1, max_grade + 1)
            }
        for grade, probability in attractiveness_by_grade.items():
            if not 0.0 <= probability <= 1.0:
                raise ValueError(f"attractiveness of grade {grade} must be a probability, got {probability}")
        if not callable(examination):
            for rank, probability in enumerate(examination, start=1):
                if not 0.0 <= probability <= 1.0:
                    raise ValueError(f"examination at rank {rank} must be a probability, got {probability}")
        self._examination = examination
        self.attractiveness_by_grade = dict(attractiveness_by_grade)
        self.noise = noise
        self._rng = np.random.default_rng(seed)

    def examination_probability(self, rank: int) -> float:
        if callable(self._examination):
            return float(min(1.0, max(0.0, self._examination(rank))))
        table = self._examination
        return float(table[rank - 1]) if rank - 1 < len(table) else 0.0

    def attractiveness(self, grade: int | None) -> float:
        """P(attractive | grade); grades above the table's highest take the highest grade's value."""
        if grade is None or grade <= 0 or not self.attractiveness_by_grade:
            return self.noise
        if grade in self.attractiveness_by_grade:
            return self.attractiveness_by_grade[grade]
        known = [known_grade for known_grade in self.attractiveness_by_grade if known_grade <= grade]
        if not known:
            return self.noise
        return self.attractiveness_by_grade[max(known)]

    def click_probability(self, rank: int, grade: int | None) -> float:
        return self.examination_probability(rank) * self.attractiveness(grade)

    def simulate(self, ranked_ids: Sequence[str], qrels_for_query: Mapping[str, int]) -> list[str]:
        """Clicked ids, in the order they were shown, for one user looking at ``ranked_ids``."""
        clicked = []
        for rank, item_id in enumerate(ranked_ids, start=1):
            if self._rng.random() < self.click_probability(rank, qrels_for_query.get(item_id)):
                clicked.append(item_id)
        return clicked
