"""What is done with the weights after fitting: keep a share of the fine-tuned change (WiSE-FT).

Functions, not part of the fit: they act on the model and the CPU copies of its weights that
``callbacks.BestWeights`` kept, and validate each candidate through a ``validate()`` the caller provides.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from embedding_studio.finetuning.callbacks import TrainedCheckpoint, better
from embedding_studio.finetuning.params import FineTuningParams

# The shares of the fine-tuned change tried besides the whole of it when the share is chosen on validation. WiSE-FT
# sweeps a finer grid; each share costs one validation (one encode of the pool, minutes on a CPU), and half-way is
# where its curves gain most over both ends.
WEIGHT_SHARE_CHOICES = (0.5,)


def candidate_shares(params: FineTuningParams) -> list[float]:
    """The shares of the fine-tuned change that compete after fitting, smallest first: ``s·c`` for ``c`` in
    ``WEIGHT_SHARE_CHOICES`` when the share is chosen on validation, and ``s = fine_tuned_weight_share`` itself."""
    top = params.fine_tuned_weight_share
    shares = [top * choice for choice in WEIGHT_SHARE_CHOICES] if params.choose_weight_share else []
    shares.append(top)
    return shares


@dataclass(frozen=True)
class WeightShareBase:
    """What a share of a fit's change is taken from: the trainable weights the fit started from, and the shares
    besides the whole change (1) that will compete after fitting (:func:`candidate_shares`)."""

    start_state: Mapping[str, Tensor]
    shares: tuple[float, ...]


def interpolate_weights(
    model: torch.nn.Module, initial_state: Mapping[str, Tensor], tuned_state: Mapping[str, Tensor], share: float
) -> None:
    """Keep a share of what training changed: ``W = W_0 + share * (W_tuned - W_0)`` for each trained parameter.

    Weight-space ensembling of the fine-tuned and the initial model (WiSE-FT, Wortsman et al., 2022): it trades
    some fit to the clicked queries for robustness on the ones nobody clicked yet.
    """
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, initial in initial_state.items():
            parameter = parameters[name]
            tuned = tuned_state[name].to(device=parameter.device, dtype=parameter.dtype)
            parameter.copy_(tuned).lerp_(initial.to(device=parameter.device, dtype=parameter.dtype), 1.0 - share)


def choose_weight_share(
    model: torch.nn.Module,
    initial_state: Mapping[str, Tensor],
    trained: TrainedCheckpoint,
    baseline: Mapping[str, float],
    params: FineTuningParams,
    selection_metric: str,
    validate: Callable[[], dict[str, float]],
    validations: dict[float, dict[str, float]],
) -> tuple[float, dict[str, float]]:
    """Leave in ``model`` the share of the fine-tuned change that validates best; return it and its validation.

    With ``choose_weight_share`` the shares ``s·c`` (``c`` in ``WEIGHT_SHARE_CHOICES``) and ``s`` itself, for
    ``s = fine_tuned_weight_share``, compete on the retrieval validation (WiSE-FT chooses its mixing coefficient on
    held-out data the same way); otherwise ``s`` is taken as it is. The fully tuned weights (share 1) were validated
    during training already. When choosing, the untrained weights (share 0) compete too, and the mixes are tried
    even when the fully trained weights validated below them: half-way weights can beat both ends. The tracker ranks
    runs by what the stored weights score, so the kept share's validation becomes the result's best metrics.
    ``validate()`` validates the weights now in ``model``; each share it validated is recorded in ``validations``.
    The returned metrics are empty when the fully trained weights are kept without choosing (they already are the
    best validation).
    """
    shares = candidate_shares(params)
    if shares == [1.0]:  # not choosing, and the fully trained weights (already in the model) beat base
        return 1.0, {}
    best_share: float | None = 0.0 if params.choose_weight_share else None
    best_metrics: dict[str, float] = dict(baseline) if params.choose_weight_share else {}
    for share in shares:
        if share == 1.0:
            metrics = dict(trained.metrics)
        else:
            interpolate_weights(model, initial_state, trained.state, share)
            metrics = validate()
            validations[share] = metrics
        if best_share is None or better(metrics, best_metrics, selection_metric):
            best_share, best_metrics = share, metrics
    assert best_share is not None
    interpolate_weights(model, initial_state, trained.state, best_share)
    return best_share, dict(best_metrics)
