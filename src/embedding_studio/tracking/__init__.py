"""Experiment tracking on MLflow: one experiment per fine-tuning iteration, one run per parameter set."""

from embedding_studio.tracking.manager import (
    ExperimentsManager,
    Iteration,
    RunSummary,
    TrackingError,
    flatten_params,
    share_figure_metrics,
    share_figure_of,
)

__all__ = [
    "ExperimentsManager",
    "Iteration",
    "RunSummary",
    "TrackingError",
    "flatten_params",
    "share_figure_metrics",
    "share_figure_of",
]
