from __future__ import annotations

from datetime import datetime

import pytest
from PIL import Image

from embedding_studio.clickstream.types import FineTuningInput
from embedding_studio.items import (
    AugmentationConfig,
    DownloadedItem,
    FailedItem,
    ImagePreprocessor,
    ItemMeta,
    ItemSetManager,
    ItemText,
    ItemTextError,
    LoadResult,
    SimpleTrainingDataset,
    item_parts,
    items_set_manager,
    items_to_load,
)


def make_input(session_id: str, query: str, results: list[str], clicks: list[str]) -> FineTuningInput:
    return FineTuningInput(
        session_id=session_id,
        query=query,
        results=results,
        ranks={item_id: rank for rank, item_id in enumerate(results, start=1)},
        events=clicks,
        timestamp=datetime(2026, 1, 1),
    )


def downloaded(item_id: str, data: object) -> DownloadedItem:
    return DownloadedItem(meta=ItemMeta(item_id), data=data)


@pytest.fixture()
def dataset() -> SimpleTrainingDataset:
    return SimpleTrainingDataset(
        train=[
            make_input("s1", "paris capital", ["a", "b"], ["a"]),
            make_input("s2", "missing item", ["b", "gone"], ["gone"]),
            make_input("s3", "only missing", ["gone"], []),
        ],
        test=[make_input("t1", "france", ["a", "c"], ["c"])],
    )


def test_items_to_load_collects_every_shown_item(dataset: SimpleTrainingDataset) -> None:
    assert items_to_load(dataset) == {ItemMeta(i) for i in ("a", "b", "gone", "c")}
    assert items_to_load(dataset.test, source="s3") == {ItemMeta("a", "s3"), ItemMeta("c", "s3")}


def test_chosen_fields_make_the_text_and_items_without_them_are_dropped(dataset: SimpleTrainingDataset) -> None:
    load_result = LoadResult(
        items=[
            downloaded("a", {"headline": "Paris", "body": "Capital of France"}),
            downloaded("b", "plain text b"),
            downloaded("c", {"other": "no wanted field"}),
            downloaded("d", {"headline": "   ", "body": None}),
        ],
        failed=[FailedItem(ItemMeta("gone"), "missing", "not found")],
    )
    prepared, clickstream = ItemSetManager(item_text=ItemText(fields=("headline", "body")))(load_result, dataset)
    assert prepared.parts == {"a": ["Paris. Capital of France"], "b": ["plain text b"]}
    failures = {f.meta.item_id: (f.reason, f.detail) for f in prepared.failed}
    assert set(failures) == {"gone", "c", "d"} and failures["c"][0] == "unreadable"
    assert "none of the fields ['headline', 'body']" in failures["c"][1] and "['other']" in failures["c"][1]
    assert [each.session_id for each in clickstream["train"]] == ["s1", "s2"]
    s2 = clickstream.train[1]
    assert s2.results == ["b"] and s2.events == [] and s2.ranks == {"b": 1}
    assert clickstream.test[0].results == ["a"] and clickstream.test[0].events == []
    report = clickstream.report
    assert report.sessions_dropped == {"train": 1, "test": 0}
    assert report.results_dropped == {"train": 2, "test": 1}
    assert report.clicks_dropped == {"train": 1, "test": 1}


def test_drop_sessions_mode_keeps_only_complete_sessions(dataset: SimpleTrainingDataset) -> None:
    items = [downloaded("a", "A"), downloaded("b", "B"), downloaded("c", "C")]
    _, clickstream = items_set_manager(items, dataset, missing_items="drop_sessions")
    assert [each.session_id for each in clickstream.train] == ["s1"]
    assert clickstream.report.sessions_kept == {"train": 1, "test": 1}


def test_by_default_every_text_or_number_field_is_joined_in_the_item_order() -> None:
    item = {"name": "Kettle", "description": "Boils water.", "sku": "K-1", "price": 20, "new": True, "tags": ["x"]}
    assert item_parts(item) == ["Kettle. Boils water. K-1. 20"]
    assert item_parts({"title": "Dr. No.", "text": "A film"}) == ["Dr. No. A film"]  # no "No.. A film"
    assert item_parts("  plain  ") == ["plain"]


def test_a_template_formats_the_fields_and_missing_ones_are_blank() -> None:
    config = ItemText(template="{name}: {description}")
    assert item_parts({"name": "Kettle", "description": "boils", "sku": "K-1"}, config) == ["Kettle: boils"]
    assert item_parts({"description": "boils"}, ItemText(template="{description} ({name})")) == ["boils ()"]
    with pytest.raises(ItemTextError, match=r"none of the template's fields \['name', 'description'\]"):
        item_parts({"sku": "K-1"}, config)


