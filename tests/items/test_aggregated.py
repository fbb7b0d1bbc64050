from __future__ import annotations

from pathlib import Path

from embedding_studio.items import ItemMeta, create_loader
from embedding_studio.items.loaders.aggregated import AggregatedLoader
from embedding_studio.items.loaders.local import LocalJsonLoader, LocalTextLoader


def test_items_are_routed_to_the_loader_of_their_source(tmp_path: Path) -> None:
    (tmp_path / "texts").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("A", encoding="utf-8")
    (tmp_path / "docs" / "a.json").write_text('{"title": "doc A"}', encoding="utf-8")
    loader = AggregatedLoader(
        {
            "texts": LocalTextLoader(tmp_path / "texts"),
            "docs": {"name": "local_json", "options": {"root": str(tmp_path / "docs")}},
        }
    )
    result = loader.load([ItemMeta("a", "texts"), ItemMeta("a", "docs"), ItemMeta("b", "texts"), ItemMeta("a", "s3")])
    assert {(item.meta.source, item.item_id): item.data for item in result.items} == {
        ("texts", "a"): "A",
        ("docs", "a"): {"title": "doc A"},
    }
    assert {(f.meta.source, f.meta.item_id, f.reason) for f in result.failed} == {
        ("texts", "b", "missing"),
        ("s3", "a", "error"),
    }
    streamed = [(item.meta.source, item.item_id) for batch in loader.load_all(10) for item in batch]
    assert sorted(streamed) == [("docs", "a"), ("texts", "a")]
    assert isinstance(loader.loaders["docs"], LocalJsonLoader)


def test_aggregated_loader_from_configuration(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("X", encoding="utf-8")
    loader = create_loader("aggregated", loaders={"local": {"name": "local_text", "options": {"root": str(tmp_path)}}})
    assert loader.load([ItemMeta("x", "local")]).items[0].data == "X"
