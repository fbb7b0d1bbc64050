"""Errors a newcomer hits are explained in one line, not shown as a traceback.

Each known failure gets its message plus what to do about it. Anything else still shows its traceback:
an unexplained failure is a bug, and hiding it would make it harder to report.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.markup import escape

from embedding_studio.cli.consoles import notes
from embedding_studio.db import DatabaseUnavailableError


class UserFacingError(RuntimeError):
    """An error whose message already tells the user what to do."""


def _hint_for(error: BaseException) -> str | None:
    """What to do about an error raised by a package below the CLI, or None when it is not a known one."""
    from embedding_studio.evaluation.beir import DatasetError
    from embedding_studio.models.errors import DeviceUnavailableError, ModelNotFoundError

    if isinstance(error, UserFacingError):
        return ""
    if isinstance(error, DatabaseUnavailableError):
        return (
            ""
            if "DATABASE_URL" in str(error)
            else "Check DATABASE_URL (postgresql://user:password@host:5432/dbname), or unset it to use the embedded "
            "server."
        )
    if isinstance(error, DeviceUnavailableError):
        return "" if "EMBEDDING_STUDIO_DEVICE" in str(error) else "Set EMBEDDING_STUDIO_DEVICE=cpu or auto."
    if isinstance(error, ModelNotFoundError):
        return (
            "Use all-MiniLM-L6-v2 (shipped), a directory written by Embedding Studio, or a sentence-transformers "
            "directory; nothing is downloaded from a hub."
        )
    if isinstance(error, DatasetError):
        return "A dataset folder needs corpus.jsonl, queries.jsonl and qrels/test.tsv (the BEIR layout)."
    if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
        return "Another process listens on that port: stop it, or pass --port / set EMBEDDING_STUDIO_API_PORT."
    if isinstance(error, PermissionError):
        return "Set EMBEDDING_STUDIO_DATA_DIR (or --data-dir) to a directory you can write to."
    return None


def explain(error: BaseException) -> str | None:
    """The one-line explanation printed for ``error``, or None when it is not an error we can explain."""
    hint = _hint_for(error)
    if hint is None:
        return None
    message = str(error)
    if isinstance(error, OSError) and error.errno == errno.EADDRINUSE and "in use" not in message:
        message = f"address already in use ({message})"
    return f"{message} {hint}".strip()


@contextmanager
def friendly_errors() -> Iterator[None]:
    try:
        yield
    except Exception as error:
        explanation = explain(error)
        if explanation is None:
            raise
        notes().print(f"[bold red]error:[/bold red] {escape(explanation)}")
        raise typer.Exit(code=1) from error


def ensure_writable_directory(path: Path, what: str = "data directory") -> Path:
    """Create ``path`` when missing and prove we can write in it, before any server puts files there."""
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-check-{os.getpid()}"
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as error:
        raise UserFacingError(
            f"the {what} {path} is not writable ({error.strerror or error}). "
            "Pass --data-dir or set EMBEDDING_STUDIO_DATA_DIR to a directory you can write to."
        ) from error
    return path
