"""Ids a user is shown can be typed back: whole or a unique prefix, and an ambiguous prefix lists the candidates."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from embedding_studio.cli.main import app

if TYPE_CHECKING:
    from embedding_studio.tasks.repository import TaskRepository
    from embedding_studio.vectordb import VectorStore

pytestmark = pytest.mark.integration

runner = CliRunner()

# Two tasks share their first ten characters, a third shares nothing with them.
TWINS = ("abcdef0123" + "1" * 22, "abcdef0123" + "2" * 22)
LONER = "9" * 32


def _flat(output: str) -> str:
    return " ".join(output.split())


@pytest.fixture()
def tasks(clean_db: str, monkeypatch: pytest.MonkeyPatch, task_repository: TaskRepository) -> Iterator[list[str]]:
    from embedding_studio.tasks import TaskKind, TaskStatus, repository

    ids = iter([*TWINS, LONER])
    monkeypatch.setattr(repository, "new_task_id", lambda: next(ids))
    for _ in range(3):
        task, _ = task_repository.create_task(TaskKind.reindex, {"dest_model_id": "m"})
        task_repository.finish_task(task.id, TaskStatus.done, message="indexed 3 items")
    yield [*TWINS, LONER]


def test_a_unique_prefix_is_accepted_by_tasks_show_and_report(tasks: list[str]) -> None:
    shown = runner.invoke(app, ["tasks", "show", "999999"])
    assert shown.exit_code == 0, shown.output
    assert f"id: {LONER}" in _flat(shown.output)

    report = runner.invoke(app, ["report", "abcdef01231"])
    assert report.exit_code == 1
    assert f"task {TWINS[0]} is a reindex task" in _flat(report.output)  # found, then refused for its kind


def test_an_ambiguous_prefix_lists_the_candidates(tasks: list[str]) -> None:
    for command in (["tasks", "show", "abcdef"], ["tasks", "cancel", "abcdef"], ["report", "abcdef"]):
        result = runner.invoke(app, command, env={"COLUMNS": "300"})
        output = _flat(result.output)
        assert result.exit_code == 1, output
        assert "'abcdef' starts the id of 2 tasks" in output and "Type more of the id" in output
        assert TWINS[0] in output and TWINS[1] in output
        assert "Traceback" not in output


def test_tasks_list_prints_ids_that_resolve_back_to_their_task(
    tasks: list[str], task_repository: TaskRepository
) -> None:
    listed = runner.invoke(app, ["tasks", "list"], env={"COLUMNS": "60"})  # narrow: ids must still be whole
    assert listed.exit_code == 0, listed.output
    printed = re.findall(r"^│ ([0-9a-f]{8,32}) ", listed.output, flags=re.MULTILINE)
    assert sorted(printed) == sorted(["abcdef01231", "abcdef01232", "99999999"])
    assert sorted(task_repository.resolve_task_id(prefix) for prefix in printed) == sorted(tasks)


def test_a_shortened_run_id_names_the_best_run_of_a_fine_tuning_task(
    clean_db: str, task_repository: TaskRepository, vector_store: VectorStore
) -> None:
    from embedding_studio.tasks import AmbiguousIdError, TaskKind, TaskStatus
    from embedding_studio.tasks.model_ids import resolve_model_id

    for run_id in ("f00d" + "1" * 28, "f00d" + "2" * 28):
        task, _ = task_repository.create_task(TaskKind.fine_tuning, {"batch_id": 1})
        task_repository.finish_task(task.id, TaskStatus.done, best_run_id=run_id, result={})

    def resolve(id_or_prefix: str) -> str:
        return resolve_model_id(task_repository, vector_store, id_or_prefix)

    assert resolve("f00d1") == "f00d" + "1" * 28
    assert resolve("all-MiniLM-L6-v2") == "all-MiniLM-L6-v2"  # names are never completed
    assert resolve("beef") == "beef"  # unknown: left for the model check to explain
    with pytest.raises(AmbiguousIdError, match="'f00d' starts the id of 2 models"):
        resolve("f00d")
