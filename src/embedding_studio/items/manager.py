"""``ItemSetManager``: from downloaded items and a train/test split to what fine-tuning consumes.

It turns each item into the text parts the model embeds with the method's ``ItemText`` (the very
function reindex and upserts use, so training sees what search serves) or keeps an image, remembers
which parts form one item, optionally augments training examples,
runs the modality's preprocessor, and keeps from the clickstream only what refers to prepared items,
counting everything it drops (seed: "Item Processing").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

from embedding_studio.clickstream.types import FineTuningInput
from embedding_studio.items.augmentation import AugmentationConfig, Augmenter
from embedding_studio.items.item_text import ItemText, ItemTextError, item_parts
from embedding_studio.items.loader import UNREADABLE, LoadResult
from embedding_studio.items.types import DownloadedItem, FailedItem, ItemMeta

if TYPE_CHECKING:
    from embedding_studio.items.preprocessors import Preprocessor

logger = logging.getLogger(__name__)

PART_SEPARATOR = "#"


class TrainingDataset(Protocol):
    """Anything with a train and a test list of inputs (the fine-tuning splitter's ``TrainTestSplit``)."""

    @property
    def train(self) -> Sequence[FineTuningInput]: ...

    @property
    def test(self) -> Sequence[FineTuningInput]: ...


@dataclass
class SimpleTrainingDataset:
    train: list[FineTuningInput]
    test: list[FineTuningInput]


def part_id(item_id: str, index: int) -> str:
    return f"{item_id}{PART_SEPARATOR}{index}"


@dataclass
class PreparedItemSet:
    """Prepared items. Text items have ``parts[item_id]``: the texts the model embeds for that item, in
    order (one when it fits); each part also has an id ``"<item_id>#<n>"`` whose owner is in
    ``part_owner``. Image items are in ``images``. ``augmented_parts`` holds training-only variants
    (aligned with ``parts``), ``features`` the preprocessor's output per item when one was given."""

    parts: dict[str, list[str]] = field(default_factory=dict)
    part_owner: dict[str, str] = field(default_factory=dict)
    images: dict[str, Any] = field(default_factory=dict)
    augmented_parts: dict[str, list[str]] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)
    failed: list[FailedItem] = field(default_factory=list)
    metas: dict[str, ItemMeta] = field(default_factory=dict)

    @property
    def item_ids(self) -> set[str]:
        return set(self.parts) | set(self.images)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.parts or item_id in self.images

    def __len__(self) -> int:
        return len(self.parts) + len(self.images)

    def part_ids(self, item_id: str) -> list[str]:
        return [part_id(item_id, index) for index in range(len(self.parts.get(item_id, ())))]

    def part_text(self, part: str) -> str:
        owner = self.part_owner[part]
        return self.parts[owner][int(part.rsplit(PART_SEPARATOR, 1)[1])]

    @property
    def split_item_count(self) -> int:
        """Items that needed more than one part."""
        return sum(1 for parts in self.parts.values() if len(parts) > 1)


@dataclass
class ClickstreamPreparationReport:
    """What preparing the clickstream dropped and added, per split."""

    sessions_in: dict[str, int] = field(default_factory=dict)
    sessions_kept: dict[str, int] = field(default_factory=dict)
    sessions_dropped: dict[str, int] = field(default_factory=dict)
    results_dropped: dict[str, int] = field(default_factory=dict)
    clicks_dropped: dict[str, int] = field(default_factory=dict)
    augmented_queries: int = 0


@dataclass
class PreparedClickstream:
    """The train and test inputs restricted to prepared items; ``dataset["train"]`` works as in the seed."""

    train: list[FineTuningInput]
    test: list[FineTuningInput]
    report: ClickstreamPreparationReport

    def __getitem__(self, split: str) -> list[FineTuningInput]:
        if split == "train":
            return self.train
        if split == "test":
            return self.test
        raise KeyError(f"unknown split {split!r}; expected 'train' or 'test'")


def items_to_load(inputs: Iterable[FineTuningInput] | TrainingDataset, source: str = "default") -> set[ItemMeta]:
    """The metas of every item shown in ``inputs`` (or both splits of a dataset): what a loader must fetch."""
    if hasattr(inputs, "train") and hasattr(inputs, "test"):
        sequences: Iterable[FineTuningInput] = [*inputs.train, *inputs.test]  # type: ignore[union-attr]
    else:
        sequences = inputs  # type: ignore[assignment]
    return {ItemMeta(item_id=item_id, source=source) for each in sequences for item_id in each.results}


