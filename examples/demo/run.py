"""`python -m examples.demo` (`make demo`): the whole loop, on real public data, on a laptop with nothing installed.

It runs the product as a user would, never a shortcut around it: an embedded PostgreSQL and a local MLflow store in
a data directory, the HTTP API (`embedding-studio serve`) and a worker (`embedding-studio worker`) as separate
processes, and every request through the public Python client (`embedding_studio.client`): the catalog indexed by a
reindex task, simulated users searching and clicking, a released batch, a fine-tuning task with `deploy_as_blue`,
its reindex and the blue flip. Quality is measured the way a user sees it: held-out queries sent to the search
endpoint before and after, scored against the dataset's graded relevance judgments.

The simulated users click with a position-based click model over what search showed them, so the clickstream
carries the same position bias real clicks do. On a dataset with its own training split (NFCorpus, the default:
``data/nfcorpus`` in the repository) users search the training queries and click by the training judgments, and the
dataset's test queries are the held-out ones, scored by the test judgments: no held-out query or judgment is ever
seen by the clickstream. The change in NDCG@10 comes with a 95% paired bootstrap interval over the held-out queries,
because a few hundred queries cannot tell a small gain from noise without one.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn

from embedding_studio.cli.errors import UserFacingError, ensure_writable_directory
from embedding_studio.cli.serve import ensure_port_is_free, free_port
from embedding_studio.client import ApiError, EmbeddingStudioClient
from embedding_studio.evaluation import load_beir_dataset

from .datasets import DEFAULT_DATASET, demo_catalog, demo_split, resolve_dataset, write_catalog
from .outcome import (
    DemoResult,
    best_run_kept_untrained_weights,
    deployment_outcome,
    print_outcome,
    write_demo_report,
)
from .profiles import DEMO_METHOD, PROFILES, method_options
from .services import DemoServices, stop_stale_postgres, terminate_gracefully
from .users import follow_task, measure, play_sessions


@dataclass
class DemoOptions:
    """The demo's command line (``python -m examples.demo --help``)."""

    quick: bool = False
    dataset: str = DEFAULT_DATASET  # a name in the repository's data/, or a BEIR folder's path
    data_dir: Path | None = None
    port: int | None = None
    reuse: bool = False
    seed: int = 0
    keep_serving: bool = False


@contextmanager
def _step(progress: Progress, description: str, total: float | None = 100.0) -> Iterator[Any]:
    step = progress.add_task(description, total=total)
    started = time.monotonic()
    yield step
    progress.update(step, completed=total if total is not None else 1, total=total or 1)
    progress.update(step, description=f"{description} [dim]({time.monotonic() - started:.0f} s)[/dim]")
    if not progress.console.is_terminal:  # CI logs get one line per step instead of a live display
        progress.console.print(f"done: {description} ({time.monotonic() - started:.0f} s)")


