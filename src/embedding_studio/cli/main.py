"""The ``embedding-studio`` command. Each command group lives in its own module of this package."""

from __future__ import annotations

import typer

from embedding_studio.cli.clickstream import clickstream_app
from embedding_studio.cli.database import db_app
from embedding_studio.cli.models import models_app
from embedding_studio.cli.report import report
from embedding_studio.cli.search import search
from embedding_studio.cli.serve import serve
from embedding_studio.cli.tasks import finetune, reindex, status, tasks_app
from embedding_studio.cli.worker import worker

app = typer.Typer(
    name="embedding-studio",
    help="Embedding Studio: fine-tune your search embedding model on your users' clicks.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

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
app.command("report")(report)


if __name__ == "__main__":
    app()
