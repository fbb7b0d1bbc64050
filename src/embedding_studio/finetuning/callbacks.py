"""Lightning callbacks of a fit: which weights to keep, and where each validation's figures go.

They act on ``on_validation_end``, after the module has computed the validation's figures
(``EmbeddingsFineTuner.last_validation``) in its ``on_validation_epoch_end``, and in the order
``fit_fine_tuner`` lists them: the best weights are recorded before the figures are reported, so a report that
stops the fit (an Optuna pruning) still leaves this validation's weights as a candidate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import lightning.pytorch as pl
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor

ValidationMetricsHook = Callable[[int, Mapping[str, float]], None]


def better(values: Mapping[str, float], best: Mapping[str, float], metric: str) -> bool:
    """Whether ``values`` beats ``best`` on ``metric``: lower for ``val_loss``, higher for every ranking figure."""
    if metric == "val_loss":
        return values[metric] < best[metric]
    return values[metric] > best[metric]


def trainable_state_on_cpu(model: torch.nn.Module) -> dict[str, Tensor]:
    """A CPU copy of every trained parameter (``requires_grad``): what a checkpoint in memory holds."""
    return {
        name: parameter.detach().to("cpu", copy=True)
        for name, parameter in model.named_parameters()
        if parameter.requires_grad
    }


def load_trainable_state(model: torch.nn.Module, state: Mapping[str, Tensor]) -> None:
    """Copy ``state`` (from :func:`trainable_state_on_cpu`) into ``model``'s parameters, wherever they live."""
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            parameters[name].copy_(value.to(parameters[name].device))


@dataclass(frozen=True)
class TrainedCheckpoint:
    """The best validation of trained weights (the untrained ones excluded): what a weight share mixes in, and the
    optimizer step it was taken at (how long a refit on every session trains)."""

    metrics: dict[str, float]
    state: dict[str, Tensor]
    step: int


class BestWeights(pl.Callback):
    """Keeps the baseline validation and the best weights of a fit, and puts them back (:meth:`restore`).

    The first validation outside fitting (``trainer.validate`` before ``trainer.fit``) is the **baseline**: the
    untrained weights are a candidate too, so if training only hurts, they come back. Every validation during
    fitting competes by ``selection_metric`` (``val_loss`` breaks ties), the metric the tracker ranks runs by
    (retrieval NDCG@10 of the held-out queries over the candidate pool by default, see ``retrieval_validation``): a
    lower val_loss with worse search is not a better model to deploy. Validations after fitting (the weight shares
    ``weights.choose_weight_share`` tries) are not candidates. Weights are kept as CPU copies of the trained
    parameters, one copy shared when a validation is both the best and the best trained one.
    """

    def __init__(self, selection_metric: str) -> None:
        super().__init__()
        self.selection_metric = selection_metric
        self.baseline: dict[str, float] | None = None
        self.initial_state: dict[str, Tensor] | None = None
        self.best_metrics: dict[str, float] = {}
        self.best_state: dict[str, Tensor] | None = None
        self.best_trained: TrainedCheckpoint | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        values: dict[str, float] = dict(getattr(pl_module, "last_validation", {}))
        model = getattr(pl_module, "model", pl_module)
        if trainer.state.fn == TrainerFn.FITTING:
            if values:
                self._consider(values, model, int(pl_module.global_step))
        elif self.baseline is None:
            self.start_from(values, model)

    def start_from(self, baseline: Mapping[str, float], model: torch.nn.Module) -> None:
        """Take ``baseline`` as the untrained weights' validation, ``model``'s weights as those weights: what the
        first validation outside fitting records, for a fit whose baseline is already known."""
        self.baseline = dict(baseline)
        self.initial_state = trainable_state_on_cpu(model)
        self.best_metrics, self.best_state = dict(baseline), dict(self.initial_state)

    def _consider(self, values: dict[str, float], model: torch.nn.Module, step: int) -> None:
        improves = self._improves_on_best(values)
        trained = self.best_trained
        improves_trained = trained is None or better(values, trained.metrics, self.selection_metric)
        if improves or improves_trained:
            state = trainable_state_on_cpu(model)  # one copy, shared when both improve
            if improves:
                self.best_metrics, self.best_state = dict(values), state
            if improves_trained:
                self.best_trained = TrainedCheckpoint(dict(values), state, step)

    def _improves_on_best(self, values: Mapping[str, float]) -> bool:
        if not self.best_metrics:
            return True
        metric = self.selection_metric
        if values[metric] == self.best_metrics[metric]:
            return values["val_loss"] < self.best_metrics["val_loss"]
        return better(values, self.best_metrics, metric)

    def restore(self, model: torch.nn.Module) -> bool:
        """Put the best validation's weights back into ``model`` and drop the CPU copy; False when there is none."""
        if self.best_state is None:
            return False
        load_trainable_state(model, self.best_state)
        self.best_state = None
        return True


class ValidationReporter(pl.Callback):
    """Hands each validation during fitting to ``hook(step, metrics)`` as plain floats (``step``: optimizer steps
    so far), so the pipeline can forward them to the tracker. The baseline and the weight-share validations are
    not reported here: ``fit_fine_tuner`` reports the baseline as step 0 itself."""

    def __init__(self, hook: ValidationMetricsHook) -> None:
        super().__init__()
        self.hook = hook

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        values: dict[str, float] = dict(getattr(pl_module, "last_validation", {}))
        if values:
            self.hook(int(pl_module.global_step), values)
