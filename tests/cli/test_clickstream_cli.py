"""The clickstream and serve commands, run in-process against the real embedded PostgreSQL."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from embedding_studio.cli.main import app

pytestmark = pytest.mark.integration

runner = CliRunner()


def _session(session_id: str, clicked: str | None = None) -> dict[str, object]:
    events = [{"event_id": f"{session_id}-e1", "item_id": clicked}] if clicked else []
    return {"session_id": session_id, "query": "q", "results": ["a", "b"], "events": events, "user_id": "u"}


def test_import_release_and_stats(clean_db: str, tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    lines = [
        json.dumps(_session("s1", "a")),
        "{oops",
        json.dumps(_session("s2")),
        json.dumps(
            {"session_id": "s3", "query": "q", "results": ["a"], "events": [{"event_id": "x", "item_id": "zz"}]}
        ),
    ]
    path.write_text("\n".join(lines) + "\n")

    imported = runner.invoke(app, ["clickstream", "import", str(path)])
    assert imported.exit_code == 0, imported.output
    assert "2 inserted" in imported.output and "2 rejected" in imported.output
    assert "invalid JSON" in imported.output and "'zz'" in imported.output

    stats = runner.invoke(app, ["clickstream", "stats"])
    assert stats.exit_code == 0 and "collecting" in stats.output

    released = runner.invoke(app, ["clickstream", "release"])
    assert released.exit_code == 0 and "with 2 sessions" in released.output
    batch_id = released.output.split("released batch ")[1].split()[0]
    detail = runner.invoke(app, ["clickstream", "stats", "--batch-id", batch_id])
    assert detail.exit_code == 0, detail.output
    assert "sessions with clicks" in detail.output and "released" in detail.output


def test_friendly_errors(clean_db: str, tmp_path: Path) -> None:
    missing = runner.invoke(app, ["clickstream", "stats", "--batch-id", "98765"])
    assert missing.exit_code == 1 and "unknown clickstream batch 98765" in missing.output
    csv = tmp_path / "history.csv"
    csv.write_text("a,b\n")
    wrong_format = runner.invoke(app, ["clickstream", "import", str(csv)])
    assert wrong_format.exit_code == 1 and "cannot tell the format" in wrong_format.output
    assert "Traceback" not in wrong_format.output


def test_serve_refuses_a_port_in_use(clean_db: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(app, ["serve", "--host", "127.0.0.1", "--port", str(port)])
    assert result.exit_code == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.output


@pytest.mark.e2e
def test_serve_answers_over_http(clean_db: str) -> None:
    import os
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "embedding_studio.cli.main",
        "serve",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, env={**os.environ})
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "serve exited early"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not answer /health in 60 s"
            time.sleep(0.2)
        created = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/clickstream/sessions",
            json={"session_id": "over-http", "query": "q", "results": ["a"]},
        )
        assert created.status_code == 201
    finally:
        process.terminate()
        process.wait(timeout=30)