class ItemSetManager:
    """Prepares downloaded items and the clickstream that refers to them.

    ``missing_items`` says what happens to a session that shows an item that was not prepared:
    ``"drop_items"`` removes that item from the session's results and clicks (a session left with no
    result is dropped), ``"drop_sessions"`` drops the whole session. Either way the counts are in the
    returned report.
    """

    def __init__(
        self,
        item_text: ItemText | None = None,
        augmentation: AugmentationConfig | None = None,
        preprocessors: Mapping[str, Preprocessor] | None = None,
        missing_items: Literal["drop_items", "drop_sessions"] = "drop_items",
    ) -> None:
        if missing_items not in ("drop_items", "drop_sessions"):
            raise ValueError(f"missing_items must be 'drop_items' or 'drop_sessions', got {missing_items!r}")
        self.item_text = item_text or ItemText()
        self.augmentation = augmentation
        self.preprocessors = dict(preprocessors or {})
        self.missing_items = missing_items

    # -- items --
    def prepare_items(self, downloaded: Iterable[DownloadedItem] | LoadResult) -> PreparedItemSet:
        prepared = PreparedItemSet()
        if isinstance(downloaded, LoadResult):
            prepared.failed.extend(downloaded.failed)
            downloaded = downloaded.items
        for item in downloaded:
            if _is_image(item.data):
                prepared.metas[item.item_id] = item.meta
                prepared.images[item.item_id] = item.data
                continue
            try:
                parts = item_parts(item.data, self.item_text)
            except ItemTextError as error:
                prepared.failed.append(FailedItem(item.meta, UNREADABLE, f"item text: {error}"))
                continue
            prepared.metas[item.item_id] = item.meta
            prepared.parts[item.item_id] = parts
            for index in range(len(parts)):
                prepared.part_owner[part_id(item.item_id, index)] = item.item_id
        if prepared.failed:
            logger.warning("%d items could not be prepared", len(prepared.failed))
        return prepared

    def _preprocess(self, prepared: PreparedItemSet) -> None:
        text_preprocessor = self.preprocessors.get("text")
        if text_preprocessor is not None:
            for item_id, parts in prepared.parts.items():
                prepared.features[item_id] = text_preprocessor(parts)
        image_preprocessor = self.preprocessors.get("image")
        if image_preprocessor is not None and prepared.images:
            item_ids = list(prepared.images)
            tensors = image_preprocessor([prepared.images[item_id] for item_id in item_ids])
            for index, item_id in enumerate(item_ids):
                prepared.features[item_id] = tensors[index]

    # -- clickstream --
    def _restrict(
        self, inputs: Sequence[FineTuningInput], available: set[str], split: str, report: ClickstreamPreparationReport
    ) -> list[FineTuningInput]:
        kept: list[FineTuningInput] = []
        results_dropped = clicks_dropped = 0
        for each in inputs:
            missing = [item_id for item_id in each.results if item_id not in available]
            if not missing:
                kept.append(each)
                continue
            missing_set = set(missing)
            if self.missing_items == "drop_sessions":
                continue
            results = [item_id for item_id in each.results if item_id not in missing_set]
            results_dropped += len(each.results) - len(results)
            events = [item_id for item_id in each.events if item_id not in missing_set]
            clicks_dropped += len(each.events) - len(events)
            if not results:
                continue
            ranks = {item_id: rank for item_id, rank in each.ranks.items() if item_id not in missing_set}
            kept.append(replace(each, results=results, ranks=ranks, events=events))
        report.sessions_in[split] = len(inputs)
        report.sessions_kept[split] = len(kept)
        report.sessions_dropped[split] = len(inputs) - len(kept)
        report.results_dropped[split] = results_dropped
        report.clicks_dropped[split] = clicks_dropped
        return kept

    def _augment(
        self, prepared: PreparedItemSet, train: list[FineTuningInput], report: ClickstreamPreparationReport
    ) -> list[FineTuningInput]:
        config = self.augmentation
        if config is None or config.copies == 0:
            return train
        augmenter = Augmenter(config)
        if config.target in ("items", "both"):
            train_items = sorted({item_id for each in train for item_id in each.results if item_id in prepared.parts})
            for item_id in train_items:
                prepared.augmented_parts[item_id] = [augmenter.augment(part) for part in prepared.parts[item_id]]
        if config.target not in ("queries", "both"):
            return train
        augmented: list[FineTuningInput] = []
        for each in train:
            augmented.append(each)
            if not isinstance(each.query, str):
                continue
            for index, variant in enumerate(augmenter.variants(each.query), start=1):
                augmented.append(replace(each, session_id=f"{each.session_id}#aug{index}", query=variant))
                report.augmented_queries += 1
        return augmented

    def __call__(
        self, downloaded: Iterable[DownloadedItem] | LoadResult, training_dataset: TrainingDataset
    ) -> tuple[PreparedItemSet, PreparedClickstream]:
        prepared = self.prepare_items(downloaded)
        available = prepared.item_ids
        report = ClickstreamPreparationReport()
        train = self._restrict(list(training_dataset.train), available, "train", report)
        test = self._restrict(list(training_dataset.test), available, "test", report)
        train = self._augment(prepared, train, report)
        self._preprocess(prepared)
        dropped = sum(report.sessions_dropped.values())
        if dropped:
            logger.warning("dropped %d sessions that referred to items which could not be prepared", dropped)
        return prepared, PreparedClickstream(train=train, test=test, report=report)


def _is_image(data: Any) -> bool:
    """A PIL image (anything with a size and a mode) is kept as is for an image tower."""
    return hasattr(data, "size") and hasattr(data, "mode")


def items_set_manager(
    downloaded: Iterable[DownloadedItem] | LoadResult, training_dataset: TrainingDataset, **options: Any
) -> tuple[PreparedItemSet, PreparedClickstream]:
    """The seed's ``items_set_manager(downloaded, training_dataset)`` with an ``ItemSetManager(**options)``."""
    return ItemSetManager(**options)(downloaded, training_dataset)
