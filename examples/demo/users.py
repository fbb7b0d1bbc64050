"""What the demo does through the HTTP API, all with the public client: simulated users searching and
clicking, held-out queries measured as users get them, and following a task until it ends."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from embedding_studio.cli.errors import UserFacingError
from embedding_studio.client import EmbeddingStudioClient, TaskEndedError, TaskOut, TaskTimeoutError
from embedding_studio.evaluation import BeirDataset, PositionBasedClickModel, RetrievalEvaluation, evaluate_rankings

from .services import DemoServices

EVALUATION_USER = "demo-evaluation"
EVALUATION_DEPTH = 100  # Recall@100 needs the top 100
SHOWN_RESULTS = 10
_FINAL_STATUSES = frozenset({"done", "failed", "canceled", "refused"})


def follow_task(
    client: EmbeddingStudioClient,
    services: DemoServices,
    kind: str,
    task_id: str,
    update: Callable[[float, str], None],
    timeout_s: float = 1800.0,
) -> TaskOut:
    """The client's :meth:`~EmbeddingStudioClient.wait_for_task`, with the progress bar fed and the worker checked
    on every poll: a failed task or a dead worker becomes one clear error that points at the worker's log."""

    def on_progress(task: TaskOut) -> None:
        update(float(task.progress or 0.0), task.progress_message or task.status)
        if task.status not in _FINAL_STATUSES:
            services.check_alive()

    try:
        return client.wait_for_task(task_id, kind, timeout=timeout_s, on_progress=on_progress)
    except TaskEndedError as error:
        raise UserFacingError(f"{error}. Worker log: {services.logs_dir / 'worker.log'}") from error
    except TaskTimeoutError as error:
        raise UserFacingError(str(error)) from error


def measure(client: EmbeddingStudioClient, catalog: BeirDataset, query_ids: Sequence[str]) -> RetrievalEvaluation:
    """Held-out quality as users get it: the search endpoint's top 100, scored against the judgments.

    A few searches at a time, as the simulated users search: a few hundred held-out queries one after another
    would leave the API idle between requests for a tenth of the quick profile's wall time."""

    def ranking(query_id: str) -> list[str]:
        answer = client.search(catalog.queries[query_id], limit=EVALUATION_DEPTH, user_id=EVALUATION_USER)
        return [result.item_id for result in answer.results]

    with ThreadPoolExecutor(max_workers=4) as pool:
        rankings = dict(zip(query_ids, pool.map(ranking, query_ids), strict=True))
    return evaluate_rankings(rankings, catalog, query_ids)


def play_sessions(
    client: EmbeddingStudioClient,
    catalog: BeirDataset,
    query_ids: Sequence[str],
    sessions_per_query: int,
    seed: int,
    advance: Callable[[], None],
) -> tuple[int, int]:
    """Users search through the API and click what the click model draws; returns (sessions, clicks).

    Clicks follow the training judgments (``BeirDataset.training_judgments``): on a dataset with its own split,
    the test judgments the figures are scored against never shape a click."""
    click_model = PositionBasedClickModel(max_grade=max(1, catalog.max_grade), seed=seed)
    plans = [(query_id, number) for query_id in query_ids for number in range(sessions_per_query)]
    random.Random(seed).shuffle(plans)  # interleave queries, as real traffic does

    def one_session(plan: tuple[str, int]) -> tuple[str, list[str]]:
        query_id, number = plan
        answer = client.search(catalog.queries[query_id], limit=SHOWN_RESULTS, user_id=f"demo-user-{number}")
        return str(answer.session_id), [result.item_id for result in answer.results]

    clicks = 0
    with ThreadPoolExecutor(max_workers=4) as pool:
        searches = list(pool.map(one_session, plans))
        # Clicks are drawn in one thread, in plan order, so a seed always gives the same clickstream.
        click_plans = []
        for (query_id, _), (session_id, shown) in zip(plans, searches, strict=True):
            clicked = click_model.simulate(shown, catalog.training_judgments(query_id))
            if clicked:
                click_plans.append((session_id, clicked))
            clicks += len(clicked)

        def post_clicks(plan: tuple[str, list[str]]) -> None:
            session_id, clicked = plan
            client.add_events(
                session_id,
                [
                    {"event_id": f"{session_id}:click:{item_id}", "item_id": item_id, "event_type": "click"}
                    for item_id in clicked
                ],
            )

        for _ in pool.map(post_clicks, click_plans):
            pass
        for _ in plans:
            advance()
    return len(plans), clicks
