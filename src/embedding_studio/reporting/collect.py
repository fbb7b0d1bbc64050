"""Gathering what a report shows: held-out comparisons from evaluations, trial curves from the tracker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from embedding_studio.evaluation import BeirDataset, RetrievalEvaluation, paired_bootstrap
from embedding_studio.reporting.data import ChangedQuery, HeldOutComparison, ShownResult, TrialCurve
from embedding_studio.tracking import share_figure_of

if TYPE_CHECKING:
    from embedding_studio.tracking import ExperimentsManager


def compare_evaluations(
    before: RetrievalEvaluation,
    after: RetrievalEvaluation,
    dataset: BeirDataset,
    changed_query_count: int = 5,
    shown: int = 5,
    bootstrap_seed: int = 0,
) -> HeldOutComparison:
    """Pair two evaluations of the same queries; pick the queries whose top ``shown`` moved the most.

    The NDCG@10 change comes with its 95% paired bootstrap interval over these queries (``paired_bootstrap``,
    seeded by ``bootstrap_seed``): both models answer the same queries, so resampling per-query differences
    measures the change rather than how hard the sampled queries are."""
    query_ids = [query_id for query_id in before.per_query if query_id in after.per_query]
    per_query = {
        query_id: (before.per_query[query_id].ndcg_at_10, after.per_query[query_id].ndcg_at_10)
        for query_id in query_ids
    }
    moved = [
        query_id
        for query_id in query_ids
        if before.per_query[query_id].ranked_ids[:shown] != after.per_query[query_id].ranked_ids[:shown]
    ]
    moved.sort(key=lambda query_id: (-abs(per_query[query_id][1] - per_query[query_id][0]), query_id))

    def shown_results(ranked: list[str], query_id: str) -> list[ShownResult]:
        judged = dataset.qrels.get(query_id, {})
        return [
            ShownResult(
                item_id=item_id,
                text=dataset.item_text(item_id) if item_id in dataset.corpus else "",
                grade=judged.get(item_id),
            )
            for item_id in ranked[:shown]
        ]

    changes = [
        ChangedQuery(
            query_id=query_id,
            query=dataset.queries.get(query_id, query_id),
            ndcg_before=per_query[query_id][0],
            ndcg_after=per_query[query_id][1],
            before=shown_results(before.per_query[query_id].ranked_ids, query_id),
            after=shown_results(after.per_query[query_id].ranked_ids, query_id),
        )
        for query_id in moved[:changed_query_count]
    ]
    subset_before = RetrievalEvaluation({query_id: before.per_query[query_id] for query_id in query_ids})
    subset_after = RetrievalEvaluation({query_id: after.per_query[query_id] for query_id in query_ids})
    return HeldOutComparison(
        dataset=dataset.name,
        query_count=len(query_ids),
        before=subset_before.metrics,
        after=subset_after.metrics,
        ndcg_per_query=per_query,
        changed_queries=changes,
        ndcg_change=paired_bootstrap(
            [per_query[query_id][0] for query_id in query_ids],
            [per_query[query_id][1] for query_id in query_ids],
            seed=bootstrap_seed,
        )
        if query_ids
        else None,
    )


def collect_trials(tracker: ExperimentsManager, experiment_id: str, best_run_id: str | None = None) -> list[TrialCurve]:
    """Every run (trial) of the task's experiment, oldest first, with the history of each validation metric and the
    weight shares' figures at the pruner's decisions (what the trial was judged by there)."""
    runs = sorted(tracker.list_runs(experiment_id), key=lambda run: (run.start_time, run.run_id))
    trials = []
    for number, run in enumerate(runs, start=1):
        metrics: dict[str, list[tuple[int, float]]] = {}
        share_figures: dict[float, dict[str, list[tuple[int, float]]]] = {}
        for key in sorted(run.metrics):
            share_figure = share_figure_of(key)
            if share_figure is not None:
                share, metric = share_figure
                if metric.startswith("val"):
                    share_figures.setdefault(share, {})[metric] = tracker.get_metric_history(run.run_id, key)
            elif key.startswith("val"):
                metrics[key] = tracker.get_metric_history(run.run_id, key)
        trials.append(
            TrialCurve(
                run_id=run.run_id,
                name=run.tags.get("mlflow.runName") or f"trial {number}",
                params={key: _param_text(value) for key, value in run.params.items()},
                metrics=metrics,
                is_best=run.run_id == best_run_id,
                share_figures=share_figures,
            )
        )
    return trials


def _param_text(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
