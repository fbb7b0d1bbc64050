"""The default text method: a text catalog read by the configured loader, all-MiniLM-L6-v2 as base.

Its search space is deliberately small (eight trials cover it reasonably on a GPU): the learning
rate matters most, the loss and its temperature/margin next, and how many encoder layers train
decides whether a small clickstream overfits.
"""

from __future__ import annotations

from typing import Any

from optuna.distributions import FloatDistribution

from embedding_studio.config import Settings, get_settings
from embedding_studio.finetuning.method import FineTuningMethod, LoaderConfig

NAME = "default_text"


def default_search_space() -> dict[str, Any]:
    return {
        "loss": ["info_nce", "margin_ranking"],
        "query_lr": FloatDistribution(1e-5, 2e-4, log=True),
        "temperature": [0.02, 0.05, 0.1],
        "margin": [0.1, 0.2, 0.4],
        "train_last_n_layers": [-1, 2],
    }


def create_plugin(settings: Settings | None = None, **overrides: Any) -> FineTuningMethod:
    """The default text method; ``overrides`` replace any FineTuningMethod field (loader, max_evals, ...)."""
    settings = settings or get_settings()
    fields: dict[str, Any] = {
        "name": NAME,
        "loader": LoaderConfig(name=settings.catalog_loader, options=dict(settings.catalog_loader_options)),
        "base_model": settings.base_model,
        "loss": "info_nce",
        "search_space": default_search_space(),
        "fixed_params": {"use_ips": True},
        "num_epochs": 3,
        "batch_size": 16,
        "max_evals": 8,
        "test_each_n_inputs": 1.0,
        "main_metric": "val_ndcg_at_10",
        "higher_is_better": True,
    }
    fields.update(overrides)
    if isinstance(fields["loader"], dict):
        fields["loader"] = LoaderConfig.model_validate(fields["loader"])
    return FineTuningMethod(**fields)
