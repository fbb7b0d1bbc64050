"""Task parameters as stored in ``tasks.params`` (pydantic at the edge: API, CLI and workers share them)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class FineTuningTaskParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_id: int = Field(ge=1, description="A released clickstream batch.")
    method: str = Field(default="default_text", min_length=1, description="Fine-tuning method plugin name.")
    method_options: dict[str, Any] = Field(
        default_factory=dict,
        description='Overrides of the method\'s fields, e.g. {"max_evals": 4, "num_epochs": 1}.',
    )
    embedding_model_id: str | None = Field(
        default=None,
        description="Model to start from: base name, local directory or MLflow run id; default: the blue model, "
        "else the method's base model.",
    )
    deploy_as_blue: bool = Field(
        default=False,
        description="Reindex with the best model and flip search to it, when it retrieves at least as well as the "
        "blue model on the batch's held-out sessions (see min_deploy_gain, force_deploy); otherwise the task ends "
        'done with result.deployment = {"deployed": false, "reason": "not deployed: NDCG@10 ... against blue ..."}.',
    )
    force_deploy: bool = Field(
        default=False,
        description="With deploy_as_blue: deploy the best model even when it is not better than the blue one.",
    )
    min_deploy_gain: float = Field(
        default=0.0,
        ge=0.0,
        description="With deploy_as_blue: by how much the best model's held-out main metric (NDCG@10 for the "
        "shipped methods) must beat the blue model's for it to be deployed; 0 deploys a model at least as good.",
    )
    wait_on_conflict: bool = Field(
        default=False, description="If another reindex into the same model runs, wait for it instead of refusing."
    )


class LoaderSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Loader name (items registry), e.g. jsonl_catalog.")
    options: dict[str, Any] = Field(default_factory=dict)


class ReindexTaskParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source_model_id: str | None = Field(
        default=None,
        description="Collection whose items are re-embedded; default: the blue one, else the catalog loader.",
    )
    dest_model_id: str = Field(min_length=1, description="Model the new collection is embedded with.")
    deploy_as_blue: bool = Field(default=False, description="Flip search to the new collection when it is built.")
    wait_on_conflict: bool = Field(default=False, description="Wait for another reindex into dest instead of refusing.")
    loader: LoaderSpec | None = Field(default=None, description="Read items from this loader instead of a collection.")
    batch_size: int = Field(default=256, ge=1, le=100_000, description="Parts embedded and written per batch.")
    pause_between_batches_s: float = Field(
        default=0.0, ge=0.0, le=60.0, description="Throttle: seconds to wait between batches (spares a busy database)."
    )


class UpsertItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_id: str = Field(min_length=1, max_length=1000)
    text: str = Field(description="The item's text; long texts are split into parts searched as one item.")
    payload: dict[str, Any] | None = None


class UpsertTaskParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    upserts: list[UpsertItem] = Field(default_factory=list)
    deletes: list[str] = Field(default_factory=list)
