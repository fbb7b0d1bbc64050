"""The knobs of one fine-tuning run: what HPO searches over and what the tracker logs as a run's params."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

LossName = Literal["margin_ranking", "info_nce"]


class FineTuningParams(BaseModel):
    """One parameter set for :class:`~embedding_studio.finetuning.fine_tuner.EmbeddingsFineTuner`.

    Flat and JSON-friendly on purpose: a run's params go to the tracker as they are and come back
    from ``get_top_params`` as a dict that validates into this model again.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    loss: LossName = "info_nce"
    margin: float = Field(0.2, gt=0.0, le=2.0, description="margin of the margin ranking loss (cosine units)")
    temperature: float = Field(0.05, gt=0.0, le=10.0, description="InfoNCE temperature")
    symmetric_loss: bool = Field(
        False, description="InfoNCE: also ask each clicked item to pick its query among the batch's queries"
    )
    irrelevant_ceiling: float = Field(
        0.3, ge=-1.0, le=1.0, description="cosine the results of an irrelevant session are pushed below"
    )
    query_lr: float = Field(5e-5, gt=0.0, le=1.0, description="learning rate of the query tower")
    item_lr: float = Field(5e-5, gt=0.0, le=1.0, description="learning rate of the item tower (ignored when shared)")
    weight_decay: float = Field(0.01, ge=0.0, le=1.0)
    warmup_share: float = Field(0.1, ge=0.0, lt=1.0, description="share of the optimizer steps spent warming up")
    batch_size: int = Field(16, ge=1, le=4096)
    num_epochs: int = Field(3, ge=1, le=1000)
    train_last_n_layers: int = Field(
        -1, ge=-1, description="train only the last n transformer layers; -1 trains all, 0 freezes the encoder"
    )
    trainable_parts: Literal["all", "query_tower", "projections"] = Field(
        "all",
        description="text-to-image models: train the whole model, the text tower only (image vectors stay as "
        "indexed), or the two projection heads only; text models take only 'all'",
    )
    use_ips: bool = Field(True, description="correct position bias by inverse propensity weights")
    max_ips_weight: float = Field(10.0, ge=1.0, description="clip of the inverse propensity weight")
    max_seq_length: int = Field(128, ge=8, le=8192)
    negatives_per_query: int = Field(16, ge=0, le=1024, description="hard negatives kept per session, best first")
    positives_per_query: int = Field(4, ge=1, le=256, description="clicked results kept per session")
    fine_tuned_weight_share: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="share s of the fine-tuned change kept: W = W_base + s * (W_tuned - W_base); below 1 trades "
        "fit to the clicked queries for robustness on unseen ones (weight-space ensembling, WiSE-FT)",
    )
    choose_weight_share: bool = Field(
        True,
        description="choose the share of the fine-tuned change kept on the retrieval validation: s/2 or s for "
        "s = fine_tuned_weight_share (WiSE-FT's mixing coefficient, chosen on held-out queries)",
    )
    refit_on_all_sessions: bool = Field(
        False,
        description="once validation has chosen the checkpoint and the weight share, train again from the initial "
        "weights on every session (held-out ones included) for as long, and keep that share of the change",
    )
    training_dropout: bool = Field(
        True,
        description="train with the model's dropout (on a CPU its masks drawn cheaply: finetuning.dropout); false "
        "trains at p = 0, the weights as they are served: NDCG@10 gained 0.0019 less on nfcorpus (three seeds, "
        "benchmarks/README.md), for a CPU step no faster than with the cheap masks",
    )
    seed: int = 0

    @model_validator(mode="after")
    def _check_loss_knobs(self) -> FineTuningParams:
        if self.loss == "info_nce" and self.temperature < 1e-3:
            raise ValueError(f"temperature {self.temperature} is too small for InfoNCE (exp overflows); use >= 0.001")
        return self
