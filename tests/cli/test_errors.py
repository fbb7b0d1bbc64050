"""What a newcomer sees when something is wrong: one explained line, no traceback, exit code 1."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from embedding_studio.cli.errors import explain, friendly_errors
from embedding_studio.cli.main import app
from embedding_studio.config import reset_settings
from embedding_studio.db import dispose_engine
from examples.demo.__main__ import app as demo_app

runner = CliRunner()


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """Each command reads the environment it is given, not settings cached by an earlier test."""
    reset_settings()
    dispose_engine()
    yield
    reset_settings()
    dispose_engine()


def run(arguments: list[str], **environment: str) -> tuple[int, str]:
    """``embedding-studio …``, or ``python -m examples.demo …`` (``make demo``) when the first word is ``demo``."""
    command, arguments = (demo_app, arguments[1:]) if arguments[:1] == ["demo"] else (app, arguments)
    # rich wraps long lines, and may break a long path at a hyphen: a wide terminal, and words compared
    result = runner.invoke(command, arguments, env={"COLUMNS": "400", **environment})
    return result.exit_code, " ".join(result.output.split())


def assert_explained(output: str) -> None:
    assert "error:" in output
    assert "Traceback" not in output


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output = run(["demo", "--quick", "--port", str(port), "--data-dir", str(tmp_path / "demo")])
    assert code == 1
    assert_explained(output)
    assert f"port {port} on 127.0.0.1 is already in use" in output
    assert not (tmp_path / "demo" / "pgdata").exists()  # nothing was started


def test_data_dir_not_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, output = run(["demo", "--quick", "--data-dir", str(blocker / "demo")])
    assert code == 1
    assert_explained(output)
    assert f"the data directory {blocker / 'demo'} is not writable" in output
    assert "--data-dir or set EMBEDDING_STUDIO_DATA_DIR" in output


def test_database_url_unreachable(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]  # nothing listens once the probe closes
    code, output = run(
        ["db", "upgrade"],
        DATABASE_URL=f"postgresql://nobody:secret@127.0.0.1:{closed_port}/nothing",
        EMBEDDING_STUDIO_DATA_DIR=str(tmp_path),
    )
    assert code == 1
    assert_explained(output)
    assert "cannot connect to the database" in output
    assert "secret" not in output  # the password is never printed
    assert "DATABASE_URL" in output


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_asked_for_without_one(tmp_path: Path) -> None:
    code, output = run(["demo", "--quick", "--data-dir", str(tmp_path / "demo")], EMBEDDING_STUDIO_DEVICE="cuda")
    assert code == 1
    assert_explained(output)
    assert "no CUDA GPU is available" in output
    assert "EMBEDDING_STUDIO_DEVICE=cpu" in output


def test_model_path_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    code, output = run(
        ["demo", "--quick", "--data-dir", str(tmp_path / "demo")], EMBEDDING_STUDIO_BASE_MODEL=str(missing)
    )
    assert code == 1
    assert_explained(output)
    assert f"no embedding model at '{missing}'" in output
    assert "that path does not exist" in output
    assert "nothing is downloaded from a hub" in output


def test_dataset_that_does_not_exist(tmp_path: Path) -> None:
    code, output = run(["demo", "--dataset", str(tmp_path / "nowhere"), "--data-dir", str(tmp_path / "demo")])
    assert code == 1
    assert_explained(output)
    assert "no dataset" in output and "msmarco" in output and "dbpedia" in output


def test_report_of_unknown_task(clean_db: str) -> None:
    code, output = run(["report", "no-such-task"])
    assert code == 1
    assert_explained(output)
    assert "task 'no-such-task' does not exist" in output


def test_busy_address_from_deep_inside_is_explained_too() -> None:
    message = explain(OSError(errno.EADDRINUSE, "Address already in use"))
    assert message is not None and "--port" in message


def test_unknown_errors_keep_their_traceback() -> None:
    assert explain(ZeroDivisionError("bug")) is None
    with pytest.raises(ZeroDivisionError), friendly_errors():
        raise ZeroDivisionError("a bug must stay visible")
