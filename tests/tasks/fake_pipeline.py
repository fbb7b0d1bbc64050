"""A stand-in for ``run_fine_tuning`` (tests of the deployment gate and of where its verdict is shown)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FakeResult:
    """What ``run_fine_tuning`` returns, with the figures a test chooses."""

    metrics: dict[str, float]
    reference_metrics: dict[str, float]
    best_run_id: str = "f" * 32
    best_model_url: str = "models:/fake/1"
    experiment_id: str = "7"
    main_metric: str = "val_ndcg_at_10"
    higher_is_better: bool = True
    skipped_sessions: int = 0
    validation_queries: int = 3
    validation_pool_items: int = 40
    params: dict[str, Any] = field(default_factory=dict)
    batch_ids: list[int] = field(default_factory=lambda: [1])
    replayed_sessions: int = 0
    selection_mode: str = "search"
    search_reason: str | None = None


class FakePipeline:
    """Stands in for ``run_fine_tuning``: records how it was called, returns ``result``, runs ``meanwhile``."""

    def __init__(self, result: FakeResult, meanwhile: Any = None) -> None:
        self.result = result
        self.meanwhile = meanwhile
        self.calls: list[dict[str, Any]] = []

    def __call__(self, clickstream: Any, batch_id: int, **kwargs: Any) -> FakeResult:
        self.calls.append({"clickstream": clickstream, "batch_id": batch_id, **kwargs})
        if self.meanwhile is not None:
            self.meanwhile()
        return self.result
