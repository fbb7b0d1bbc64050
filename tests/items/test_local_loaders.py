from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from embedding_studio.items import ItemMeta, LoaderError, create_loader
from embedding_studio.items.loaders.local import LocalImageLoader, LocalJsonLoader, LocalTextLoader


@pytest.fixture()
def text_root(tmp_path: Path) -> Path:
    (tmp_path / "a.txt").write_text("alpha text", encoding="utf-8")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "latin.txt").write_bytes("caf\u00e9".encode("latin-1"))
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "b.txt").write_text("beta", encoding="utf-8")
    (tmp_path / "ignored.md").write_text("not an item", encoding="utf-8")
    return tmp_path


def test_local_text_loads_present_items_and_reports_each_failure(text_root: Path) -> None:
    loader = LocalTextLoader(text_root)
    result = loader.load(
        [ItemMeta("a"), ItemMeta("nested/b"), ItemMeta("empty"), ItemMeta("latin"), ItemMeta("gone"), ItemMeta("a")]
    )
    loaded = {item.item_id: item for item in result.items}
    assert loaded["a"].data == "alpha text"
    assert loaded["nested/b"].data == "beta"
    assert loaded["empty"].data == "" and loaded["empty"].extra["empty"] is True
    reasons = {failure.meta.item_id: failure.reason for failure in result.failed}
    assert reasons == {"latin": "unreadable", "gone": "missing"}
    assert "UTF-8" in next(f.detail for f in result.failed if f.meta.item_id == "latin")
    assert result.failed_share == pytest.approx(2 / 5)


def test_fallback_encoding_decodes_and_says_so(text_root: Path) -> None:
    result = LocalTextLoader(text_root, fallback_encoding="latin-1").load([ItemMeta("latin")])
    assert result.items[0].data == "caf\u00e9"
    assert result.items[0].extra["decoded_with"] == "latin-1"


def test_path_outside_root_is_refused(text_root: Path) -> None:
    (text_root.parent / "secret.txt").write_text("secret", encoding="utf-8")
    result = LocalTextLoader(text_root).load([ItemMeta("../secret")])
    assert result.items == []
    assert result.failed[0].reason == "missing" and "outside" in result.failed[0].detail


def test_load_all_streams_every_file_with_the_extension(text_root: Path) -> None:
    loader = LocalTextLoader(text_root, max_workers=2)
    batches = list(loader.load_all(batch_size=2))
    assert all(len(batch) <= 2 for batch in batches)
    ids = sorted(item.item_id for batch in batches for item in batch)
    assert ids == ["a", "empty", "nested/b"]
    assert [failure.meta.item_id for failure in loader.load_all_failed] == ["latin"]


def test_local_json_and_corrupt_json(tmp_path: Path) -> None:
    (tmp_path / "1.json").write_text(json.dumps({"title": "T", "text": "body"}), encoding="utf-8")
    (tmp_path / "2.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "3.json").write_bytes(b"")
    result = LocalJsonLoader(tmp_path).load([ItemMeta("1"), ItemMeta("2"), ItemMeta("3")])
    assert [item.data for item in result.items] == [{"title": "T", "text": "body"}]
    assert sorted((f.meta.item_id, f.reason) for f in result.failed) == [("2", "unreadable"), ("3", "unreadable")]


def test_local_image_and_corrupt_image(tmp_path: Path) -> None:
    Image.new("RGB", (8, 6), (255, 0, 0)).save(tmp_path / "red.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image")
    result = LocalImageLoader(tmp_path).load([ItemMeta("red"), ItemMeta("broken")])
    assert result.items[0].data.size == (8, 6) and result.items[0].data.mode == "RGB"
    assert result.failed[0].meta.item_id == "broken" and result.failed[0].reason == "unreadable"


def test_registry_builds_local_loaders_and_names_bad_options(text_root: Path) -> None:
    loader = create_loader("local_text", root=str(text_root))
    assert loader.load([ItemMeta("a")]).items[0].data == "alpha text"
    with pytest.raises(LoaderError, match="no option 'bucket'"):
        create_loader("local_text", root=str(text_root), bucket="x")
    with pytest.raises(LoaderError, match="does not exist"):
        create_loader("local_text", root=str(text_root / "nope"))


def test_an_object_store_sample_reads_only_the_sampled_objects(tmp_path: Path) -> None:
    for index in range(30):
        (tmp_path / f"doc{index}.txt").write_text(f"text {index}", encoding="utf-8")
    loader = LocalTextLoader(tmp_path)
    fetched: list[str] = []
    fetch_bytes = loader.fetch_bytes
    loader.fetch_bytes = lambda key: fetched.append(key) or fetch_bytes(key)  # type: ignore[method-assign]
    sample = loader.sample(5, seed=1, exclude={"doc0"})
    assert len(sample) == 5 and "doc0" not in {item.item_id for item in sample}
    assert len(fetched) == 5  # listing the keys read no object
    assert all(item.data.startswith("text ") for item in sample)
