"""Several worker processes share one sqlite MLflow store: first-time migration and iteration numbering."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest


def _start_iterations(tracking_uri: str, worker: int) -> list[int]:
    from embedding_studio.tracking import ExperimentsManager

    manager = ExperimentsManager(tracking_uri=tracking_uri)
    indexes = []
    for attempt in range(2):
        iteration = manager.start_iteration("shared_plugin", f"worker{worker}")
        with manager.run(iteration, {"attempt": attempt}) as run_id:
            manager.log_metrics(run_id, {"val_ndcg_at_10": 0.1 * attempt})
        indexes.append(iteration.index)
    return indexes


@pytest.mark.integration
def test_workers_opening_a_fresh_store_at_once_get_distinct_iterations(tmp_path: Path) -> None:
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    with multiprocessing.get_context("fork").Pool(3) as pool:
        results = pool.starmap(_start_iterations, [(tracking_uri, worker) for worker in range(3)])
    assert sorted(index for indexes in results for index in indexes) == [1, 2, 3, 4, 5, 6]
