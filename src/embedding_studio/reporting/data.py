"""What a fine-tuning report shows, as plain data: built by the demo or from the tracker, saved as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from embedding_studio.evaluation.metrics import BootstrapInterval


@dataclass
class TrialCurve:
    """One HPO trial (one MLflow run): its parameters and each validation metric as (step, value) points.

    ``share_figures``: by weight share, then metric, the share's figures at the validations where a pruner decided
    (``tracking.share_figure_metrics``). A trial there is judged by the better of its curve and these, so without
    them a reader sees a falling curve the pruner kept and no reason why. Empty for runs that logged none."""

    run_id: str
    name: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    is_best: bool = False
    share_figures: dict[float, dict[str, list[tuple[int, float]]]] = field(default_factory=dict)


@dataclass
class ShownResult:
    item_id: str
    text: str
    grade: int | None = None


@dataclass
class ChangedQuery:
    """A held-out query whose top results moved: what the user saw before and after the flip."""

    query_id: str
    query: str
    ndcg_before: float
    ndcg_after: float
    before: list[ShownResult] = field(default_factory=list)
    after: list[ShownResult] = field(default_factory=list)


@dataclass
class HeldOutComparison:
    """Metrics on queries the model never trained on, before (base model) and after (deployed model)."""

    dataset: str
    query_count: int
    before: dict[str, float]
    after: dict[str, float]
    ndcg_per_query: dict[str, tuple[float, float]] = field(default_factory=dict)
    changed_queries: list[ChangedQuery] = field(default_factory=list)
    # The NDCG@10 change with its paired bootstrap interval over the queries: a few hundred queries cannot tell
    # a small gain from which queries happened to be asked without one. None in reports saved before it existed.
    ndcg_change: BootstrapInterval | None = None


@dataclass
class DeploymentOutcome:
    """Whether the task's best model went out as blue, and the deployment gate's reason (shown as it is)."""

    deployed: bool
    reason: str

    @classmethod
    def of_task_result(cls, result: dict[str, Any] | None) -> DeploymentOutcome | None:
        """From a fine-tuning task's ``result.deployment``; None when the task was not sent to deploy."""
        deployment = (result or {}).get("deployment")
        if not isinstance(deployment, dict) or "deployed" not in deployment:
            return None
        return cls(deployed=bool(deployment["deployed"]), reason=str(deployment.get("reason", "")))


@dataclass
class ImageResult:
    """One image among a query's top results: its id, its key in the catalog, and a small inline thumbnail (a
    ``data:`` URI of a JPEG at most ``reporting.images.THUMBNAIL_PX`` wide), so the page shows it with no file
    beside it."""

    item_id: str
    key: str
    thumbnail: str
    score: float = 0.0


@dataclass
class ImageQueryComparison:
    """A held-out query of an image catalog: its top images under the start model and under the fine-tuned one."""

    query: str
    before: list[ImageResult] = field(default_factory=list)
    after: list[ImageResult] = field(default_factory=list)


@dataclass
class ReportData:
    title: str
    task_id: str | None = None
    experiment_id: str | None = None
    best_run_id: str | None = None
    details: dict[str, str] = field(default_factory=dict)
    trials: list[TrialCurve] = field(default_factory=list)
    held_out: HeldOutComparison | None = None
    deployment: DeploymentOutcome | None = None
    #: image tasks: a few held-out queries' top images before and after (empty for text tasks)
    image_queries: list[ImageQueryComparison] = field(default_factory=list)
    #: how the image comparison was made, or why there is none (shown under its heading)
    image_queries_note: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> ReportData:
        raw: dict[str, Any] = json.loads(text)
        trials = [
            TrialCurve(
                run_id=trial["run_id"],
                name=trial["name"],
                params=dict(trial.get("params", {})),
                metrics={
                    key: [(int(step), float(value)) for step, value in points]
                    for key, points in trial.get("metrics", {}).items()
                },
                is_best=bool(trial.get("is_best", False)),
                share_figures={
                    float(share): {
                        key: [(int(step), float(value)) for step, value in points] for key, points in metrics.items()
                    }
                    for share, metrics in trial.get("share_figures", {}).items()
                },
            )
            for trial in raw.get("trials", [])
        ]
        held_out = None
        if raw.get("held_out"):
            held = raw["held_out"]
            held_out = HeldOutComparison(
                dataset=held["dataset"],
                query_count=int(held["query_count"]),
                before=dict(held["before"]),
                after=dict(held["after"]),
                ndcg_per_query={
                    key: (float(pair[0]), float(pair[1])) for key, pair in held.get("ndcg_per_query", {}).items()
                },
                changed_queries=[
                    ChangedQuery(
                        query_id=change["query_id"],
                        query=change["query"],
                        ndcg_before=float(change["ndcg_before"]),
                        ndcg_after=float(change["ndcg_after"]),
                        before=[ShownResult(**row) for row in change.get("before", [])],
                        after=[ShownResult(**row) for row in change.get("after", [])],
                    )
                    for change in held.get("changed_queries", [])
                ],
                ndcg_change=BootstrapInterval(**held["ndcg_change"]) if held.get("ndcg_change") else None,
            )
        return cls(
            title=raw["title"],
            task_id=raw.get("task_id"),
            experiment_id=raw.get("experiment_id"),
            best_run_id=raw.get("best_run_id"),
            details=dict(raw.get("details", {})),
            trials=trials,
            held_out=held_out,
            deployment=DeploymentOutcome(**raw["deployment"]) if raw.get("deployment") else None,
            image_queries=[
                ImageQueryComparison(
                    query=comparison["query"],
                    before=[ImageResult(**row) for row in comparison.get("before", [])],
                    after=[ImageResult(**row) for row in comparison.get("after", [])],
                )
                for comparison in raw.get("image_queries", [])
            ],
            image_queries_note=str(raw.get("image_queries_note", "")),
        )

    def save_json(self, path: Path) -> Path:
        return write_atomically(path, self.to_json())


def write_atomically(path: Path, text: str) -> Path:
    """Write through a temporary file and rename, so a reader never sees half a report."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".partial")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
    return path
