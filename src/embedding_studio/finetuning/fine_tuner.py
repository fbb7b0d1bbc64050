"""EmbeddingsFineTuner: trains a two-tower model on labelled sessions with Lightning, and the fit that drives it.

The pieces sit on Lightning's seams: the click data (token caches, collators, the length-bucketed sampler) is a
``LightningDataModule`` (:mod:`~embedding_studio.finetuning.data`); this module keeps the steps, the loss and the
optimizer; which weights to keep (the baseline, the best validation) is a callback
(:mod:`~embedding_studio.finetuning.callbacks`); the weight share kept after fitting is a function
(:mod:`~embedding_studio.finetuning.weights`). :func:`fit_fine_tuner` runs one Trainer that validates the
untrained model, fits, and validates the weight shares. The loss, the metrics and their running sums stay on the
device until a validation ends (the one place values are read back).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor

from embedding_studio.clickstream.types import FineTuningInput
from embedding_studio.config import get_settings
from embedding_studio.finetuning.callbacks import (
    BestWeights,
    ValidationMetricsHook,
    ValidationReporter,
    load_trainable_state,
    trainable_state_on_cpu,
)
from embedding_studio.finetuning.data import ClickDataModule, PreparedRows, prepare_rows
from embedding_studio.finetuning.dropout import training_dropout
from embedding_studio.finetuning.errors import NotEnoughDataError
from embedding_studio.finetuning.features import FeatureExtractor
from embedding_studio.finetuning.losses import SimilarityBatch, create_loss
from embedding_studio.finetuning.modality import item_inputs, restrict_trainable_parts
from embedding_studio.finetuning.params import FineTuningParams
from embedding_studio.finetuning.query_retriever import QueryRetriever, TextQueryRetriever
from embedding_studio.finetuning.retrieval_validation import PoolEmbeddings, best_part_scores
from embedding_studio.finetuning.weights import (
    WeightShareBase,
    candidate_shares,
    choose_weight_share,
    interpolate_weights,
)
from embedding_studio.metrics import rerank_metrics
from embedding_studio.models.clip import is_image_model
from embedding_studio.models.frozen_prefix import FrozenPrefixCache

RETRIEVAL_METRIC_NAMES = ("val_mrr", "val_ndcg_at_10", "val_recall_at_10")
RERANK_METRIC_NAMES = ("val_rerank_mrr", "val_rerank_ndcg_at_10", "val_rerank_recall_at_10")
METRIC_NAMES = ("val_loss", *RETRIEVAL_METRIC_NAMES, *RERANK_METRIC_NAMES)
GRADIENT_CLIP_NORM = 1.0


# ----- the module ----------------------------------------------------------------------------------
class EmbeddingsFineTuner(pl.LightningModule):
    """Fine-tunes ``model`` (a ``TextEmbeddingModel``) on clicks; ``items`` maps item id → part texts.

    An item scores as its best part: ``s(q, d) = max_k cos(q, part_k(d))``. ``items`` may also be a
    prepared item set with a ``parts`` mapping. ``on_validation_metrics(step, metrics)`` is called
    after every validation during fitting with plain floats (``step`` = optimizer steps so far), so the pipeline
    can forward them to the tracker (``fit_fine_tuner`` hands it to a ``ValidationReporter`` callback).

    After each validation ``last_validation`` holds its figures; during fitting they are also appended to
    ``history``. ``best_metrics`` is set by ``fit_fine_tuner``: the validation of the weights left in the model.
    """

    def __init__(
        self,
        model: Any,
        items: Mapping[str, Sequence[str]] | Any,
        query_retriever: QueryRetriever | None = None,
        params: FineTuningParams | None = None,
        on_validation_metrics: ValidationMetricsHook | None = None,
        selection_metric: str = "val_ndcg_at_10",
        frozen_prefix_cache: FrozenPrefixCache | None = None,
    ) -> None:
        super().__init__()
        if selection_metric not in METRIC_NAMES:
            raise ValueError(f"selection_metric {selection_metric!r} is not one of {', '.join(METRIC_NAMES)}")
        self.model = model
        self.params = params or FineTuningParams()
        # Text items are their part texts; image items one image each (``modality.item_inputs``).
        self.item_parts_text: Mapping[str, Sequence[Any]] = item_inputs(items)
        self.query_retriever: QueryRetriever = query_retriever or TextQueryRetriever()
        self.on_validation_metrics = on_validation_metrics
        self.loss_function = create_loss(self.params)
        self.feature_extractor = FeatureExtractor(
            self.query_retriever,
            use_ips=self.params.use_ips,
            max_ips_weight=self.params.max_ips_weight,
            positives_per_query=self.params.positives_per_query,
            negatives_per_query=self.params.negatives_per_query,
        )
        self.history: list[dict[str, float]] = []
        self.last_validation: dict[str, float] = {}
        self.best_metrics: dict[str, float] = {}
        # Optimizer steps the learning-rate schedule spans; None: the Trainer's estimate (the whole fit).
        self.schedule_total_steps: int | None = None
        self.selection_metric = selection_metric
        self._validation_sums: dict[str, Tensor] = {}
        self._pool_embeddings: PoolEmbeddings | None = None
        self.prepared: PreparedRows | None = None
        #: the validations' frozen-block states; a search hands every trial its one (``PreparedData``), so a trial
        #: training the top blocks validates from the states an earlier trial's validation left
        self.frozen_prefix_cache = frozen_prefix_cache
        #: set by ``fit_fine_tuner`` for the length of a fit: what its weight shares are taken from
        self.weight_share_base: WeightShareBase | None = None

        train_last = self.params.train_last_n_layers
        model.set_trainable_layers(None if train_last < 0 else train_last)
        restrict_trainable_parts(model, self.params.trainable_parts)

    @classmethod
    def create(
        cls,
        model: Any,
        items: Mapping[str, Sequence[str]] | Any,
        query_retriever: QueryRetriever | None,
        params: FineTuningParams,
        tracker_callback: ValidationMetricsHook | None = None,
    ) -> EmbeddingsFineTuner:
        return cls(model, items, query_retriever, params, on_validation_metrics=tracker_callback)

    # ----- data ------------------------------------------------------------------------------------
    def preprocess_inputs(
        self, train_inputs: Sequence[FineTuningInput], test_inputs: Sequence[FineTuningInput]
    ) -> PreparedRows:
        """Label the sessions, learn propensities from train, and tokenize every query and needed part once
        (``data.prepare_rows``); the validation steps read the retrieval validator off the result."""
        self.prepared = prepare_rows(
            self.model,
            self.item_parts_text,
            self.feature_extractor,
            self.query_retriever,
            self.params,
            train_inputs,
            test_inputs,
            frozen_prefix_cache=self.frozen_prefix_cache,
        )
        return self.prepared

    def data_module(self, pin_memory: bool = False) -> ClickDataModule:
        """The loaders over the rows ``preprocess_inputs`` prepared, batched by ``params.batch_size``."""
        return ClickDataModule(self._require_prepared(), self.params.batch_size, self.params.seed, pin_memory)

    def _require_prepared(self) -> PreparedRows:
        if self.prepared is None:
            raise RuntimeError("call preprocess_inputs(train_inputs, test_inputs) before asking for data loaders")
        return self.prepared

    # ----- steps -----------------------------------------------------------------------------------
    def item_similarities(self, batch: Mapping[str, Any]) -> Tensor:
        """``[B, U]`` cosine of each query with each item of the batch, an item scoring as its best part.

        The product runs outside autocast, in float32: under bf16 a cosine near 0.8 moves in steps of 0.004, which
        ties the shown items of a session in validation and, divided by a 0.05 temperature, makes the logits of
        the loss jump by 0.08. The matrix is ``B x parts``, so float32 costs nothing measurable."""
        distinct_queries = self.model.forward_queries(batch["query_tokens"])  # [Q, D], Q distinct query texts
        queries = distinct_queries[batch["query_rows"].to(distinct_queries.device)]  # [B, D]
        # [P, D]: each chunk of parts of similar length padded on its own (data.length_chunks)
        parts = torch.cat([self.model.forward_items(chunk) for chunk in batch["part_tokens"]])
        with torch.autocast(device_type=queries.device.type, enabled=False):
            part_similarities = queries.float() @ parts.float().T
        return best_part_scores(part_similarities, batch["part_owner"], batch["item_count"])

    def _loss(self, batch: Mapping[str, Any], similarities: Tensor) -> Tensor:
        return self.loss_function(
            SimilarityBatch(
                similarities=similarities,
                positive_index=batch["positive_index"],
                positive_weights=batch["positive_weights"],
                negative_index=batch["negative_index"],
                negative_weights=batch["negative_weights"],
                query_groups=batch["query_groups"],
            )
        )

    def _common_step(self, batch: Mapping[str, Any], stage: str) -> tuple[Tensor, Tensor]:
        """``(similarities [B, I], loss)`` of a batch. Training embeds the batch's queries and item parts
        (:meth:`item_similarities`); validation reads each held-out query's scores for every pool item off the
        validation's pool embeddings, so in-batch negatives are the other rows' clicks as in training."""
        if stage == "train":
            similarities = self.item_similarities(batch)
        else:
            assert self._pool_embeddings is not None
            validator = self._require_prepared().retrieval_validator
            similarities = validator.item_scores(self._pool_embeddings, batch["query_index"])
        return similarities, self._loss(batch, similarities)

    def training_step(self, batch: Mapping[str, Any], batch_index: int) -> Tensor:
        with _training_attention(self.device):
            _, loss = self._common_step(batch, "train")
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=batch["query_groups"].shape[0])
        return loss

    def on_validation_epoch_start(self) -> None:
        self._validation_sums = {}
        self.last_validation = {}
        # The pool and the held-out queries, embedded once for every figure of this validation.
        self._pool_embeddings = self._require_prepared().retrieval_validator.embed(self.model, self.device)

    def validation_step(self, batch: Mapping[str, Any], batch_index: int) -> None:
        """The loss and the re-ranking of shown results of held-out rows, from the validation's pool embeddings:
        the shown results are a gather of the pool similarities."""
        similarities, loss = self._common_step(batch, "val")
        shown = batch["shown_index"]
        scores = similarities.gather(1, shown.clamp_min(0))
        per_session = rerank_metrics(scores, shown >= 0, batch["clicked"], k=10)
        evaluated = per_session.pop("evaluated").float()
        rows = torch.tensor(float(shown.shape[0]), device=loss.device)
        sums = {
            "val_loss": loss.detach() * rows,
            "rows": rows,
            "evaluated": evaluated.sum(),
            **{f"val_rerank_{name}": (values.float() * evaluated).sum() for name, values in per_session.items()},
        }
        for name, value in sums.items():
            self._validation_sums[name] = self._validation_sums.get(name, 0.0) + value

    def on_validation_epoch_end(self) -> None:
        """Read the validation's figures back (once), log them, and leave them in ``last_validation`` for the
        callbacks; a validation during fitting also goes into ``history``."""
        sums = self._validation_sums
        embeddings, self._pool_embeddings = self._pool_embeddings, None
        if not sums or embeddings is None or self.trainer.sanity_checking:
            return
        metrics = {"val_loss": sums["val_loss"] / sums["rows"]}
        for name in RERANK_METRIC_NAMES:
            metrics[name] = sums[name] / sums["evaluated"].clamp_min(1.0)
        # Once per validation: the only point where values come back to the host.
        values = {name: float(value) for name, value in metrics.items()}
        values.update(self._require_prepared().retrieval_validator.metrics(embeddings))
        for name, value in values.items():
            self.log(name, value, prog_bar=name == "val_ndcg_at_10")
        self.last_validation = values
        if self.trainer.state.fn == TrainerFn.FITTING:
            self.history.append({"step": float(self.global_step), **values})

    def trainable_state_on_cpu(self) -> dict[str, Tensor]:
        """A CPU copy of every trained parameter of the model."""
        return trainable_state_on_cpu(self.model)

    @torch.no_grad()
    def validate_weight_shares_now(self) -> dict[float, dict[str, float]]:
        """The retrieval figures of each share of the change so far that the fit will choose among after fitting
        (``weight_share_base.shares``), the weights of now put back after; empty outside a fit or with no share
        to choose.

        What stopping a fit at this validation would ship is the best of these and the fully trained weights
        (which the validation just taken scored), not those weights alone. A pruner shown only them stops the
        trials whose recipe wins through the share: on nfcorpus a high learning rate stayed below the untrained
        model at every validation of its epoch while its half-way weights were the best of the search
        (``benchmarks/README.md``). Each share costs one encode of the pool and the held-out queries, as a
        validation does; the untrained weights (share 0) are left out, they score the same for every trial.
        """
        base = self.weight_share_base
        if base is None or not base.shares:
            return {}
        validator = self._require_prepared().retrieval_validator
        current = self.trainable_state_on_cpu()
        was_training = self.model.training
        self.model.eval()
        figures: dict[float, dict[str, float]] = {}
        try:
            for share in base.shares:
                interpolate_weights(self.model, base.start_state, current, share)
                figures[share] = validator.metrics(validator.embed(self.model, self.device))
        finally:
            load_trainable_state(self.model, current)
            self.model.train(was_training)
        return figures

    # ----- optimisation ----------------------------------------------------------------------------
    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip the global gradient norm to `GRADIENT_CLIP_NORM` here, not through the Trainer's
        `gradient_clip_val`: Lightning refuses that for a fused AdamW (it cannot tell whether the optimizer unscales
        internally), and under bf16 there is no loss scale to undo, so clipping right before the step is exact.
        `clip_grad_norm_` computes and applies the norm on the device: no host sync."""
        gradients = [parameter for parameter in self.parameters() if parameter.grad is not None]
        if gradients:
            torch.nn.utils.clip_grad_norm_(gradients, max_norm=GRADIENT_CLIP_NORM)

    def configure_optimizers(self) -> Any:
        query_parameters = list(self.model.query_parameters())
        item_parameters = list(self.model.item_parameters())
        if not query_parameters and not item_parameters:
            raise NotEnoughDataError(
                f"train_last_n_layers={self.params.train_last_n_layers} leaves no parameter to train"
            )
        # With shared weights the item tower has no parameters of its own: everything uses query_lr.
        groups = [{"params": query_parameters, "lr": self.params.query_lr}]
        if item_parameters:
            groups.append({"params": item_parameters, "lr": self.params.item_lr})
        # The fused kernel updates every tensor in one pass; on 2 CPU cores it takes MiniLM's step from 62 to 12 ms
        # (benchmarks/README.md, the step profile). Only CPU and CUDA have it.
        fused = all(parameter.device.type in ("cpu", "cuda") for group in groups for parameter in group["params"])
        optimizer = torch.optim.AdamW(groups, weight_decay=self.params.weight_decay, fused=fused or None)
        total_steps = max(1, self.schedule_total_steps or int(self.trainer.estimated_stepping_batches))
        warmup_steps = int(self.params.warmup_share * total_steps)

        def schedule(step: int) -> float:
            # Linear warm-up to the full rate, then linear decay towards 0 at the last step.
            if step < warmup_steps:
                return (step + 1) / (warmup_steps + 1)
            return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


