"""Which batches a fine-tuning task trains on: batch_id, batch_ids or since_blue, checked against the real table."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from pydantic import ValidationError

from embedding_studio.tasks import FineTuningTaskParams, TaskKind, TaskStatus
from embedding_studio.tasks.service import InvalidTaskError, TaskService

if TYPE_CHECKING:
    from embedding_studio.tasks.repository import TaskRepository


@pytest.fixture()
def service(clean_db: str, task_repository: TaskRepository) -> TaskService:
    return TaskService(task_repository)


def _release(service: TaskService, count: int) -> list[int]:
    """``count`` released batches, each with one session (release needs none, but a real one has some)."""
    from embedding_studio.clickstream.dao import ClickstreamRepository

    clickstream = ClickstreamRepository(service.tasks.database)
    released = []
    for index in range(count):
        clickstream.add_session(f"s-{index}", "river boat", ["a", "b"])
        released.append(clickstream.release_batch().released_batch_id)
    return released


def _trained(
    tasks: TaskRepository, model_id: str, batch_ids: list[int] | None, params: dict[str, object] | None = None
) -> None:
    """A finished fine-tuning task whose best run is ``model_id``, as the worker records it."""
    task, _ = tasks.create_task(TaskKind.fine_tuning, params or {"batch_ids": batch_ids})
    tasks.start_task(task.id)
    result = {"batch_ids": batch_ids} if batch_ids is not None else {}
    tasks.finish_task(task.id, TaskStatus.done, best_run_id=model_id, result=result)


# ----------------------------------------------------------------------------------------- the params


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"batch_id": 1, "batch_ids": [2]},
        {"batch_id": 1, "since_blue": True},
        {"batch_ids": [1], "since_blue": True},
    ],
)
def test_exactly_one_way_of_choosing_batches(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="exactly one of batch_id, batch_ids or since_blue"):
        FineTuningTaskParams.model_validate(body)


def test_batch_ids_are_each_named_once_and_come_back_oldest_first() -> None:
    with pytest.raises(ValidationError, match="names batch 2 more than once"):
        FineTuningTaskParams(batch_ids=[2, 3, 2])
    assert FineTuningTaskParams(batch_ids=[3, 1]).explicit_batch_ids() == [1, 3]
    assert FineTuningTaskParams(batch_id=4).explicit_batch_ids() == [4]
    assert FineTuningTaskParams(since_blue=True).explicit_batch_ids() is None
    with pytest.raises(ValidationError):
        FineTuningTaskParams(batch_id=1, replay_share=1.5)


# ------------------------------------------------------------------------------- against the database


def test_every_named_batch_must_exist_and_be_released(service: TaskService) -> None:
    first, second = _release(service, 2)
    assert service.resolve_batch_ids(FineTuningTaskParams(batch_ids=[second, first]), None) == [first, second]

    with pytest.raises(InvalidTaskError) as unknown:
        service.resolve_batch_ids(FineTuningTaskParams(batch_ids=[first, 987]), None)
    assert "987" in str(unknown.value) and "`embedding-studio clickstream release`" in str(unknown.value)
    assert unknown.value.field == "batch_ids"

    collecting = second + 1
    with pytest.raises(InvalidTaskError) as still_collecting:
        service.resolve_batch_ids(FineTuningTaskParams(batch_id=collecting), None)
    message = str(still_collecting.value)
    assert f"batch {collecting} is still 'collecting'" in message and "embedding-studio clickstream release" in message
    assert still_collecting.value.field == "batch_id"


def test_since_blue_takes_the_batches_released_after_the_newest_one_blue_was_trained_on(
    service: TaskService,
) -> None:
    first, second, third = _release(service, 3)
    # No blue model, or a base model no fine-tuning made: every released batch.
    assert service.resolve_batch_ids(FineTuningTaskParams(since_blue=True), None) == [first, second, third]
    since_blue = FineTuningTaskParams(since_blue=True)
    assert service.resolve_batch_ids(since_blue, "all-MiniLM-L6-v2") == [first, second, third]

    _trained(service.tasks, "run-one", [first, second])
    assert service.tasks.trained_batch_ids("run-one") == [first, second]
    assert service.released_batches_since("run-one") == ([third], second)
    assert service.resolve_batch_ids(FineTuningTaskParams(since_blue=True), "run-one") == [third]

    _trained(service.tasks, "run-two", [third])
    with pytest.raises(InvalidTaskError) as nothing_new:
        service.resolve_batch_ids(FineTuningTaskParams(since_blue=True), "run-two")
    assert f"after batch {third}" in str(nothing_new.value) and "clickstream release" in str(nothing_new.value)
    assert nothing_new.value.field == "since_blue"


def test_a_task_from_before_batch_ids_were_recorded_trained_on_its_batch_id(service: TaskService) -> None:
    (first,) = _release(service, 1)
    _trained(service.tasks, "old-run", None, params={"batch_id": first})
    assert service.tasks.trained_batch_ids("old-run") == [first]
    assert service.tasks.trained_batch_ids("never-trained") is None
