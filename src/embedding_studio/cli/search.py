"""The `search` command: try a query against the blue model and read what comes back.

Loading a model takes seconds (16 s for all-MiniLM-L6-v2 on a busy laptop) while `serve` keeps it loaded
and answers in milliseconds, so the command asks the running API when there is one, found where the
settings say it listens (``EMBEDDING_STUDIO_API_HOST``/``_PORT``, or ``--api``). It trusts an API only if
``/health`` reports the same database as this process's (another data directory's demo may well answer on
port 5000). Otherwise it loads the model itself and says where the time went, so a slow answer is not a
mystery. Either way each result shows its display payload (title and snippet), and the table is titled
with a name a person recognises, not an MLflow run hash.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from embedding_studio.cli.consoles import output
from embedding_studio.cli.database import prepare_database
from embedding_studio.cli.errors import UserFacingError, friendly_errors

if TYPE_CHECKING:
    from embedding_studio.tasks import TaskRepository
    from embedding_studio.vectordb import VectorStore


_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
#: Seconds to wait for a connection to the API: a local server accepts at once, and none costs a refusal.
CONNECT_TIMEOUT_S = 1.0
#: The API's first search after a start or a flip loads the model, which may take a while.
SEARCH_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class ShownHit:
    item_id: str
    score: float
    payload: dict[str, Any] | None


@dataclass(frozen=True)
class SearchOutcome:
    """One search, however it was answered: by the API (``api_url``) or in this process (``timings``)."""

    model_id: str
    session_id: str | None
    hits: list[ShownHit]
    api_url: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    #: why the API was not used, when one was looked for
    api_note: str | None = None


def default_api_url() -> str:
    """Where ``serve`` listens by the settings; a wildcard bind address is reached on the loopback."""
    from embedding_studio.config import get_settings

    settings = get_settings()
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(settings.api_host, settings.api_host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.api_port}"


def _ask_api(url: str, query: str, limit: int, record: bool, database_id: str) -> SearchOutcome | str:
    """The API's answer, or why it was not asked (a sentence): nothing listens, another database, a refused key."""
    import httpx

    from embedding_studio.client import ApiError, EmbeddingStudioClient
    from embedding_studio.config import get_settings

    api_keys = get_settings().api_keys
    http = httpx.Client(base_url=url.rstrip("/"), timeout=httpx.Timeout(SEARCH_TIMEOUT_S, connect=CONNECT_TIMEOUT_S))
    with EmbeddingStudioClient(url, api_key=api_keys[0] if api_keys else None, http_client=http) as client:
        try:
            health = client.health()
        except (httpx.TransportError, ApiError, ValueError):
            return f"no API answers at {url}"
        if health.get("database_id") != database_id:
            return f"the API at {url} serves another database"
        try:
            answer = client.search(query, limit=limit, record=record)
        except httpx.TransportError as error:
            return f"the API at {url} did not answer ({type(error).__name__})"
        except ApiError as error:
            if error.status_code in (401, 403):
                return f"the API at {url} refused the key (EMBEDDING_STUDIO_API_KEYS)"
            raise UserFacingError(error.detail) from error
    return SearchOutcome(
        model_id=answer.model_id,
        session_id=answer.session_id,
        hits=[ShownHit(hit.item_id, hit.score, hit.payload) for hit in answer.results],
        api_url=url,
    )


def _search_here(store: VectorStore, query: str, limit: int, record: bool, database_s: float) -> SearchOutcome:
    from embedding_studio import vectordb
    from embedding_studio.serving import ServingError
    from embedding_studio.serving.search import search_blue
    from embedding_studio.tasks import TaskError

    try:
        answer = search_blue(query, limit=limit, record_session=record, store=store)
    except (vectordb.NoBlueModelError, ServingError, TaskError) as error:
        raise UserFacingError(str(error)) from error
    return SearchOutcome(
        model_id=answer.model_id,
        session_id=answer.session_id if record else None,
        hits=[ShownHit(hit.item_id, hit.score, hit.payload) for hit in answer.hits],
        timings={"database": database_s, **answer.timings},
    )