# ----- fitting ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RefitPlan:
    """What a refit on every session takes from the validated fit: how many optimizer steps the kept checkpoint
    trained, against how many batches an epoch, the epoch cap of the schedule, and the share of the change kept.
    A search stores it with each trial's run and refits only the run it chooses
    (:meth:`~embedding_studio.finetuning.hpo.TrialRunner.refit_chosen_run`)."""

    validated_steps: int
    validated_batches_per_epoch: int
    max_epochs: int
    weight_share: float

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RefitPlan:
        try:
            values = json.loads(text)
            return cls(
                validated_steps=int(values["validated_steps"]),
                validated_batches_per_epoch=int(values["validated_batches_per_epoch"]),
                max_epochs=int(values["max_epochs"]),
                weight_share=float(values["weight_share"]),
            )
        except (ValueError, TypeError, KeyError) as error:
            raise ValueError(f"not a refit plan: {text!r} ({error})") from error


@dataclass
class FitResult:
    """``best_metrics``: the best validation by the selection metric (its weights are the ones left in the model);
    ``baseline_metrics``: the model before training; ``history``: every validation in order, with its step;
    ``weight_share``: the share of the fine-tuned change kept (0: the untrained weights came back).

    With a refit on every session (``refit_steps`` > 0) the model holds the refit weights at that share, while
    ``best_metrics`` stays the validation of the fit that chose them."""

    best_metrics: dict[str, float]
    history: list[dict[str, float]]
    stopped_epoch: int
    baseline_metrics: dict[str, float] = field(default_factory=dict)
    weight_share: float = 1.0
    weight_share_validations: dict[float, dict[str, float]] = field(default_factory=dict)
    #: optimizer steps of the final fit on every session (``refit_on_all_sessions``); 0: the weights left in the
    #: model are the validated ones
    refit_steps: int = 0
    #: epochs trained before the fit ended (at most ``max_epochs``); fewer when early stopping fired
    epochs_run: int = 0
    #: why the fit ended: "early stopping: <Lightning's message>" or "ran all N epochs"; logged with the run so a
    #: short run can be told apart from a capped one
    stop_reason: str = ""
    #: why the refit on every session was skipped (``skip_refit``); empty when it ran or was not asked for
    refit_skipped: str = ""
    #: the refit this fit's recipe asks for (run or skipped); None when none is due (``refit_on_all_sessions`` off,
    #: or the untrained weights kept)
    refit_plan: RefitPlan | None = None


