"""HTML reports of fine-tuning tasks: what each trial learned, and what users would see change."""

from embedding_studio.reporting.data import (
    ChangedQuery,
    DeploymentOutcome,
    HeldOutComparison,
    ImageQueryComparison,
    ImageResult,
    ReportData,
    ShownResult,
    TrialCurve,
)
from embedding_studio.reporting.html import render_report, write_report

__all__ = [
    "ChangedQuery",
    "DeploymentOutcome",
    "HeldOutComparison",
    "ImageQueryComparison",
    "ImageResult",
    "ReportData",
    "ShownResult",
    "TrialCurve",
    "render_report",
    "write_report",
]