def run_demo(options: DemoOptions, console: Console | None = None) -> DemoResult:
    """Run the whole loop; returns the before/after figures and where everything was written."""
    from embedding_studio.config import get_settings
    from embedding_studio.reporting.collect import compare_evaluations
    from embedding_studio.tracking import ExperimentsManager

    console = console or Console()
    profile = PROFILES["quick" if options.quick else "full"]
    started = time.monotonic()
    timings: dict[str, float] = {}

    # Preflight: everything a newcomer can get wrong fails here, before any server starts.
    dataset = load_beir_dataset(resolve_dataset(options.dataset))
    data_dir = options.data_dir or (get_settings().data_dir / "demo")
    data_dir = ensure_writable_directory(Path(data_dir).expanduser().resolve())
    port = options.port if options.port is not None else free_port()
    ensure_port_is_free("127.0.0.1", port)
    base_model = _check_base_model()
    if os.environ.get("DATABASE_URL") or os.environ.get("MLFLOW_TRACKING_URI"):
        console.print(
            "[yellow]The demo uses its own embedded PostgreSQL and MLflow store in the data directory; "
            "DATABASE_URL / MLFLOW_TRACKING_URI are left alone.[/yellow]"
        )

    if not options.reuse:
        stop_stale_postgres(data_dir / "pgdata")
        for child in ("pgdata", "mlflow.db", "mlartifacts", "model-cache", "reports", "logs", "catalog"):
            target = data_dir / child
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()

    catalog = demo_catalog(dataset, profile, options.seed)
    split = demo_split(catalog, profile, options.seed)
    catalog_path = write_catalog(catalog, data_dir / "catalog" / "corpus.jsonl")
    held_out_source = "its own test queries" if catalog.has_train_split else "a random share of its queries"
    console.print(
        f"[bold]Embedding Studio demo[/bold] ({profile.name}): {catalog.name}, {len(catalog.corpus):,} items, "
        f"{len(split.train)} training queries, {len(split.test)} held-out queries ({held_out_source}), "
        f"base model {base_model}\ndata directory: {data_dir}"
    )

    services = DemoServices(data_dir, port, catalog_path)
    tracker = ExperimentsManager(tracking_uri=services.mlflow_uri)  # the demo's store, whatever the user's is
    client = EmbeddingStudioClient(services.api_url, timeout=60.0)
    stack = ExitStack()
    stack.enter_context(terminate_gracefully())
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            with _step(progress, "starting PostgreSQL, the API and a worker", total=3) as step:
                services.start_database()
                progress.advance(step)
                services.start_worker()
                services.start_api(client)
                progress.advance(step, 2)
            timings["start"] = time.monotonic() - started

            mark = time.monotonic()
            with _step(progress, f"indexing {len(catalog.corpus):,} items with {base_model}") as step:
                task_id = client.create_reindex_task(
                    base_model,
                    deploy_as_blue=True,
                    loader={"name": "jsonl_catalog", "options": {"path": str(catalog_path)}},
                ).id
                follow_task(
                    client,
                    services,
                    "reindex",
                    task_id,
                    lambda fraction, _: progress.update(step, completed=100 * fraction),
                )
            timings["index"] = time.monotonic() - mark

            mark = time.monotonic()
            with _step(progress, f"searching {len(split.test)} held-out queries (before)", total=1):
                before = measure(client, catalog, split.test)
                client.release_batch()  # evaluation searches are never trained on
            timings["measure_before"] = time.monotonic() - mark

            mark = time.monotonic()
            planned = len(split.train) * profile.sessions_per_query
            with _step(progress, f"users search and click: {planned} sessions", total=planned) as step:
                sessions, clicks = play_sessions(
                    client,
                    catalog,
                    split.train,
                    profile.sessions_per_query,
                    options.seed,
                    lambda: progress.advance(step),
                )
                batch_id = int(client.release_batch().released_batch_id)
            timings["sessions"] = time.monotonic() - mark

            mark = time.monotonic()
            with _step(progress, "fine-tuning on the clicks") as step:
                fine_tuning_id = client.create_fine_tuning_task(
                    batch_id,
                    method=DEMO_METHOD,
                    method_options=method_options(profile, options.seed),
                    deploy_as_blue=True,
                ).id
                fine_tuning = follow_task(
                    client,
                    services,
                    "fine-tuning",
                    fine_tuning_id,
                    lambda fraction, message: progress.update(
                        step, completed=100 * fraction, description=f"fine-tuning on the clicks: {message}"
                    ),
                )
                progress.update(step, description="fine-tuning on the clicks")
            timings["fine_tune"] = time.monotonic() - mark

            mark = time.monotonic()
            result = fine_tuning.result or {}
            best_run_id = fine_tuning.best_run_id or ""
            kept_untrained = best_run_kept_untrained_weights(tracker, result.get("experiment_id"), best_run_id)
            deployed, deployment_reason = deployment_outcome(result)
            blue_model_id = best_run_id
            if not deployed:
                # The gate kept blue: no reindex, search is unchanged, so "after" is what users get now: before.
                blue_model_id = client.list_models().blue_model_id or base_model
                progress.console.print(
                    f"[bold yellow]{escape(deployment_reason or 'not deployed')}[/bold yellow]: "
                    f"search keeps answering from {blue_model_id}"
                )
                after = before
            else:
                reindex_id = result.get("reindex_task_id")
                if not reindex_id:
                    raise UserFacingError(f"fine-tuning task {fine_tuning_id} finished without a reindex task")
                with _step(progress, "re-indexing with the fine-tuned model, then the blue flip") as step:
                    follow_task(
                        client,
                        services,
                        "reindex",
                        str(reindex_id),
                        lambda fraction, _: progress.update(step, completed=100 * fraction),
                    )
                    blue = client.list_models().blue_model_id
                    if blue != best_run_id:
                        raise UserFacingError(f"search answers from {blue!r}, not the fine-tuned model {best_run_id!r}")
                timings["reindex"] = time.monotonic() - mark

                mark = time.monotonic()
                with _step(progress, f"searching {len(split.test)} held-out queries (after)", total=1):
                    after = measure(client, catalog, split.test)
                timings["measure_after"] = time.monotonic() - mark

            with _step(progress, "writing the report", total=1):
                held_out = compare_evaluations(before, after, catalog, bootstrap_seed=options.seed)
                report_path = write_demo_report(
                    catalog,
                    held_out,
                    fine_tuning,
                    tracker,
                    base_model,
                    batch_id,
                    sessions,
                    clicks,
                    split,
                    data_dir,
                    profile,
                    kept_untrained,
                )
        timings["total"] = time.monotonic() - started
        demo = DemoResult(
            task_id=fine_tuning_id,
            batch_id=batch_id,
            before=before.metrics,
            after=after.metrics,
            report_path=report_path,
            data_dir=data_dir,
            mlflow_uri=services.mlflow_uri,
            api_url=services.api_url,
            blue_model_id=blue_model_id,
            sessions=sessions,
            clicks=clicks,
            kept_untrained_weights=kept_untrained,
            timings=timings,
            deployed=deployed,
            deployment_reason=deployment_reason,
            ndcg_change=held_out.ndcg_change,
            held_out_queries=held_out.query_count,
        )
        (data_dir / "demo-summary.json").write_text(json.dumps(demo.summary(), indent=1), encoding="utf-8")
        print_outcome(console, demo, options.keep_serving)
        if options.keep_serving:
            _serve_until_interrupted(console, services)
        return demo
    except ApiError as error:  # the demo's own requests are right: a refusal is worth one line and the API's log
        raise UserFacingError(
            f"the demo's API refused a request ({error}); see {services.logs_dir / 'api.log'}"
        ) from error
    finally:
        client.close()
        services.stop()
        stack.close()


def _check_base_model() -> str:
    """The base model must load without a hub: a missing path or an absent GPU fails here, in one line."""
    from embedding_studio.config import get_settings
    from embedding_studio.models.device import resolve_device
    from embedding_studio.models.errors import ModelNotFoundError
    from embedding_studio.models.loading import packaged_model_path

    settings = get_settings()
    resolve_device(settings.device)
    name = settings.base_model
    if packaged_model_path(name) is None:
        directory = Path(name).expanduser()
        if not ((directory / "modules.json").is_file() or (directory / "embedding_studio.json").is_file()):
            raise ModelNotFoundError(
                f"no embedding model at {name!r} (EMBEDDING_STUDIO_BASE_MODEL)"
                + ("" if directory.exists() else ": that path does not exist")
            )
    return name


def _serve_until_interrupted(console: Console, services: DemoServices) -> None:
    console.print(f"\nThe API keeps serving on {services.api_url} (docs at {services.api_url}/docs); Ctrl-C stops it.")
    try:
        while True:
            services.check_alive()
            time.sleep(1.0)
    except KeyboardInterrupt:
        console.print("stopping")