def training_precision(on_gpu: bool, images: bool = False) -> str:
    """bf16 autocast wherever the hardware multiplies bf16 natively, fp32 elsewhere (``Settings.training_precision``
    ``auto``; ``fp32`` and ``bf16`` decide it whatever the hardware). ``images``: a text-to-image model, which
    ``auto`` trains in fp32 on a CPU: bf16 there is measured for the text recipe only, and a tiny CLIP learned less
    under it (held-out Recall@5 0.83 -> 0.63 in ``tests/tasks/test_text_to_image_end_to_end.py``).

    Matrix products are two thirds of a training step; in bf16 they run about twice as fast on a GPU (with half
    the activation memory) and on a CPU with AVX512-BF16 or AMX (2.4x for MiniLM's shapes on a 2-core AMD EPYC,
    1.5x for a whole step: ``benchmarks/train_throughput.py``). The weights, AdamW's state, the loss's softmax and
    every validation stay float32 (mixed precision), so what is learned matches fp32 within noise
    (``benchmarks/README.md``). A CPU without native bf16 would emulate it, slower than fp32: it trains in fp32.
    """
    chosen = get_settings().training_precision
    if chosen != "auto":
        return "bf16-mixed" if chosen == "bf16" else "32-true"
    if on_gpu:
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    return "bf16-mixed" if cpu_has_native_bf16() and not images else "32-true"


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 matrix products in hardware here (AVX512-BF16 or AMX), as torch's own CPU autocast
    tests ask it; False when torch cannot tell."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _training_attention(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The attention kernel of a training forward: SDPA's math path on a CPU under bf16 autocast, its own choice
    elsewhere.

    Without attention dropout, SDPA picks its fused CPU kernel, whose backward under bf16 is slower than the math
    path's: a MiniLM forward and backward of 48 texts of 96 tokens took 1.28 s fused against 1.14 s math on a
    2-core AMD EPYC (bf16), while in fp32 the fused kernel was the faster (1.81 s against 1.93 s). The backward is
    fixed by the forward's choice, so the forward is where it is made. On a GPU the fused kernels win: untouched."""
    if device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel(SDPBackend.MATH)
    return contextlib.nullcontext()


