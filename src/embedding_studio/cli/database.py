"""``embedding-studio db upgrade|stop``, and the schema check every other command makes before it reads.

Every command that touches the tables migrates first: on a fresh data directory the first command a
newcomer types is as likely to be ``search`` or ``status`` as ``serve``, and without the schema (and the
pgvector type it creates) each of them failed deep inside a connection pool after 30 seconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from embedding_studio.cli.consoles import notes, output
from embedding_studio.cli.errors import UserFacingError, friendly_errors

if TYPE_CHECKING:
    from embedding_studio.db import Database
    from embedding_studio.db.embedded import EmbeddedServerState

db_app = typer.Typer(help="The database: schema and the embedded server.", no_args_is_help=True)


def prepare_database() -> Database:
    """Migrate the schema when it is behind this version (a no-op otherwise), saying so when it did; returns the
    process's ``Database``, which the command hands to the repositories it uses."""
    from embedding_studio.db import default_database, upgrade_database

    upgrade = upgrade_database()
    if upgrade.changed:
        notes().print(
            f"[dim]database migrated to revision {upgrade.revision} (was {upgrade.previous_revision or 'empty'})[/dim]"
        )
    return default_database()


def configured_embedded_server() -> EmbeddedServerState | None:
    """The embedded PostgreSQL of the data directory, read without starting it; None when DATABASE_URL is set."""
    from embedding_studio.config import get_settings
    from embedding_studio.db.embedded import embedded_server_state

    settings = get_settings()
    if settings.database_url:
        return None
    return embedded_server_state(settings.embedded_pg_dir)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the database migrations (every other command, the API and workers also do this on start).

    Example: embedding-studio db upgrade
    """
    from embedding_studio.db.migrate import current_revision

    with friendly_errors():
        prepare_database()
        output().print(f"[green]database at revision[/green] {current_revision()}")


@db_app.command("stop")
def db_stop(
    force: bool = typer.Option(
        False, "--force", help="Stop it even while serve, a worker or the demo still uses it (they lose it)."
    ),
) -> None:
    """Stop the embedded PostgreSQL of the data directory; the next command that needs it starts it again.

    The embedded server keeps running after serve, worker and the other commands end, so they share it and
    start fast; this stops it. With DATABASE_URL set there is no embedded server to stop.

    Example: embedding-studio db stop
    """
    from embedding_studio.config import get_settings
    from embedding_studio.db import dispose_engine
    from embedding_studio.db.embedded import processes_using_embedded_server, stop_embedded_postgres
    from embedding_studio.db.pool import close_autocommit_pools
    from embedding_studio.tasks.queue import close_sending_apps

    settings = get_settings()
    with friendly_errors():
        if settings.database_url:
            raise UserFacingError(
                "DATABASE_URL is set, so no embedded PostgreSQL is in use and there is nothing to stop here "
                "(stop that server the way it was started)"
            )
        users = processes_using_embedded_server(settings.embedded_pg_dir)
        if users and not force:
            raise UserFacingError(
                f"the embedded PostgreSQL is still used by process {', '.join(map(str, users))} (serve, worker or "
                "demo): stop them first (Ctrl-C), or pass --force to cut them off"
            )
        close_sending_apps()  # this process's own connections go first, so nothing reconnects
        close_autocommit_pools()
        dispose_engine()
        state = stop_embedded_postgres(settings.embedded_pg_dir)
    if state.running:
        output().print(f"[green]stopped[/green] the embedded PostgreSQL (pid {state.pid}, data in {state.pgdata})")
    else:
        output().print(f"the embedded PostgreSQL was not running (data in {state.pgdata})")
