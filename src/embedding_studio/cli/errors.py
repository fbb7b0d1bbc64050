"""Errors a newcomer hits are explained in one line, not shown as a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from embedding_studio.db import DatabaseUnavailableError

_console = Console(stderr=True)


class UserFacingError(RuntimeError):
    """An error whose message already tells the user what to do."""


@contextmanager
def friendly_errors() -> Iterator[None]:
    try:
        yield
    except (UserFacingError, DatabaseUnavailableError) as error:
        _console.print(f"[bold red]error:[/bold red] {error}")
        raise typer.Exit(code=1) from error
