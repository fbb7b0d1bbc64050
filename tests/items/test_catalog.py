from __future__ import annotations

from pathlib import Path

import pytest

from embedding_studio.items import ItemMeta, item_text
from embedding_studio.items.loaders.catalog import CatalogFormatError, JsonlCatalogLoader, default_catalog_path


def test_demo_catalog_loads_by_id_and_reports_missing() -> None:
    loader = JsonlCatalogLoader()
    assert loader.path == default_catalog_path()
    result = loader.load([ItemMeta("4380635"), ItemMeta("not-an-id")])
    assert item_text(result.items[0].data).startswith("Fahrenheit Scale")
    assert [(f.meta.item_id, f.reason) for f in result.failed] == [("not-an-id", "missing")]


def test_items_are_their_fields_read_as_title_and_text_and_load_all_streams_in_file_order(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        '{"_id": "1", "title": "Paris", "text": "Capital of France."}\n'
        '{"_id": "2", "title": "", "text": "No title."}\n'
        "\n"
        '{"_id": "3", "title": "Q?", "text": "Answer.", "metadata": {}}\n',
        encoding="utf-8",
    )
    loader = JsonlCatalogLoader(corpus)
    batches = list(loader.load_all(batch_size=2))
    assert [[item.item_id for item in batch] for batch in batches] == [["1", "2"], ["3"]]
    assert batches[1][0].data == {"title": "Q?", "text": "Answer.", "metadata": {}}  # every field but the id
    assert [item_text(item.data) for batch in batches for item in batch] == [
        "Paris. Capital of France.",
        "No title.",
        "Q? Answer.",
    ]


def test_corrupt_line_is_named(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "1", "text": "ok"}\n{broken\n', encoding="utf-8")
    with pytest.raises(CatalogFormatError, match="corpus.jsonl:2"):
        JsonlCatalogLoader(corpus).load([ItemMeta("1")])


def test_a_sample_is_uniform_reproducible_and_leaves_out_excluded_ids(tmp_path: Path) -> None:
    from embedding_studio.items.loader import reservoir_sample

    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(f'{{"_id": "d{index}", "title": "t{index}", "text": "x"}}\n' for index in range(50)))
    loader = JsonlCatalogLoader(path)
    sample = loader.sample(10, seed=3, exclude={"d0", "d1"})
    ids = [item.meta.item_id for item in sample]
    assert len(ids) == len(set(ids)) == 10
    assert not {"d0", "d1"} & set(ids)
    assert ids == [item.meta.item_id for item in loader.sample(10, seed=3, exclude={"d0", "d1"})]
    assert sample[0].data["title"].startswith("t")
    assert len(loader.sample(100)) == 50  # a sample larger than the source is all of it

    # Algorithm R: every position is equally likely to be kept.
    counts = [0] * 10
    for seed in range(2000):
        for value in reservoir_sample(range(10), 3, seed):
            counts[value] += 1
    assert all(abs(count / 2000 - 0.3) < 0.05 for count in counts)
    with pytest.raises(ValueError, match="count"):
        reservoir_sample(range(3), -1, 0)
