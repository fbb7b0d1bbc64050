"""``embedding-studio models list|rollback``: the indexed models and the blue pointer."""

from __future__ import annotations

import typer
from rich.table import Table

from embedding_studio.cli.consoles import output
from embedding_studio.cli.database import prepare_database
from embedding_studio.cli.errors import UserFacingError, friendly_errors
from embedding_studio.cli.tasks import whole_model_id

models_app = typer.Typer(help="Indexed models and the blue (searched) one.", no_args_is_help=True)


@models_app.command("list")
def list_models() -> None:
    """Every model with a collection, its state and item count; the blue one is marked.

    Example: embedding-studio models list
    """
    from embedding_studio.vectordb import VectorStore

    with friendly_errors():
        records = VectorStore(prepare_database()).list_models()
    table = Table("", "model", "state", "items", "dim", "indexed at")
    table.columns[1].overflow = "fold"  # whole ids, folded when narrow: a cut id could not be typed back
    for record in records:
        mark = "[bold blue]blue[/]" if record.is_blue else ("previous" if record.is_previous_blue else "")
        table.add_row(
            mark,
            record.id,
            record.collection_state or "-",
            str(record.item_count),
            str(record.dim),
            record.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    output().print(table if records else "no model has been indexed yet")


@models_app.command("rollback")
def rollback(
    model_id: str | None = typer.Argument(
        None, help="The blue model to roll back (a check; default: whichever is blue)."
    ),
) -> None:
    """Flip search back to the previous blue model, in one transaction.

    Example: embedding-studio models rollback
    """
    from embedding_studio import vectordb
    from embedding_studio.tasks import TaskRepository

    with friendly_errors():
        database = prepare_database()
        tasks, store = TaskRepository(database), vectordb.VectorStore(database)
        try:
            deployment = store.rollback(from_model_id=whole_model_id(tasks, store, model_id))
        except (vectordb.RollbackUnavailableError, vectordb.EmptyCollectionError) as error:
            raise UserFacingError(str(error)) from error
    output().print(
        f"[green]blue model is now[/green] {deployment.blue_model_id} (was {deployment.previous_blue_model_id})"
    )
