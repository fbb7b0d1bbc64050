"""The ``embedding-studio`` command. Each command group lives in its own module of this package."""

from __future__ import annotations

import typer

from embedding_studio.cli.clickstream import clickstream_app
from embedding_studio.cli.demo import demo
from embedding_studio.cli.models import models_app
from embedding_studio.cli.report import report
from embedding_studio.cli.serve import serve
from embedding_studio.cli.tasks import finetune, reindex, search, status, tasks_app
from embedding_studio.cli.worker import worker

app = typer.Typer(
    name="embedding-studio",
    help="Embedding Studio: fine-tune your search embedding model on your users' clicks.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(clickstream_app, name="clickstream")
app.command("serve")(serve)
app.command("worker")(worker)
app.command("finetune")(finetune)
app.command("reindex")(reindex)
app.command("search")(search)
app.command("status")(status)
app.add_typer(tasks_app, name="tasks")
app.add_typer(models_app, name="models")
app.command("demo")(demo)
app.command("report")(report)


@db_app.command("upgrade", help="Apply the database migrations (the API and workers also do this on start).\n\n"
                "Example: embedding-studio db upgrade")
def db_upgrade() -> None:
    from rich.console import Console

    from embedding_studio.cli.errors import friendly_errors
    from embedding_studio.db import upgrade_database
    from embedding_studio.db.migrate import current_revision

    with friendly_errors():
        upgrade_database()
        Console().print(f"[green]database at revision[/green] {current_revision()}")


if __name__ == "__main__":
    app()
