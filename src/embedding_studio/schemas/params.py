"""Task parameters as stored in ``tasks.params`` (pydantic at the edge: API, CLI, workers and the Python client
share them, so this module needs pydantic only)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from embedding_studio.schemas.display import DEFAULT_SNIPPET_CHARS, MAX_SNIPPET_CHARS, ItemDisplay
from embedding_studio.schemas.item_text import DEFAULT_SEPARATOR, DEFAULT_WORDS_PER_PART, ItemText, ItemTextError
from embedding_studio.schemas.item_text import item_text as text_of_item
from embedding_studio.schemas.records import nul_location

#: More batches than this in one task is surely a mistake (and would make the stored params huge).
MAX_BATCHES_PER_TASK = 1000

#: A model id: a base model name, a local model directory or an MLflow run id. Whether it names a model is
#: checked when the task is created (422 naming it); the type keeps out what can never be one (blank, padded
#: with spaces, control characters), so the OpenAPI document says so too.
ModelId = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=1000, pattern=r"^[^\s\x00-\x1f\x7f]([^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$"
    ),
]


class FineTuningTaskParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_id: int | None = Field(
        default=None, ge=1, description="One released clickstream batch (kept for compatibility: batch_ids=[id])."
    )
    batch_ids: list[Annotated[int, Field(ge=1)]] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_BATCHES_PER_TASK,
        description="Released clickstream batches to train on together (each once).",
    )
    since_blue: bool = Field(
        default=False,
        description="Train on every released batch newer than the newest batch the blue model was trained on "
        "(every released batch when blue is a base model or there is none yet). Resolved when the task runs.",
    )
    replay_share: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="Share of the sessions of the chosen batches older than the newest one that are trained on "
        "(sampled by the method's split seed, so the same on every run); the newest batch is always used whole.",
    )
    method: str = Field(default="default_text", min_length=1, description="Fine-tuning method plugin name.")
    method_options: dict[str, Any] = Field(
        default_factory=dict,
        description='Overrides of the method\'s fields, e.g. {"max_evals": 4, "num_epochs": 1}.',
    )
    embedding_model_id: ModelId | None = Field(
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

    @model_validator(mode="after")
    def _one_batch_choice(self) -> FineTuningTaskParams:
        chosen = [
            name
            for name, given in (
                ("batch_id", self.batch_id is not None),
                ("batch_ids", self.batch_ids is not None),
                ("since_blue", self.since_blue),
            )
            if given
        ]
        if len(chosen) != 1:
            raise ValueError(
                "choose the batches to train on with exactly one of batch_id, batch_ids or since_blue"
                + (f" (got {', '.join(chosen)})" if chosen else "")
            )
        if self.batch_ids is not None and len(set(self.batch_ids)) != len(self.batch_ids):
            repeated = sorted({batch for batch in self.batch_ids if self.batch_ids.count(batch) > 1})
            raise ValueError(f"batch_ids names batch {repeated[0]} more than once")
        return self

    def explicit_batch_ids(self) -> list[int] | None:
        """The batches named in the request, oldest first; None for ``since_blue`` (resolved against blue)."""
        if self.batch_ids is not None:
            return sorted(self.batch_ids)
        return [self.batch_id] if self.batch_id is not None else None


class LoaderSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Loader name (items registry), e.g. jsonl_catalog.")
    options: dict[str, Any] = Field(default_factory=dict)


class ItemTextOptions(BaseModel):
    """How an item becomes the text parts a model embeds (``items.ItemText``); the default joins every text field."""

    model_config = ConfigDict(extra="forbid")

    fields: list[str] = Field(
        default_factory=list,
        description="Fields joined, in this order; empty: every text or number field, in the item's order.",
    )
    template: str | None = Field(
        default=None, description='Format string over the fields instead, e.g. "{name}: {description}".'
    )
    separator: str = Field(default=DEFAULT_SEPARATOR, description="What joins the fields.")
    words_per_part: int = Field(
        default=DEFAULT_WORDS_PER_PART, ge=1, description="Longer texts are cut into parts of this many words."
    )

    @model_validator(mode="after")
    def _valid(self) -> ItemTextOptions:
        self.config()  # raises ItemTextError (a ValueError, so a 422 naming the problem)
        return self

    def config(self) -> ItemText:
        return ItemText.from_options(self.model_dump())

    @classmethod
    def of(cls, config: ItemText) -> ItemTextOptions:
        return cls.model_validate(config.as_options())


class ItemDisplayOptions(BaseModel):
    """What search returns with each item (``items.ItemDisplay``): a title, a snippet of its text, named fields."""

    model_config = ConfigDict(extra="forbid")

    fields: list[str] = Field(
        default_factory=list,
        description="Item fields copied as they are into each search result's payload (e.g. url, price).",
    )
    title_field: str | None = Field(
        default=None,
        min_length=1,
        description="The field shown as the title; default: the first of title, name, headline, subject, label.",
    )
    snippet_chars: int = Field(
        default=DEFAULT_SNIPPET_CHARS,
        ge=0,
        le=MAX_SNIPPET_CHARS,
        description="The snippet of the item's text (as embedded) is cut at a word to this many characters; 0: none.",
    )

    @model_validator(mode="after")
    def _valid(self) -> ItemDisplayOptions:
        self.config()  # raises ItemDisplayError (a ValueError, so a 422 naming the problem)
        return self

    def config(self) -> ItemDisplay:
        return ItemDisplay.from_options(self.model_dump())

    @classmethod
    def of(cls, config: ItemDisplay) -> ItemDisplayOptions:
        return cls.model_validate(config.as_options())


class ReindexTaskParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source_model_id: ModelId | None = Field(
        default=None,
        description="Collection whose items are re-embedded; default: the blue one, else the catalog loader.",
    )
    dest_model_id: ModelId = Field(
        description="Model the new collection is embedded with: a base model name (all-MiniLM-L6-v2), a local model "
        "directory or an MLflow run id; one that names no model is refused (422).",
        examples=["all-MiniLM-L6-v2"],
    )
    deploy_as_blue: bool = Field(default=False, description="Flip search to the new collection when it is built.")
    wait_on_conflict: bool = Field(default=False, description="Wait for another reindex into dest instead of refusing.")
    loader: LoaderSpec | None = Field(default=None, description="Read items from this loader instead of a collection.")
    item_text: ItemTextOptions | None = Field(
        default=None,
        description="How items become text parts; default: as the blue collection was cut, else every text field. "
        "A fine-tuning deployment passes its method's, so search serves the texts the model was trained on.",
    )
    item_display: ItemDisplayOptions | None = Field(
        default=None,
        description="What search returns with each item (title, snippet, named fields); default: as the blue "
        "collection does, else a title-like field and a 200-character snippet.",
    )
    batch_size: int = Field(default=256, ge=1, le=100_000, description="Parts embedded and written per batch.")
    pause_between_batches_s: float = Field(
        default=0.0, ge=0.0, le=60.0, description="Throttle: seconds to wait between batches (spares a busy database)."
    )


class UpsertItem(BaseModel):
    """One item: a ``text``, the ``fields`` of a JSON item (as the catalog holds them), or an ``image``; exactly one.

    Each text collection turns it into text parts with the ``item_text`` it was built with, as it did its other
    items. An image is named by its key in the catalog's image loader (the one the image collections were indexed
    from, e.g. ``shapes/red-circle-7.png`` under an S3 prefix): what search returns as ``payload.image``, so the
    picture is stored once, in the store, and the upsert stays a small JSON body. Text into an image collection,
    or an image into a text one, is refused when asked for (422).
    """

    model_config = ConfigDict(extra="forbid")

    item_id: str = Field(min_length=1, max_length=1000)
    text: str | None = Field(
        default=None, description="A text item; long texts are split into parts searched as one item."
    )
    fields: dict[str, Any] | None = Field(
        default=None, description='A JSON item\'s fields, e.g. {"name": "...", "description": "..."}.'
    )
    image: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="An image item: its key in the catalog's image loader (as search returns it in payload.image), "
        "read and embedded by the worker with each image collection's model.",
        examples=["catalog/red-shoe-17.jpg"],
    )
    payload: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_kind_with_text(self) -> UpsertItem:
        if sum(given is not None for given in (self.text, self.fields, self.image)) != 1:
            raise ValueError(f"item {self.item_id!r}: give text, fields or image, exactly one")
        if nul_location([self.item_id, self.text, self.fields, self.image, self.payload], "item") is not None:
            # the task's params and the change log are jsonb, which cannot hold it: a 422 here, not a 500 there
            raise ValueError(f"item {self.item_id!r}: the NUL character (\\u0000) cannot be stored")
        if self.image is not None:
            return self
        try:
            text_of_item(self.data)
        except ItemTextError as error:
            raise ValueError(f"item {self.item_id!r}: {error}") from None
        return self

    @property
    def data(self) -> str | dict[str, Any]:
        """The item as a loader would give it: what ``items.item_parts`` cuts (an image: its key, the part's
        content, as a reindex stores it)."""
        if self.image is not None:
            return self.image
        return self.text if self.text is not None else dict(self.fields or {})


class UpsertTaskParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    upserts: list[UpsertItem] = Field(default_factory=list)
    deletes: list[str] = Field(default_factory=list)