def validation_interval(test_each_n_inputs: int | float, batch_size: int, batches_per_epoch: int) -> int | float:
    """Lightning's ``val_check_interval``: a float in (0, 1] is a share of an epoch; otherwise a number of
    training inputs, turned into batches (at least one, at most an epoch)."""
    if isinstance(test_each_n_inputs, bool) or test_each_n_inputs <= 0:
        raise ValueError(f"test_each_n_inputs must be a positive number, got {test_each_n_inputs!r}")
    if isinstance(test_each_n_inputs, float) and test_each_n_inputs <= 1.0:
        return test_each_n_inputs
    batches = max(1, round(float(test_each_n_inputs) / batch_size))
    return min(batches, max(1, batches_per_epoch))


def _trainer_device(accelerator: str, device: Any) -> tuple[str, Any]:
    if device is not None:
        device = torch.device(device)
        if device.type == "cuda":
            return "gpu", [device.index or 0]
        return device.type, 1
    if accelerator == "auto":
        return ("gpu", 1) if torch.cuda.is_available() else ("cpu", 1)
    return accelerator, 1


def _training_device(accelerator_name: str, devices: Any) -> torch.device:
    """The torch device a Trainer with these arguments trains on."""
    if accelerator_name == "gpu":
        return torch.device("cuda", devices[0] if isinstance(devices, list) else 0)
    return torch.device(accelerator_name if accelerator_name in ("cpu", "mps") else "cpu")


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Lightning announces devices and tips at INFO on every Trainer; our progress goes to the tracker instead."""
    names = ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda", "lightning.fabric")
    loggers = [logging.getLogger(name) for name in names]
    levels = [each.level for each in loggers]
    for each in loggers:
        each.setLevel(logging.WARNING)
    # Lightning's `deterministic=True` flips a process-wide torch flag; give the process its own back.
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        with warnings.catch_warnings():
            # Tokens are cached and batches padded in microseconds: loader workers would only add start-up time.
            warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
            # A refit on every session trains without validating: nothing is left to validate on.
            warnings.filterwarnings("ignore", message=r".*defined a `validation_step` but have no `val_dataloader`.*")
            yield
    finally:
        for each, level in zip(loggers, levels, strict=True):
            each.setLevel(level)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def _trainer_arguments(
    accelerator: str, device: Any, enable_progress_bar: bool = False, images: bool = False
) -> dict[str, Any]:
    """What every Trainer of a fit shares: device, precision (:func:`training_precision`), no logger."""
    accelerator_name, devices = _trainer_device(accelerator, device)
    on_gpu = accelerator_name == "gpu"
    return {
        "accelerator": accelerator_name,
        "devices": devices,
        "precision": training_precision(on_gpu, images),
        "logger": False,
        "enable_progress_bar": enable_progress_bar,
        "enable_model_summary": False,
        "deterministic": not on_gpu,
    }


def _validate(
    trainer: pl.Trainer, fine_tuner: EmbeddingsFineTuner, data: ClickDataModule, device: torch.device
) -> dict[str, float]:
    """One validation outside fitting (the baseline, a weight share): its figures, not left in the history and not
    reported to the tracker. The model is back on ``device`` after (Lightning's teardown leaves it on the CPU)."""
    try:
        with _quiet_lightning():
            trainer.validate(fine_tuner, datamodule=data, verbose=False)
    finally:
        fine_tuner.to(device)
    return dict(fine_tuner.last_validation)


def validate_model(
    model: Any,
    items: Mapping[str, Sequence[str]] | Any,
    query_retriever: QueryRetriever | None,
    train_inputs: Sequence[FineTuningInput],
    test_inputs: Sequence[FineTuningInput],
    params: FineTuningParams,
    device: Any = None,
) -> dict[str, float]:
    """The validation a fit would start with, for a model that is not trained: how the current blue model does on
    the same held-out sessions and candidate pool as a candidate, so the two can be compared."""
    fine_tuner = EmbeddingsFineTuner(model, items, query_retriever, params)
    fine_tuner.preprocess_inputs(train_inputs, test_inputs)
    common = _trainer_arguments("auto", device, images=is_image_model(model))
    data = fine_tuner.data_module(pin_memory=common["accelerator"] == "gpu")
    with _quiet_lightning():
        trainer = pl.Trainer(enable_checkpointing=False, **common)
    try:
        return _validate(trainer, fine_tuner, data, _training_device(common["accelerator"], common["devices"]))
    finally:
        fine_tuner.eval()


def fit_fine_tuner(
    fine_tuner: EmbeddingsFineTuner,
    train_inputs: Sequence[FineTuningInput],
    test_inputs: Sequence[FineTuningInput],
    params: FineTuningParams | None = None,
    max_epochs: int | None = None,
    test_each_n_inputs: int | float = 1.0,
    callbacks: Sequence[pl.Callback] = (),
    enable_progress_bar: bool = False,
    accelerator: str = "auto",
    device: Any = None,
    on_validation_metrics: ValidationMetricsHook | None = None,
    checkpoint_dir: str | None = None,
    baseline_metrics: Mapping[str, float] | None = None,
    skip_refit: Callable[[Mapping[str, float]], str | None] | None = None,
) -> FitResult:
    """Validate once (baseline), train with early stopping on the selection metric, and leave the best weights in
    the model (best by ``fine_tuner.selection_metric``, the untrained weights included), at the chosen weight share;
    with ``params.refit_on_all_sessions``, the same recipe refit on every session instead.

    One Trainer validates the untrained model (``trainer.validate``), fits, and validates the weight shares after;
    the ``BestWeights`` callback keeps the baseline and the best weights. ``callbacks`` join that Trainer, so they
    see the validations outside fitting too (``trainer.state.fn`` is ``VALIDATING`` then). Precision follows the
    hardware: bf16 autocast where it is native (:func:`training_precision`), fp32 elsewhere. Runs are reproducible
    for a seed on CPU (``params.seed``).

    ``baseline_metrics``: the untrained model's validation when it is already known, which it is for every trial of
    a search after the first with the same validation (:func:`~embedding_studio.finetuning.hpo.validation_signature`:
    one start model, one held-out set, one loss): it is not validated again, which saves a trial one of its few
    validations (each embeds the whole candidate pool).

    ``skip_refit``: asked, with the chosen weights' validation, before ``refit_on_all_sessions`` trains again; a
    reason back skips the refit (the model keeps the validated weights, ``FitResult.refit_skipped`` says why). A
    search asks whether another trial already validated better, so that only a trial that can still be chosen
    pays for a refit (:class:`~embedding_studio.finetuning.hpo.TrialRunner`).
    """
    params = params or fine_tuner.params
    if on_validation_metrics is not None:
        fine_tuner.on_validation_metrics = on_validation_metrics
    pl.seed_everything(params.seed, workers=True, verbose=False)
    fine_tuner.preprocess_inputs(train_inputs, test_inputs)
    common = _trainer_arguments(accelerator, device, enable_progress_bar, images=is_image_model(fine_tuner.model))
    data = fine_tuner.data_module(pin_memory=common["accelerator"] == "gpu")
    training_device = _training_device(common["accelerator"], common["devices"])
    max_epochs = max_epochs or params.num_epochs

    best = BestWeights(fine_tuner.selection_metric)
    # Stop when search on the held-out queries stops getting better (the metric that keeps weights), not val_loss.
    selection_mode = "min" if fine_tuner.selection_metric == "val_loss" else "max"
    early_stopping = EarlyStopping(monitor=fine_tuner.selection_metric, patience=3, mode=selection_mode, strict=False)
    # BestWeights before the reporter: a report that prunes the trial still leaves this validation a candidate.
    all_callbacks: list[pl.Callback] = [best]
    if fine_tuner.on_validation_metrics is not None:
        all_callbacks.append(ValidationReporter(fine_tuner.on_validation_metrics))
    all_callbacks.append(early_stopping)
    if checkpoint_dir is not None:
        all_callbacks.append(ModelCheckpoint(dirpath=checkpoint_dir, monitor="val_loss", mode="min", save_top_k=1))
    all_callbacks.extend(callbacks)
    with _quiet_lightning():
        trainer = pl.Trainer(
            max_epochs=max_epochs,
            callbacks=all_callbacks,
            enable_checkpointing=checkpoint_dir is not None,
            num_sanity_val_steps=0,
            val_check_interval=validation_interval(test_each_n_inputs, params.batch_size, data.train_batches_per_epoch),
            **common,
        )

    if baseline_metrics:
        baseline = dict(baseline_metrics)
        best.start_from(baseline, fine_tuner.model)
    else:
        baseline = _validate(trainer, fine_tuner, data, training_device)
    fine_tuner.history.clear()
    fine_tuner.best_metrics = dict(baseline)
    initial_state = best.initial_state if best.initial_state is not None else fine_tuner.trainable_state_on_cpu()
    if fine_tuner.on_validation_metrics is not None and baseline:
        fine_tuner.on_validation_metrics(0, baseline)
    fine_tuner.weight_share_base = WeightShareBase(
        initial_state, tuple(share for share in candidate_shares(params) if share != 1.0)
    )

    # Sentence-transformers hands its modules over in eval mode; training wants dropout on.
    fine_tuner.train()
    # The fit's randomness (dropout masks, loader seeds) starts from the seed whether or not the baseline was just
    # validated (a validation's loader draws from torch's generator): a trial handed a known baseline trains
    # exactly as one that validated it.
    pl.seed_everything(params.seed, workers=True, verbose=False)
    try:
        with (
            _quiet_lightning(),
            training_dropout(fine_tuner.model, enabled=params.training_dropout, device=training_device),
        ):
            trainer.fit(fine_tuner, datamodule=data)
    finally:
        # Lightning's teardown leaves the module on the CPU; the trained model stays where it was trained, so
        # evaluating or serving it next is not a CPU encode (on an H200 that made one evaluation take 105 s, not 3).
        fine_tuner.to(training_device)
        best.restore(fine_tuner.model)
        fine_tuner.best_metrics = dict(best.best_metrics)
        fine_tuner.weight_share_base = None
        fine_tuner.eval()
    epochs_run = int(trainer.current_epoch)
    stop_reason = _stop_reason(early_stopping, epochs_run, max_epochs)

    share_validations: dict[float, dict[str, float]] = {}
    trained_beat_base = fine_tuner.best_metrics != baseline
    weight_share = 1.0 if trained_beat_base else 0.0
    trained = best.best_trained
    if trained is not None and (params.choose_weight_share or trained_beat_base):
        weight_share, chosen_metrics = choose_weight_share(
            fine_tuner.model,
            initial_state,
            trained,
            baseline,
            params,
            fine_tuner.selection_metric,
            validate=lambda: _validate(trainer, fine_tuner, data, training_device),
            validations=share_validations,
        )
        if chosen_metrics:
            fine_tuner.best_metrics = chosen_metrics
        fine_tuner.eval()
    refit_steps = 0
    refit_plan = (
        RefitPlan(
            validated_steps=trained.step,
            validated_batches_per_epoch=data.train_batches_per_epoch,
            max_epochs=max_epochs,
            weight_share=weight_share,
        )
        if params.refit_on_all_sessions and trained is not None and weight_share > 0
        else None
    )
    refit_skipped = (skip_refit(dict(fine_tuner.best_metrics)) or "") if refit_plan and skip_refit else ""
    if refit_plan is not None and not refit_skipped:
        refit_steps = _refit_on_all_sessions(
            fine_tuner,
            train_inputs,
            test_inputs,
            params,
            initial_state,
            refit_plan,
            common=common,
            device=training_device,
        )
    return FitResult(
        best_metrics=dict(fine_tuner.best_metrics),
        history=list(fine_tuner.history),
        stopped_epoch=epochs_run,
        baseline_metrics=baseline,
        weight_share=weight_share,
        weight_share_validations=share_validations,
        refit_steps=refit_steps,
        epochs_run=epochs_run,
        stop_reason=stop_reason,
        refit_skipped=refit_skipped,
        refit_plan=refit_plan,
    )


def _stop_reason(early_stopping: EarlyStopping, epochs_run: int, max_epochs: int) -> str:
    """Why the fit ended, in words: early stopping says which metric stalled and its best value, so a run that
    trained 4 of 30 epochs is not mistaken for one capped at 4."""
    if early_stopping.stopping_reason is not EarlyStoppingReason.NOT_STOPPED:
        message = (early_stopping.stopping_reason_message or early_stopping.stopping_reason.name).strip()
        return f"early stopping after {epochs_run} of {max_epochs} epochs: {message}"
    return f"ran all {max_epochs} epochs" if epochs_run >= max_epochs else f"stopped after {epochs_run} epochs"


def refit_on_all_sessions(
    fine_tuner: EmbeddingsFineTuner,
    train_inputs: Sequence[FineTuningInput],
    test_inputs: Sequence[FineTuningInput],
    plan: RefitPlan,
    *,
    accelerator: str = "auto",
    device: Any = None,
) -> int:
    """The refit a fit planned and skipped (``skip_refit``), run later on a fine-tuner of the same start model and
    params: the model ends up as the fit's own refit would have left it; returns the optimizer steps taken."""
    common = _trainer_arguments(accelerator, device, False, images=is_image_model(fine_tuner.model))
    training_device = _training_device(common["accelerator"], common["devices"])
    initial_state = fine_tuner.trainable_state_on_cpu()
    return _refit_on_all_sessions(
        fine_tuner,
        train_inputs,
        test_inputs,
        fine_tuner.params,
        initial_state,
        plan,
        common=common,
        device=training_device,
    )


def _refit_on_all_sessions(
    fine_tuner: EmbeddingsFineTuner,
    train_inputs: Sequence[FineTuningInput],
    test_inputs: Sequence[FineTuningInput],
    params: FineTuningParams,
    initial_state: Mapping[str, Tensor],
    plan: RefitPlan,
    *,
    common: Mapping[str, Any],
    device: torch.device,
) -> int:
    """Train again from the initial weights on every session, held-out ones included, for as long as the kept
    checkpoint trained, then keep the chosen share of that change; return the optimizer steps taken.

    The held-out sessions were needed to choose how long to train and how much of the change to keep; once chosen,
    holding them out only withholds clicks (a fifth of them by default) from the model that ships. Refitting the
    chosen recipe on all the data is the usual last step of model selection (e.g. Hastie, Tibshirani & Friedman,
    *Elements of Statistical Learning*, 7.10). Steps and the schedule are scaled by the number of batches, so the
    refit sees each session as often as the validated fit did. The validated figures stay the run's metrics: they
    are the held-out estimate of this recipe, and what the tracker and the deployment gate compare.

    It is a second fit with a Trainer of its own, not a continuation of the first: other rows (every session), a
    step budget instead of epochs, no validation (nothing is left to validate on), a fresh optimizer and schedule,
    and the random streams reseeded, so the refit trains as the validated fit did from the same start.
    """
    fine_tuner.preprocess_inputs([*train_inputs, *test_inputs], test_inputs)
    data = fine_tuner.data_module(pin_memory=common["accelerator"] == "gpu")
    scale = data.train_batches_per_epoch / max(1, plan.validated_batches_per_epoch)
    steps = max(1, round(plan.validated_steps * scale))
    fine_tuner.schedule_total_steps = max(steps, round(plan.max_epochs * plan.validated_batches_per_epoch * scale))
    load_trainable_state(fine_tuner.model, initial_state)
    pl.seed_everything(params.seed, workers=True, verbose=False)
    fine_tuner.train()
    try:
        with _quiet_lightning():
            trainer = pl.Trainer(
                max_epochs=plan.max_epochs,
                max_steps=steps,
                limit_val_batches=0,
                num_sanity_val_steps=0,
                enable_checkpointing=False,
                **common,
            )
            with training_dropout(fine_tuner.model, enabled=params.training_dropout, device=device):
                trainer.fit(fine_tuner, train_dataloaders=data.train_dataloader())
    finally:
        fine_tuner.schedule_total_steps = None
        fine_tuner.to(device)
        fine_tuner.eval()
    interpolate_weights(fine_tuner.model, initial_state, fine_tuner.trainable_state_on_cpu(), plan.weight_share)
    return int(trainer.global_step)
