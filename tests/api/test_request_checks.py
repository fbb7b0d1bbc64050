"""Reindex and fine-tuning requests are checked when made (issue 16, item 6): a loader that cannot work, a
relative path, a model that does not exist or is already blue, an unknown method or option are answered 4xx at
once, with nothing queued; a task that is queued says where it waits and what runs first (API, CLI).

Real parts: the app in-process over ASGI, the embedded PostgreSQL, procrastinate's job table; no worker runs,
so queued tasks stay queued."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from embedding_studio.api.app import create_app
from embedding_studio.client import ApiError, EmbeddingStudioClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tasks.worker_process import clear_queue, write_catalog  # noqa: E402

if TYPE_CHECKING:
    from embedding_studio.tasks.repository import TaskRepository
    from embedding_studio.vectordb import VectorStore

pytestmark = pytest.mark.integration

runner = CliRunner()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    from embedding_studio.models.tiny import tiny_model_directory

    root = tmp_path_factory.mktemp("check-models")
    return str(tiny_model_directory(root / "first", seed=0)), str(tiny_model_directory(root / "second", seed=1))


@pytest.fixture()
def catalog(tmp_path: Path) -> Path:
    return write_catalog(tmp_path / "corpus.jsonl", 5)


@pytest.fixture()
def api(clean_db: str) -> Iterator[TestClient]:
    clear_queue()
    with TestClient(create_app(run_migrations=False), base_url="http://testserver") as http_client:
        yield http_client
    clear_queue()


def _refused(api: TestClient, body: dict, status: int = 422) -> dict:
    answer = api.post("/api/v1/reindex/tasks", json=body)
    assert answer.status_code == status, answer.text
    return answer.json()


def _task_count(tasks: TaskRepository) -> int:
    return len(tasks.list_tasks(limit=1000))


def test_a_reindex_that_could_not_work_is_refused_at_once_naming_what_is_wrong(
    api: TestClient, models: tuple[str, str], catalog: Path, task_repository: TaskRepository
) -> None:
    first, _ = models
    unknown = _refused(api, {"dest_model_id": first, "loader": {"name": "jsonl_catalgo", "options": {}}})
    assert unknown["errors"][0]["field"] == "loader"
    assert "unknown loader 'jsonl_catalgo'" in unknown["detail"] and "jsonl_catalog" in unknown["detail"]

    option = _refused(api, {"dest_model_id": first, "loader": {"name": "jsonl_catalog", "options": {"pth": "x"}}})
    assert "no option 'pth'" in option["detail"] and "path" in option["detail"]

    relative = _refused(
        api, {"dest_model_id": first, "loader": {"name": "jsonl_catalog", "options": {"path": "c.jsonl"}}}
    )
    assert "path='c.jsonl' is a relative path" in relative["detail"]

    missing = str(catalog.parent / "nowhere.jsonl")
    absent = _refused(api, {"dest_model_id": first, "loader": {"name": "jsonl_catalog", "options": {"path": missing}}})
    assert f"catalog file {missing} does not exist" in absent["detail"]

    nested = {"loaders": {"docs": {"name": "local_text", "options": {"root": "docs"}}}}
    inside = _refused(api, {"dest_model_id": first, "loader": {"name": "aggregated", "options": nested}})
    assert "loaders.docs.options.root='docs' is a relative path" in inside["detail"]

    no_model = _refused(api, {"dest_model_id": str(catalog.parent / "no-model")})
    assert no_model["errors"][0]["field"] == "dest_model_id" and "does not exist" in no_model["detail"]
    assert _task_count(task_repository) == 0  # nothing was recorded, nothing queued


def test_a_reindex_into_the_blue_model_is_a_conflict(
    api: TestClient,
    models: tuple[str, str],
    catalog: Path,
    task_repository: TaskRepository,
    vector_store: VectorStore,
) -> None:
    from embedding_studio.tasks import LoaderSpec, index_catalog

    first, _ = models
    index_catalog(first, LoaderSpec(name="jsonl_catalog", options={"path": str(catalog)}), store=vector_store)
    conflict = _refused(api, {"dest_model_id": first}, status=409)
    assert f"model {first!r} is already the blue model" in conflict["detail"]
    assert _task_count(task_repository) == 0


def test_the_client_and_the_cli_send_paths_made_absolute_in_the_callers_directory(
    api: TestClient,
    models: tuple[str, str],
    catalog: Path,
    monkeypatch: pytest.MonkeyPatch,
    task_repository: TaskRepository,
) -> None:
    from embedding_studio.cli.main import app

    first, second = models
    monkeypatch.chdir(catalog.parent)
    client = EmbeddingStudioClient("http://testserver", http_client=api)
    created = client.create_reindex_task(first, loader={"name": "jsonl_catalog", "options": {"path": "corpus.jsonl"}})
    assert created.status == "pending"
    assert task_repository.get_task(created.id).params["loader"]["options"]["path"] == str(catalog)

    result = runner.invoke(
        app,
        ["reindex", second, "--loader", "jsonl_catalog", "--loader-options", '{"path": "corpus.jsonl"}'],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == 0, result.output
    newest = task_repository.list_tasks(limit=1)[0]
    assert newest.params["loader"]["options"]["path"] == str(catalog)

    typo = runner.invoke(app, ["reindex", second, "--loader", "jsonl", "--here"], env={"COLUMNS": "300"})
    assert typo.exit_code == 1 and "unknown loader 'jsonl'; known loaders:" in " ".join(typo.output.split())
    assert "Traceback" not in typo.output

    with pytest.raises(ApiError) as refused:
        client.create_reindex_task(first, loader={"name": "jsonl_catalog", "options": {"path": "missing.jsonl"}})
    assert refused.value.status_code == 422 and str(catalog.parent / "missing.jsonl") in str(refused.value)


def test_a_fine_tuning_method_and_its_options_are_checked_when_asked_for() -> None:
    from embedding_studio.tasks.service import InvalidTaskError, check_method_exists

    with pytest.raises(InvalidTaskError, match="known methods: default_text") as unknown:
        check_method_exists("defualt_text")
    assert unknown.value.field == "method"
    with pytest.raises(InvalidTaskError, match="'bogus'.*its options: .*max_evals") as option:
        check_method_exists("default_text", {"bogus": 1})
    assert option.value.field == "method_options"
    with pytest.raises(InvalidTaskError, match="option 'max_evals' must be a whole number, got 'four'") as kind:
        check_method_exists("default_text", {"max_evals": "four"})
    assert kind.value.field == "method_options.max_evals"
    with pytest.raises(InvalidTaskError, match="max_evals must be at least 1"):
        check_method_exists("default_text", {"max_evals": 0})
    with pytest.raises(InvalidTaskError, match="relative path") as loader:
        check_method_exists("default_text", {"loader": {"name": "jsonl_catalog", "options": {"path": "c.jsonl"}}})
    assert loader.value.field == "method_options.loader"
    check_method_exists("default_text", {"max_evals": 2, "test_each_n_inputs": 1})


def test_a_queued_task_says_its_place_and_what_runs_before_it(
    api: TestClient, models: tuple[str, str], catalog: Path, task_repository: TaskRepository
) -> None:
    from embedding_studio.cli.main import app

    first, second = models
    loader = {"name": "jsonl_catalog", "options": {"path": str(catalog)}}
    ids = []
    for model in (first, second):
        answer = api.post("/api/v1/reindex/tasks", json={"dest_model_id": model, "loader": loader})
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["id"])
    upsert = api.post("/api/v1/items/upsert", json={"items": [{"item_id": "x", "text": "water"}]})
    assert upsert.status_code == 202, upsert.text

    first_out = api.get(f"/api/v1/reindex/tasks/{ids[0]}").json()
    assert first_out["queue"]["queue"] == "reindex" and first_out["queue"]["position"] == 1
    assert first_out["queue"]["ahead"] == [] and first_out["queue"]["summary"].endswith("next to run")
    second_out = api.get(f"/api/v1/reindex/tasks/{ids[1]}").json()["queue"]
    assert second_out["position"] == 2 and second_out["ahead_count"] == 1
    assert second_out["ahead"] == [{"id": ids[0], "kind": "reindex", "queue": "reindex", "status": "waiting"}]

    # A worker takes the first one (the job is "doing"): the second is next in its queue, behind a running task.
    job_id = task_repository.get_task(ids[0]).job_id
    with task_repository.database.connection() as connection:
        connection.execute("UPDATE procrastinate_jobs SET status = 'doing' WHERE id = %(id)s", {"id": job_id})
    second_out = api.get(f"/api/v1/reindex/tasks/{ids[1]}").json()["queue"]
    assert second_out["position"] == 1
    assert second_out["ahead"] == [{"id": ids[0], "kind": "reindex", "queue": "reindex", "status": "running"}]
    assert second_out["summary"] == f"waiting: 1st in the reindex queue, after reindex task {ids[0]} (running)"
    upsert_out = api.get(f"/api/v1/items/tasks/{upsert.json()['id']}").json()["queue"]
    assert upsert_out["queue"] == "upsert" and upsert_out["position"] == 1
    assert [entry["id"] for entry in upsert_out["ahead"]] == ids  # the running one, then the one waiting before it
    assert "reindex task" in upsert_out["summary"] and "(waiting, reindex queue)" in upsert_out["summary"]

    shown = runner.invoke(app, ["tasks", "show", ids[1]], env={"COLUMNS": "300"})
    assert shown.exit_code == 0, shown.output
    assert f"queue: waiting: 1st in the reindex queue, after reindex task {ids[0]} (running)" in shown.output
    listed = runner.invoke(app, ["tasks", "list"], env={"COLUMNS": "300"})
    assert listed.exit_code == 0, listed.output
    assert "waiting: 1st in the reindex queue, after reindex task" in listed.output
    assert api.get(f"/api/v1/reindex/tasks/{ids[0]}").json()["queue"] is None  # running: not waiting
