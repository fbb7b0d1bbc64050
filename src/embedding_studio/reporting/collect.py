"""Gathering what a report shows: held-out comparisons from evaluations, trial curves from the tracker."""

from __future__ import annotations

from embedding_studio.evaluation import BeirDataset, RetrievalEvaluation
from embedding_studio.reporting.data import ChangedQuery, HeldOutComparison, ShownResult, TrialCurve


def compare_evaluations(
    before: RetrievalEvaluation,
    after: RetrievalEvaluation,
    dataset: BeirDataset,
    changed_query_count: int = 5,
    shown: int = 5,
) -> HeldOutComparison:
    """Pair two evaluations of the same queries; pick the queries whose top ``shown`` moved the most."""
    query_ids = [query_id for query_id in before.per_query if query_id in after.per_query]
    per_query = {
        query_id: (before.per_query[query_id].ndcg_at_10, after.per_query[query_id].ndcg_at_10)
        for query_id in query_ids
    }
    moved = [
        query_id for query_id in query_ids
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
    )


def collect_trials(tracking_uri: str, experiment_id: str, best_run_id: str | None = None) -> list[TrialCurve]:
    """Every run of the task's experiment with the history of each of its validation metrics."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    runs = client.search_runs([experiment_id], order_by=["attributes.start_time ASC"], max_results=1000)
    trials = []
    for number, run in enumerate(runs, start=1):
        metrics = {}
        for key in sorted(run.data.metrics):
            if not key.startswith("val"):
                continue
            history = client.get_metric_history(run.info.run_id, key)
            metrics[key] = sorted((int(point.step), float(point.value)) for point in history)
        trials.append(
            TrialCurve(
                run_id=run.info.run_id,
                name=run.info.run_name or f"trial {number}",
                params=dict(run.data.params),
                metrics=metrics,
                is_best=run.info.run_id == best_run_id,
            )
        )
    return trials


def experiment_of_run(tracking_uri: str, run_id: str) -> str:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri).get_run(run_id).info.experiment_id
