"""Where the CLI writes, made afresh for each use.

A rich ``Console`` reads ``COLUMNS`` when it is made and keeps that width for good, so one made at import would
wrap every later command at whatever width the process had at that moment: in one process that runs several
commands (a notebook, an embedding program, the tests' ``CliRunner``) the output of a command would depend on which
command imported the module first.
"""

from __future__ import annotations

from rich.console import Console


def output() -> Console:
    """A command's own output (stdout), the part a user pipes."""
    return Console()


def notes() -> Console:
    """Errors and notes (stderr), so that a command's own output stays clean to pipe."""
    return Console(stderr=True)
