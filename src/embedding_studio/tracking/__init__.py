"""Experiment tracking on MLflow: one experiment per fine-tuning iteration, one run per parameter set."""

from embedding_studio.tracking.manager import ExperimentsManager, Iteration, RunSummary, TrackingError, flatten_params

__all__ = ["ExperimentsManager", "Iteration", "RunSummary", "TrackingError", "flatten_params"]
