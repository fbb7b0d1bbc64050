"""The deployment gate: whether a fine-tuned model replaces the blue one.

A fine-tuning task with ``deploy_as_blue`` used to deploy whatever came out of it, so a batch of noisy
clicks could make search worse with nobody asked. The gate compares the best model with the blue one
on the same held-out sessions and candidate pool (the pipeline measures both, see
``FineTuningResult.reference_metrics``) and deploys only a model at least as good, by at least
``min_gain`` when one is asked for; ``forced`` deploys regardless. The decision and its reason are
stored in the task's result (``result.deployment``), where the API, the CLI and the report read them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: How the pipeline's validation metrics read in a sentence.
METRIC_LABELS = {
    "val_ndcg_at_10": "NDCG@10",
    "val_recall_at_10": "Recall@10",
    "val_mrr": "MRR",
}

#: The two figures come from separate encodings of the same sessions; a difference this small is rounding,
#: and a model whose weights equal blue's must count as "at least as good", not lose by 1e-16.
_TOLERANCE = 1e-9


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


@dataclass(frozen=True)
class DeploymentDecision:
    """Whether the best model is deployed, and the sentence saying why (shown as it is to users)."""

    deployed: bool
    reason: str
    metric: str | None = None
    candidate: float | None = None
    blue: float | None = None
    blue_model_id: str | None = None
    min_gain: float = 0.0
    forced: bool = False

    def as_dict(self) -> dict[str, Any]:
        """As stored in ``tasks.result["deployment"]`` (JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DeploymentDecision:
        known = {name: raw[name] for name in cls.__dataclass_fields__ if name in raw}
        return cls(**known)


def deployment_decision(
    candidate: float | None,
    blue: float | None,
    min_gain: float = 0.0,
    forced: bool = False,
    metric: str = "val_ndcg_at_10",
    blue_model_id: str | None = None,
    higher_is_better: bool = True,
) -> DeploymentDecision:
    """Deploy when ``candidate >= blue + min_gain``, when there is no blue model to beat, or when ``forced``.

    With ``higher_is_better`` False (a method whose main metric is a loss) better means lower:
    ``candidate <= blue - min_gain``.

    ``blue`` None means no model is deployed: there is nothing to compare with, so the new model goes out.
    ``candidate`` None means the best run has no figure for ``metric``: the gate cannot tell whether it is
    better, so it is not deployed (unless forced) rather than deployed on faith.
    """
    if min_gain < 0:
        raise ValueError(f"min_gain must be >= 0, got {min_gain}")
    label = metric_label(metric)
    common = {
        "metric": metric,
        "candidate": candidate,
        "blue": blue,
        "blue_model_id": blue_model_id,
        "min_gain": min_gain,
        "forced": forced,
    }
    if blue is None and blue_model_id is None:
        return DeploymentDecision(True, "deployed: no blue model to compare with", **common)
    if candidate is None or blue is None:
        missing = "the best model" if candidate is None else f"blue model {blue_model_id}"
        comparison = f"{missing} has no {label} ({metric}) to compare"
        if forced:
            return DeploymentDecision(True, f"deployed (forced): {comparison}", **common)
        return DeploymentDecision(False, f"not deployed: {comparison}; force_deploy deploys it anyway", **common)
    comparison = f"{label} {candidate:.4f} against blue {blue:.4f}"
    if min_gain > 0:
        comparison += f" (needs a gain of at least {min_gain:.4f})"
    gain = candidate - blue if higher_is_better else blue - candidate
    if gain + _TOLERANCE >= min_gain:
        return DeploymentDecision(True, f"deployed: {comparison}", **common)
    if forced:
        return DeploymentDecision(True, f"deployed (forced): {comparison}", **common)
    return DeploymentDecision(False, f"not deployed: {comparison}", **common)


def blue_changed_decision(
    candidate: float | None,
    blue: float | None,
    metric: str,
    compared_with: str | None,
    blue_now: str | None,
    min_gain: float = 0.0,
    forced: bool = False,
) -> DeploymentDecision:
    """Blue moved while the task fine-tuned (``compared_with`` None: there was none when it started): the
    figures are about a model that no longer serves, so the new one is not deployed unless ``forced``."""
    common = {
        "metric": metric,
        "candidate": candidate,
        "blue": blue,
        "blue_model_id": compared_with,
        "min_gain": min_gain,
        "forced": forced,
    }
    what = f"blue changed from {compared_with or 'none'} to {blue_now or 'none'} while fine-tuning"
    if forced:
        return DeploymentDecision(True, f"deployed (forced): {what}", **common)
    return DeploymentDecision(
        False, f"not deployed: {what}, so there is no comparison with it; fine-tune again or force_deploy", **common
    )
