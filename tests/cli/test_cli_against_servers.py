"""The README's loop, typed as a user types it, against real servers: ``embedding-studio serve`` (uvicorn on a free
port) and ``embedding-studio worker`` as processes, on the test session's embedded PostgreSQL.

Users search and click through the HTTP API; the CLI indexes the catalog (``reindex --follow``), releases the
batch, fine-tunes and deploys (``finetune --follow``), and reports with ``search``, ``status``, ``tasks list`` and
``models list``. Every task is run by the worker process, none in this one. Tiny models built from a config in
code stand in for all-MiniLM-L6-v2. ``finetune`` runs the default method with two trials (``--method-options``),
not its eight: the search itself is tested elsewhere, and here it would be half the test's time.

The CLI runs in this process through Typer's CliRunner (the server and the worker are the processes under test;
a subprocess per command would only add the import time of torch to each).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from embedding_studio.cli.main import app

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tasks.worker_process import clear_queue, start_worker, stop_worker, write_catalog  # noqa: E402

pytestmark = pytest.mark.integration

runner = CliRunner()
CATALOG_SIZE = 40
QUERY_COUNT = 16


def _flat(output: str) -> str:
    """Rich wraps long lines at the terminal width; compare text with single spaces."""
    return " ".join(output.split())


def _cli(*args: str) -> str:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, f"embedding-studio {' '.join(args)} exited {result.exit_code}:\n{result.output}"
    return result.output


def _free_port() -> int:
    """A port the OS says is free now, so parallel runs never race for a fixed number."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Servers:
    """What the test talks to: the API's URL, the processes' log, the catalog and two tiny models on disk."""

    base_url: str
    log: Path
    catalog: Path
    first_model: str
    start_model: str


@pytest.fixture()
def servers(clean_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Servers]:
    """The API and a worker as processes sharing this test's database, data directory and MLflow store, configured
    as an install would be: the catalog loader and base model in the environment."""
    from embedding_studio.config import reset_settings
    from embedding_studio.models.tiny import tiny_model_directory

    first = str(tiny_model_directory(tmp_path / "tiny-first", seed=0, dim=32))
    start = str(tiny_model_directory(tmp_path / "tiny-start", seed=1, dim=32))
    catalog = write_catalog(tmp_path / "corpus.jsonl", CATALOG_SIZE)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("EMBEDDING_STUDIO_DEVICE", "cpu")
    monkeypatch.setenv("EMBEDDING_STUDIO_HPO_STARTUP_TRIALS", "1")
    monkeypatch.setenv("EMBEDDING_STUDIO_BASE_MODEL", start)
    monkeypatch.setenv("EMBEDDING_STUDIO_CATALOG_LOADER", "jsonl_catalog")
    monkeypatch.setenv("EMBEDDING_STUDIO_CATALOG_LOADER_OPTIONS", json.dumps({"path": str(catalog)}))
    reset_settings()
    clear_queue()
    log = tmp_path / "servers.log"
    port = _free_port()
    monkeypatch.setenv("EMBEDDING_STUDIO_API_PORT", str(port))  # where the CLI finds the API, as an install would
    reset_settings()
    with log.open("ab") as handle:
        api = subprocess.Popen(
            [sys.executable, "-m", "embedding_studio.cli.main", "serve", "--port", str(port), "--log-level", "warning"],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
        )
    worker = start_worker(log)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert api.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-4000:]
            time.sleep(0.2)
        yield Servers(base_url, log, catalog, first, start)
    finally:
        stop_worker(worker)
        stop_worker(api)
        clear_queue()
        reset_settings()


def _clicks_through_the_api(base_url: str) -> None:
    """Users search through the API and click a shown result whose text shares the query's first word (else the
    first one): the sessions the batch is made of."""
    from embedding_studio.client import EmbeddingStudioClient
    from embedding_studio.models.tiny import COMMON_WORDS

    words = COMMON_WORDS[:300]
    with EmbeddingStudioClient(base_url) as client:
        for index in range(QUERY_COUNT):
            query = f"{words[(index * 7) % 300]} {words[(index * 13 + 3) % 300]}"
            for user in range(2):
                answer = client.search(query, limit=8, user_id=f"user-{user}")
                clicked = answer.results[(index + user) % len(answer.results)].item_id
                client.add_click(answer.session_id, "c1", clicked)


def test_the_readme_loop_through_the_cli_against_a_real_api_and_worker(servers: Servers) -> None:
    from embedding_studio.client import EmbeddingStudioClient

    first, start = servers.first_model, servers.start_model
    indexed = _flat(
        _cli(
            "reindex",
            first,
            "--loader",
            "jsonl_catalog",
            "--loader-options",
            json.dumps({"path": str(servers.catalog)}),
            "--deploy-as-blue",
            "--follow",
        )
    )
    assert f"search now answers from model {first}: {CATALOG_SIZE} items" in indexed, indexed

    _clicks_through_the_api(servers.base_url)
    released = _flat(_cli("clickstream", "release"))
    assert f"with {QUERY_COUNT * 2} sessions" in released, released
    batch_id = released.split("released batch ", 1)[1].split()[0]

    # Forced, so the loop deploys whatever the tiny model learnt; the gate's own verdicts are tested elsewhere.
    tuned = _flat(
        _cli(
            "finetune",
            "--batch-id",
            batch_id,
            "--model",
            start,
            "--method-options",
            '{"max_evals": 2}',
            "--deploy-as-blue",
            "--force-deploy",
            "--follow",
        )
    )
    assert "deployed (forced): NDCG@10 " in tuned, tuned
    best_run = tuned.split("best run: ", 1)[1].split()[0]
    assert f"search now answers from model {best_run}: {CATALOG_SIZE} items" in tuned, tuned

    # The CLI's search and the API's answer from the same (new) model, in the same order.
    searched = _flat(_cli("search", "water", "--limit", "3"))
    with EmbeddingStudioClient(servers.base_url) as client:
        answer = client.search("water", limit=3)
    assert answer.model_id == best_run and best_run[:8] in searched, searched  # the run id, or its prefix
    positions = [searched.index(f" {hit.item_id} ") for hit in answer.results]
    assert positions == sorted(positions), (searched, [hit.item_id for hit in answer.results])

    status = _flat(_cli("status"))
    assert f"blue model: {best_run}, rollback to {first}" in status, status
    assert "tasks: 3 done" in status, status

    listed = _flat(_cli("tasks", "list"))
    assert listed.count(" done ") == 3 and "fine_tuning" in listed and listed.count("reindex") == 2, listed
    assert "deployed (forced)" in listed, listed

    models = _flat(_cli("models", "list").replace("│", " "))
    assert f"blue {best_run} blue {CATALOG_SIZE} 32 " in models, models
    assert f"previous {first} ready {CATALOG_SIZE} 32 " in models, models
