"""What the demo found: its result (``demo-summary.json``), the HTML report and the lines it prints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from embedding_studio.client import TaskOut
from embedding_studio.evaluation import BeirDataset, BootstrapInterval, QuerySplit

from .profiles import DEMO_METHOD, DemoProfile

if TYPE_CHECKING:
    from embedding_studio.reporting import HeldOutComparison
    from embedding_studio.tracking import ExperimentsManager


@dataclass
class DemoResult:
    task_id: str
    batch_id: int
    before: dict[str, float]
    after: dict[str, float]
    report_path: Path
    data_dir: Path
    mlflow_uri: str
    api_url: str
    blue_model_id: str
    sessions: int
    clicks: int
    kept_untrained_weights: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    deployed: bool = True  # False: the deployment gate kept blue (the fine-tuned model did not beat it)
    deployment_reason: str | None = None
    # The NDCG@10 change (after − before) with its 95% paired bootstrap interval over the held-out queries.
    ndcg_change: BootstrapInterval | None = None
    held_out_queries: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "batch_id": self.batch_id,
            "before": self.before,
            "after": self.after,
            "report": str(self.report_path),
            "data_dir": str(self.data_dir),
            "mlflow_uri": self.mlflow_uri,
            "blue_model_id": self.blue_model_id,
            "sessions": self.sessions,
            "clicks": self.clicks,
            "kept_untrained_weights": self.kept_untrained_weights,
            "deployed": self.deployed,
            "deployment_reason": self.deployment_reason,
            "held_out_queries": self.held_out_queries,
            "ndcg@10_change": None if self.ndcg_change is None else interval_summary(self.ndcg_change),
            "timings_s": self.timings,
        }


def interval_summary(interval: BootstrapInterval) -> dict[str, float]:
    """A bootstrap interval as JSON: the mean change and the bounds of its confidence interval."""
    return {
        "mean": interval.mean_difference,
        "low": interval.low,
        "high": interval.high,
        "confidence": interval.confidence,
        "samples": interval.samples,
    }


def kept_untrained(selection_history: Sequence[tuple[int, float]]) -> bool:
    """Whether training left the untrained weights in place.

    The fine-tuner keeps the weights of the validation with the highest val_ndcg_at_10, the baseline
    validation (step 0, before any training step) included; the baseline staying the best means the
    "fine-tuned" model is the base model under a new name."""
    if not selection_history:
        return False
    baseline = [value for step, value in selection_history if step == 0]
    trained = [value for step, value in selection_history if step > 0]
    return bool(baseline) and (not trained or max(trained) <= baseline[0])


def deployment_outcome(fine_tuning_result: dict[str, Any]) -> tuple[bool, str | None]:
    """Whether the deployment gate sent the fine-tuned model out (``result.deployment``), and its reason.

    A result without a verdict (a server from before the gate) was always deployed."""
    deployment = fine_tuning_result.get("deployment")
    if not isinstance(deployment, dict):
        return True, None
    return bool(deployment.get("deployed", True)), deployment.get("reason")


def best_run_kept_untrained_weights(tracker: ExperimentsManager, experiment_id: Any, best_run_id: str) -> bool:
    """Reads the best run's val_ndcg_at_10 history from the demo's tracker (see :func:`kept_untrained`)."""
    if not experiment_id or not best_run_id:
        return False
    return kept_untrained(tracker.get_metric_history(best_run_id, "val_ndcg_at_10"))


def write_demo_report(
    catalog: BeirDataset,
    held_out: HeldOutComparison,
    fine_tuning: TaskOut,
    tracker: ExperimentsManager,
    base_model: str,
    batch_id: int,
    sessions: int,
    clicks: int,
    split: QuerySplit,
    data_dir: Path,
    profile: DemoProfile,
    kept_untrained: bool,
) -> Path:
    """The fine-tuning task's HTML report (the trials from the demo's MLflow store) with the held-out comparison
    only the demo has: ``embedding-studio report TASK_ID`` keeps it when it writes the page again."""
    from embedding_studio.reporting import DeploymentOutcome, ReportData, write_report
    from embedding_studio.reporting.collect import collect_trials

    result = fine_tuning.result or {}
    experiment_id = result.get("experiment_id")
    best_run_id = fine_tuning.best_run_id
    trials = collect_trials(tracker, str(experiment_id), best_run_id) if experiment_id else []
    details_note = (
        {"model kept": "the untrained weights: no validation after training beat the base model's val NDCG@10"}
        if kept_untrained
        else {}
    )
    data = ReportData(
        title=f"Fine-tuning task {fine_tuning.id}: {catalog.name} demo",
        task_id=fine_tuning.id,
        experiment_id=str(experiment_id) if experiment_id else None,
        best_run_id=best_run_id,
        details={
            "dataset": f"{catalog.name} ({len(catalog.corpus):,} items)",
            "clickstream": f"batch {batch_id}: {sessions} sessions, {clicks} clicks on {len(split.train)} "
            "training queries",
            "held-out queries": (
                f"{len(split.test)}: the dataset's own test queries"
                if catalog.has_train_split
                else f"{len(split.test)}: a random share of the queries, never searched by users"
            ),
            "base model": base_model,
            "profile": f"{profile.name}: {profile.max_evals} trial(s) of {DEMO_METHOD}'s recipe, "
            f"{profile.num_epochs} epoch(s)",
            **details_note,
        },
        trials=trials,
        held_out=held_out,
        deployment=DeploymentOutcome.of_task_result(result),
    )
    return write_report(data, data_dir / "reports" / f"task-{fine_tuning.id}.html")


def print_outcome(console: Console, demo: DemoResult, keep_serving: bool) -> None:
    queries = f" ({demo.held_out_queries})" if demo.held_out_queries else ""
    table = Table(title=f"Held-out queries{queries}: search before and after fine-tuning on clicks")
    table.add_column("metric")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    table.add_column("change", justify="right")
    interval = demo.ndcg_change
    if interval is not None:
        table.add_column(f"{interval.confidence:.0%} interval", justify="right")
    for key, label in (("ndcg@10", "NDCG@10"), ("mrr@10", "MRR@10"), ("recall@100", "Recall@100")):
        change = demo.after[key] - demo.before[key]
        colour = "green" if change > 0 else "red" if change < 0 else "white"
        row = [label, f"{demo.before[key]:.4f}", f"{demo.after[key]:.4f}", f"[{colour}]{change:+.4f}[/{colour}]"]
        if interval is not None:
            row.append(escape(f"[{interval.low:+.4f}, {interval.high:+.4f}]") if key == "ndcg@10" else "")
        table.add_row(*row)
    console.print(table)
    if interval is not None:
        verdict = (
            "above zero: the gain is not explained by which queries were asked"
            if interval.low > 0.0
            else "below zero: search got worse on these queries"
            if interval.high < 0.0
            else "includes zero: these queries cannot tell the change from noise"
        )
        console.print(
            escape(
                f"NDCG@10 change {interval.mean_difference:+.4f}, {interval.confidence:.0%} interval "
                f"[{interval.low:+.4f}, {interval.high:+.4f}] (paired bootstrap over the held-out queries): {verdict}."
            )
        )
    if demo.kept_untrained_weights and demo.deployed:
        console.print(
            "[bold yellow]Training did not beat the untrained model on the validation sessions (its val NDCG@10 "
            f"never rose above the base model's), so model {demo.blue_model_id} carries the base model's weights "
            "unchanged: the figures after are the base model's.[/bold yellow] More sessions per query, another "
            "--seed or the full profile give the optimizer more to learn from."
        )
    if not demo.deployed:
        console.print(
            f"[bold yellow]The fine-tuned model was {escape(demo.deployment_reason or 'not deployed')}."
            f"[/bold yellow] Search still answers from {demo.blue_model_id}, so the figures after are unchanged. "
            "More sessions per query, another --seed or the full profile give training more to learn from."
        )
    console.print(
        f"done in {demo.timings.get('total', 0):.0f} s; fine-tuning task {demo.task_id}, "
        f"search now answers from model {demo.blue_model_id}"
    )
    console.print("\n[bold]Where to look next[/bold]")
    console.print(f"  report:      {demo.report_path}")
    console.print(f"  experiments: mlflow ui --backend-store-uri {demo.mlflow_uri}")
    if keep_serving:
        console.print(f"  API docs:    {demo.api_url}/docs")
    else:
        console.print(
            f"  API docs:    EMBEDDING_STUDIO_DATA_DIR={demo.data_dir} embedding-studio serve, then "
            "http://127.0.0.1:5000/docs (or run the demo with --keep-serving)"
        )
    console.print(f"  report again: EMBEDDING_STUDIO_DATA_DIR={demo.data_dir} embedding-studio report {demo.task_id}")
