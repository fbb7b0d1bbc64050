from __future__ import annotations

from pathlib import Path

import pytest

from embedding_studio.items import ItemMeta
from embedding_studio.items.loaders.catalog import CatalogFormatError, JsonlCatalogLoader, default_catalog_path


def test_demo_catalog_loads_by_id_and_reports_missing() -> None:
    loader = JsonlCatalogLoader()
    assert loader.path == default_catalog_path()
    result = loader.load([ItemMeta("4380635"), ItemMeta("not-an-id")])
    assert result.items[0].data.startswith("Fahrenheit Scale")
    assert [(f.meta.item_id, f.reason) for f in result.failed] == [("not-an-id", "missing")]


def test_title_joins_text_and_load_all_streams_in_file_order(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        '{"_id": "1", "title": "Paris", "text": "Capital of France."}\n'
        '{"_id": "2", "title": "", "text": "No title."}\n'
        "\n"
        '{"_id": "3", "title": "Q?", "text": "Answer."}\n',
        encoding="utf-8",
    )
    loader = JsonlCatalogLoader(corpus)
    batches = list(loader.load_all(batch_size=2))
    assert [[item.item_id for item in batch] for batch in batches] == [["1", "2"], ["3"]]
    assert [item.data for batch in batches for item in batch] == [
        "Paris. Capital of France.",
        "No title.",
        "Q? Answer.",
    ]


def test_corrupt_line_is_named(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "1", "text": "ok"}\n{broken\n', encoding="utf-8")
    with pytest.raises(CatalogFormatError, match="corpus.jsonl:2"):
        JsonlCatalogLoader(corpus).load([ItemMeta("1")])
