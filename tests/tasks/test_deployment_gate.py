"""The deployment gate: the pure decision, then the fine-tuning worker deciding on what the pipeline measured.

The worker tests run the real worker function on the real task table and blue pointer with
``run_fine_tuning`` replaced by a fake that returns chosen figures, so every branch of the gate is
exercised in a second; tests/tasks/test_deployment_gate_worker.py runs the real pipeline in a worker process.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import ValidationError

from embedding_studio.tasks import FineTuningTaskParams, LoaderSpec, TaskKind, TaskStatus, index_catalog
from embedding_studio.tasks.deployment import DeploymentDecision, blue_changed_decision, deployment_decision
from embedding_studio.vectordb import VectorStore

from .fake_pipeline import FakePipeline, FakeResult
from .worker_process import clear_queue

if TYPE_CHECKING:
    from embedding_studio.tasks.repository import TaskRepository

# ------------------------------------------------------------------------------------------ the decision


def test_a_worse_model_is_not_deployed_and_the_reason_gives_both_figures() -> None:
    decision = deployment_decision(0.41, 0.43, blue_model_id="blue-model")
    assert decision == DeploymentDecision(
        deployed=False,
        reason="not deployed: NDCG@10 0.4100 against blue 0.4300",
        metric="val_ndcg_at_10",
        candidate=0.41,
        blue=0.43,
        blue_model_id="blue-model",
    )


def test_a_better_or_equal_model_is_deployed() -> None:
    assert deployment_decision(0.43, 0.41, blue_model_id="b").reason == "deployed: NDCG@10 0.4300 against blue 0.4100"
    equal = deployment_decision(0.43, 0.43, blue_model_id="b")
    assert equal.deployed and equal.reason == "deployed: NDCG@10 0.4300 against blue 0.4300"
    # the same figure measured twice may differ in the last bits; that is still "at least as good"
    assert deployment_decision(0.1 + 0.2 - 1e-15, 0.3, blue_model_id="b").deployed


def test_the_minimum_gain_must_be_reached() -> None:
    short = deployment_decision(0.435, 0.43, min_gain=0.01, blue_model_id="b")
    assert not short.deployed
    assert short.reason == "not deployed: NDCG@10 0.4350 against blue 0.4300 (needs a gain of at least 0.0100)"
    assert deployment_decision(0.44, 0.43, min_gain=0.01, blue_model_id="b").deployed
    with pytest.raises(ValueError, match="min_gain must be >= 0, got -0.1"):
        deployment_decision(0.5, 0.4, min_gain=-0.1)


def test_force_deploys_a_worse_model_and_says_so() -> None:
    forced = deployment_decision(0.41, 0.43, forced=True, blue_model_id="b")
    assert forced.deployed and forced.forced
    assert forced.reason == "deployed (forced): NDCG@10 0.4100 against blue 0.4300"
    # a model that passes on its own is not reported as forced through
    assert deployment_decision(0.45, 0.43, forced=True, blue_model_id="b").reason.startswith("deployed: ")


def test_without_a_blue_model_there_is_nothing_to_compare_with() -> None:
    decision = deployment_decision(0.2, None)
    assert decision.deployed and decision.reason == "deployed: no blue model to compare with"


def test_a_missing_figure_is_not_taken_on_faith() -> None:
    no_candidate = deployment_decision(None, 0.43, blue_model_id="b")
    assert not no_candidate.deployed
    assert "the best model has no NDCG@10 (val_ndcg_at_10) to compare" in no_candidate.reason
    no_blue_figure = deployment_decision(0.5, None, blue_model_id="blue-model")
    assert not no_blue_figure.deployed and "blue model blue-model has no NDCG@10" in no_blue_figure.reason
    assert deployment_decision(None, 0.43, forced=True, blue_model_id="b").deployed


def test_a_metric_where_lower_is_better_is_compared_the_other_way() -> None:
    assert deployment_decision(0.5, 0.6, metric="val_loss", blue_model_id="b", higher_is_better=False).deployed
    worse = deployment_decision(0.7, 0.6, metric="val_loss", blue_model_id="b", higher_is_better=False)
    assert not worse.deployed and worse.reason == "not deployed: val_loss 0.7000 against blue 0.6000"


def test_other_metrics_are_named_for_people() -> None:
    assert "Recall@10 0.9000" in deployment_decision(0.9, 0.8, metric="val_recall_at_10", blue_model_id="b").reason
    assert "MRR 0.5000" in deployment_decision(0.5, 0.4, metric="val_mrr", blue_model_id="b").reason


def test_a_blue_model_that_changed_meanwhile_stops_the_deployment() -> None:
    stale = blue_changed_decision(0.5, 0.4, "val_ndcg_at_10", "old-blue", "new-blue")
    assert not stale.deployed and "blue changed from old-blue to new-blue while fine-tuning" in stale.reason
    assert blue_changed_decision(0.5, 0.4, "val_ndcg_at_10", None, "new-blue", forced=True).deployed


def test_the_decision_survives_json() -> None:
    decision = deployment_decision(0.41, 0.43, min_gain=0.01, blue_model_id="b")
    assert DeploymentDecision.from_dict({**decision.as_dict(), "unknown_later_field": 1}) == decision


def test_task_params_default_to_the_plain_gate_and_refuse_a_negative_gain() -> None:
    params = FineTuningTaskParams(batch_id=1)
    assert params.force_deploy is False and params.min_deploy_gain == 0.0
    with pytest.raises(ValidationError, match="min_deploy_gain"):
        FineTuningTaskParams(batch_id=1, min_deploy_gain=-0.01)


# -------------------------------------------------------------------- the worker, on a fake pipeline


@pytest.fixture()
def blue(clean_db: str, tiny_models: tuple[str, str], catalog: Path, vector_store: VectorStore) -> Iterator[str]:
    """The catalog indexed with the first tiny model, deployed as blue."""
    clear_queue()
    index_catalog(tiny_models[0], LoaderSpec(name="jsonl_catalog", options={"path": str(catalog)}), store=vector_store)
    yield tiny_models[0]
    clear_queue()


def _run_fine_tuning_task(
    tasks: TaskRepository, monkeypatch: pytest.MonkeyPatch, pipeline: FakePipeline, **params: Any
) -> Any:
    from embedding_studio.tasks import TaskWorkers

    monkeypatch.setattr("embedding_studio.finetuning.run_fine_tuning", pipeline)
    task, _ = tasks.create_task(
        TaskKind.fine_tuning, FineTuningTaskParams(batch_id=1, **params).model_dump(mode="json")
    )
    TaskWorkers(tasks, VectorStore(tasks.database)).fine_tuning_worker(task.id)
    return tasks.get_task(task.id)


def test_a_model_worse_than_blue_leaves_blue_and_ends_done_with_the_reason(
    blue: str, monkeypatch: pytest.MonkeyPatch, task_repository: TaskRepository, vector_store: VectorStore
) -> None:
    pipeline = FakePipeline(FakeResult({"val_ndcg_at_10": 0.41}, {"val_ndcg_at_10": 0.43}))
    task = _run_fine_tuning_task(task_repository, monkeypatch, pipeline, deploy_as_blue=True)

    assert pipeline.calls[0]["reference_model_id"] == blue
    assert task.status is TaskStatus.done and task.error is None
    assert task.result["deployment"]["deployed"] is False
    assert task.result["deployment"]["reason"] == "not deployed: NDCG@10 0.4100 against blue 0.4300"
    assert task.result["deployment"]["blue_model_id"] == blue
    assert task.result["reindex_task_id"] is None and task.result["blue_metrics"] == {"val_ndcg_at_10": 0.43}
    assert task.progress_message == "not deployed: NDCG@10 0.4100 against blue 0.4300"
    assert task_repository.child_tasks(task.id) == []
    assert vector_store.get_deployment().blue_model_id == blue


def test_a_model_at_least_as_good_as_blue_is_deployed_through_a_child_reindex(
    blue: str, monkeypatch: pytest.MonkeyPatch, task_repository: TaskRepository
) -> None:
    pipeline = FakePipeline(FakeResult({"val_ndcg_at_10": 0.43}, {"val_ndcg_at_10": 0.41}))
    task = _run_fine_tuning_task(task_repository, monkeypatch, pipeline, deploy_as_blue=True)

    assert task.status is TaskStatus.done
    assert task.result["deployment"]["deployed"] is True
    children = task_repository.child_tasks(task.id)
    assert [child.id for child in children] == [task.result["reindex_task_id"]]
    assert children[0].params["dest_model_id"] == "f" * 32 and children[0].params["deploy_as_blue"] is True
    assert task.progress_message == (
        f"deployed: NDCG@10 0.4300 against blue 0.4100; reindex task {children[0].id} deploys it"
    )


def test_force_deploy_and_min_deploy_gain_reach_the_gate(
    blue: str, monkeypatch: pytest.MonkeyPatch, task_repository: TaskRepository
) -> None:
    worse = FakeResult({"val_ndcg_at_10": 0.41}, {"val_ndcg_at_10": 0.43})
    forced = _run_fine_tuning_task(
        task_repository, monkeypatch, FakePipeline(worse), deploy_as_blue=True, force_deploy=True
    )
    assert forced.result["deployment"]["deployed"] is True and forced.result["deployment"]["forced"] is True
    assert forced.result["reindex_task_id"] and forced.progress_message.startswith("deployed (forced): NDCG@10")

    slightly_better = FakeResult({"val_ndcg_at_10": 0.435}, {"val_ndcg_at_10": 0.43})
    short = _run_fine_tuning_task(
        task_repository, monkeypatch, FakePipeline(slightly_better), deploy_as_blue=True, min_deploy_gain=0.01
    )
    assert short.result["deployment"]["deployed"] is False and short.result["deployment"]["min_gain"] == 0.01
    assert task_repository.child_tasks(short.id) == []


def test_without_a_blue_model_the_best_model_is_deployed_unmeasured(
    clean_db: str, monkeypatch: pytest.MonkeyPatch, task_repository: TaskRepository
) -> None:
    clear_queue()
    pipeline = FakePipeline(FakeResult({"val_ndcg_at_10": 0.2}, {}))
    task = _run_fine_tuning_task(task_repository, monkeypatch, pipeline, deploy_as_blue=True)
    clear_queue()
    assert pipeline.calls[0]["reference_model_id"] is None
    assert task.result["deployment"]["deployed"] is True
    assert task.result["deployment"]["reason"] == "deployed: no blue model to compare with"
    assert task.result["reindex_task_id"]


def test_without_deploy_as_blue_blue_is_not_measured_and_there_is_no_verdict(
    blue: str, monkeypatch: pytest.MonkeyPatch, task_repository: TaskRepository
) -> None:
    pipeline = FakePipeline(FakeResult({"val_ndcg_at_10": 0.41}, {}))
    task = _run_fine_tuning_task(task_repository, monkeypatch, pipeline)
    assert pipeline.calls[0]["reference_model_id"] is None
    assert task.status is TaskStatus.done and task.result["deployment"] is None
    assert task.progress_message == f"best run {'f' * 32}"


def test_blue_replaced_while_fine_tuning_is_not_overwritten(
    blue: str,
    tiny_models: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    task_repository: TaskRepository,
    vector_store: VectorStore,
) -> None:
    from embedding_studio.tasks import ReindexTaskParams, run_reindex

    def another_deployment() -> None:
        run_reindex(ReindexTaskParams(dest_model_id=tiny_models[1], deploy_as_blue=True), store=vector_store)

    pipeline = FakePipeline(FakeResult({"val_ndcg_at_10": 0.5}, {"val_ndcg_at_10": 0.4}), another_deployment)
    task = _run_fine_tuning_task(task_repository, monkeypatch, pipeline, deploy_as_blue=True)
    assert task.result["deployment"]["deployed"] is False
    assert f"blue changed from {blue} to {tiny_models[1]}" in task.result["deployment"]["reason"]
    assert vector_store.get_deployment().blue_model_id == tiny_models[1]