def test_bad_items_and_bad_options_say_what_is_wrong() -> None:
    with pytest.raises(ItemTextError, match=r"no field with a text or number; its fields: \['a', 'b'\]"):
        item_parts({"a": None, "b": [1]})
    with pytest.raises(ItemTextError, match="empty"):
        item_parts("   ")
    with pytest.raises(ItemTextError, match="cannot turn a int into text"):
        item_parts(3)
    with pytest.raises(ItemTextError, match="fields or a template, not both"):
        ItemText(fields=("a",), template="{a}")
    with pytest.raises(ItemTextError, match="names no field"):
        ItemText(template="no field")
    with pytest.raises(ItemTextError, match="words_per_part must be at least 1"):
        ItemText(words_per_part=0)
    with pytest.raises(ItemTextError, match="unknown item_text option 'feilds'"):
        ItemText.from_options({"feilds": ["a"]})
    assert ItemText.from_options(ItemText(fields=("a",), words_per_part=5).as_options()) == ItemText(
        fields=("a",), words_per_part=5
    )


def test_long_items_are_split_into_parts_that_remember_their_owner() -> None:
    words = " ".join(f"w{index}" for index in range(10))
    config = ItemText(words_per_part=4)
    assert item_parts(words, config) == ["w0 w1 w2 w3", "w4 w5 w6 w7", "w8 w9"]
    dataset = SimpleTrainingDataset(train=[make_input("s", "q", ["long", "short"], ["long"])], test=[])
    prepared, _ = ItemSetManager(item_text=config)([downloaded("long", words), downloaded("short", "x y")], dataset)
    assert len(prepared.parts["long"]) == 3 and prepared.split_item_count == 1
    assert prepared.part_ids("long") == ["long#0", "long#1", "long#2"]
    assert {prepared.part_owner[p] for p in prepared.part_ids("long")} == {"long"}
    assert prepared.part_text("long#1") == "w4 w5 w6 w7"


def test_augmentation_is_deterministic_and_never_touches_test(dataset: SimpleTrainingDataset) -> None:
    items = [downloaded("a", "Alpha item"), downloaded("b", "Beta item"), downloaded("c", "Gamma")]
    config = AugmentationConfig(target="both", probability=1.0, copies=2, seed=7)
    first_items, first = ItemSetManager(augmentation=config)(items, dataset)
    second_items, second = ItemSetManager(augmentation=config)(items, dataset)
    assert [each.query for each in first.train] == [each.query for each in second.train]
    assert first_items.augmented_parts == second_items.augmented_parts
    assert first.report.augmented_queries > 0
    assert len(first.train) == 2 + first.report.augmented_queries
    augmented = [each for each in first.train if "#aug" in each.session_id]
    assert all(each.query != "paris capital" for each in augmented if each.session_id.startswith("s1"))
    assert [each.query for each in first.test] == ["france"]
    assert "c" not in first_items.augmented_parts  # only in the test split
    other_items, other = ItemSetManager(augmentation=AugmentationConfig(probability=1.0, copies=2, seed=8))(
        items, dataset
    )
    assert [each.query for each in other.train] != [each.query for each in first.train]


def test_zero_probability_changes_nothing(dataset: SimpleTrainingDataset) -> None:
    items = [downloaded("a", "A"), downloaded("b", "B"), downloaded("c", "C")]
    _, clickstream = ItemSetManager(augmentation=AugmentationConfig(probability=0.0, copies=3))(items, dataset)
    assert clickstream.report.augmented_queries == 0


def test_image_items_are_preprocessed_to_normalized_tensors() -> None:
    images = [
        downloaded("wide", Image.new("RGB", (64, 32), (255, 255, 255))),
        downloaded("gray", Image.new("L", (20, 20))),
    ]
    dataset = SimpleTrainingDataset(train=[make_input("s", "q", ["wide", "gray"], ["wide"])], test=[])
    prepared, _ = ItemSetManager(preprocessors={"image": ImagePreprocessor(size=16)})(images, dataset)
    assert set(prepared.images) == {"wide", "gray"}
    tensor = prepared.features["wide"]
    assert tuple(tensor.shape) == (3, 16, 16)
    expected_white = (1.0 - 0.48145466) / 0.26862954
    assert float(tensor[0, 0, 0]) == pytest.approx(expected_white, rel=1e-5)
    assert tuple(ImagePreprocessor(size=16)([]).shape) == (0, 3, 16, 16)


def test_text_preprocessor_tokenizes_parts() -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from embedding_studio.items import TextPreprocessor

    backend = Tokenizer(models.WordLevel(vocab={"[UNK]": 0, "[PAD]": 1, "a": 2, "b": 3}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]")
    dataset = SimpleTrainingDataset(train=[make_input("s", "q", ["x"], ["x"])], test=[])
    prepared, _ = ItemSetManager(
        item_text=ItemText(words_per_part=2), preprocessors={"text": TextPreprocessor(tokenizer, max_length=2)}
    )([downloaded("x", "a b a")], dataset)
    assert prepared.parts["x"] == ["a b", "a"]
    assert prepared.features["x"]["input_ids"].tolist() == [[2, 3], [2, 1]]
