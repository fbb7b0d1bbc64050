"""``embedding-studio worker``: run fine-tuning, reindex and upsert jobs from the shared queue."""

from __future__ import annotations

import logging

import typer

from embedding_studio.cli.errors import UserFacingError, friendly_errors


def worker(
    queues: list[str] = typer.Option(
        [], "--queues", "-q", help="Queues to take jobs from: fine_tuning, reindex, upsert (repeatable; default all)."
    ),
    concurrency: int | None = typer.Option(
        None, min=1, help="Jobs run at once (default: EMBEDDING_STUDIO_WORKER_CONCURRENCY or 1)."
    ),
    heartbeat_interval: float = typer.Option(10.0, min=0.1, help="Seconds between this worker's heartbeats."),
    stalled_after: float = typer.Option(
        30.0, min=0.5, help="A worker silent this long is dead: its jobs are retried or failed."
    ),
    check_every: float = typer.Option(15.0, min=0.5, help="Seconds between checks for jobs of dead workers."),
    log_level: str = typer.Option("info", help="Log level: debug, info, warning, error."),
    name: str | None = typer.Option(
        None, help="This worker's name in task progress (which worker ran which trial); default host-pid."
    ),
) -> None:
    """Run a worker until Ctrl-C. Any number of workers on any number of machines share the queue.

    Example: embedding-studio worker --queues fine_tuning --queues reindex --concurrency 1
    """
    from embedding_studio.config import get_settings
    from embedding_studio.tasks.runner import run_worker

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    names = [name.strip() for value in queues for name in value.split(",") if name.strip()]
    with friendly_errors():
        try:
            run_worker(
                queues=names or None,
                concurrency=concurrency or get_settings().worker_concurrency,
                heartbeat_interval_s=heartbeat_interval,
                stalled_after_s=stalled_after,
                check_every_s=check_every,
                name=name,
            )
        except ValueError as error:
            raise UserFacingError(str(error)) from error