def model_title(tasks: TaskRepository, model_id: str) -> str:
    """A model as a person knows it: a base name or path as it is; a fine-tuned one (an MLflow run id) by what it
    was trained from and on, with the run's short id to find it in MLflow."""
    if not _RUN_ID.match(model_id):
        return f"model {model_id}"
    task = tasks.fine_tuning_task_of_run(model_id)
    if task is None:
        return f"fine-tuned model (MLflow run {model_id[:8]})"
    result, params = task.result or {}, task.params or {}
    start = result.get("start_model_id") or params.get("embedding_model_id")
    batches = result.get("batch_ids") or params.get("batch_ids") or [params.get("batch_id")]
    batches = [str(batch) for batch in batches if batch is not None]
    trained_on = f" on batch{'es' if len(batches) > 1 else ''} {', '.join(batches)}" if batches else ""
    start_name = f" {model_title(tasks, str(start)).removeprefix('model ')}" if start else ""
    when = f", {task.finished_at:%Y-%m-%d %H:%M}" if task.finished_at else ""
    return f"fine-tuned{start_name}{trained_on} (MLflow run {model_id[:8]}{when})"


def _result_cell(payload: dict[str, Any] | None) -> str:
    """Title in bold, the snippet under it, any other payload fields dimmed on a last line."""
    if not payload:
        return "[dim](no payload: reindex to store titles and snippets)[/dim]"
    lines: list[str] = []
    if payload.get("title"):
        lines.append(f"[bold]{escape(str(payload['title']))}[/bold]")
    if payload.get("snippet"):
        lines.append(escape(str(payload["snippet"])))
    others = {key: value for key, value in payload.items() if key not in ("title", "snippet")}
    if others:
        text = json.dumps(others, ensure_ascii=False, default=str)
        lines.append(f"[dim]{escape(text if len(text) <= 120 else text[:119] + '…')}[/dim]")
    return "\n".join(lines)


def _timings_line(timings: dict[str, float]) -> str:
    names = {"database": "database", "model_load": "model load", "query_embed": "query embed", "search": "search"}
    names["record"] = "recording the session"
    parts = ", ".join(f"{label} {timings[key]:.2f}s" for key, label in names.items() if key in timings)
    return f"answered in this process in {sum(timings.values()):.2f}s: {parts}"


def search(
    query: str = typer.Argument(..., help="What to search for."),
    limit: int = typer.Option(10, min=1, max=1000, help="How many results."),
    record: bool = typer.Option(False, "--record", help="Record the search as a clickstream session."),
    api: str | None = typer.Option(
        None, "--api", help="The API to ask (default: http://EMBEDDING_STUDIO_API_HOST:EMBEDDING_STUDIO_API_PORT)."
    ),
    local: bool = typer.Option(False, "--local", help="Load the model in this process even if an API is running."),
) -> None:
    """Search the blue collection: through the running API when it serves this database, else here.

    Example: embedding-studio search "what is the capital of france" --limit 5
    """
    from embedding_studio.tasks import TaskRepository
    from embedding_studio.vectordb import VectorStore

    console = output()

    with friendly_errors():
        started = time.perf_counter()
        database = prepare_database()
        asked = None if local else _ask_api(api or default_api_url(), query, limit, record, database.fingerprint())
        if isinstance(asked, SearchOutcome):
            outcome = asked
        else:
            store = VectorStore(database)
            outcome = _search_here(store, query, limit, record, database_s=time.perf_counter() - started)
            outcome = dataclasses.replace(outcome, api_note=asked)
        title = model_title(TaskRepository(database), outcome.model_id)
    table = Table("#", "item", "score", "result", title=escape(title), show_lines=True)
    table.columns[3].overflow = "fold"
    for rank, hit in enumerate(outcome.hits, start=1):
        table.add_row(str(rank), escape(hit.item_id), f"{hit.score:.4f}", _result_cell(hit.payload))
    console.print(table)
    if outcome.api_url is not None:
        console.print(f"[dim]answered by the API at {escape(outcome.api_url)}[/dim]")
    else:
        console.print(f"[dim]{escape(_timings_line(outcome.timings))}[/dim]")
        if outcome.api_note is not None:
            console.print(
                f"[dim]{escape(outcome.api_note or '')}; `embedding-studio serve` keeps the model loaded, and "
                "this command then asks it[/dim]"
            )
    if record and outcome.session_id:
        console.print(f"session {outcome.session_id}")
