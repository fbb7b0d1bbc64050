from __future__ import annotations

import pytest
from pydantic import ValidationError

from embedding_studio.config import reset_settings
from embedding_studio.items import ItemMeta, LoaderConfig, LoaderError, UnknownLoaderError, create_loader
from embedding_studio.items.registry import LOADERS, create_configured_loader, loader_class


def test_every_registered_name_resolves_to_a_loader_class() -> None:
    from embedding_studio.items import DataLoader

    for name in LOADERS:
        assert issubclass(loader_class(name), DataLoader), name


def test_unknown_name_is_named() -> None:
    with pytest.raises(UnknownLoaderError, match="'nope'"):
        create_loader("nope")
    with pytest.raises(ValidationError, match="unknown loader 'nope'"):
        LoaderConfig(name="nope")


def test_missing_required_option_is_named() -> None:
    with pytest.raises(LoaderError, match="needs option 'bucket'"):
        create_loader("s3_text")


@pytest.mark.parametrize("name", ["pgsql_text", "pgsql_multi_text", "pgsql_jsonb", "pgsql_image"])
def test_a_pgsql_loader_without_a_connection_url_is_refused_rather_than_reading_the_studios_own_database(
    name: str,
) -> None:
    with pytest.raises(LoaderError, match=f"loader '{name}' needs option 'connection_url'"):
        create_loader(name, table="products")


def test_a_pgsql_loader_given_an_empty_connection_url_names_it() -> None:
    from embedding_studio.items.loaders.pgsql import PgsqlTextLoader

    for empty in ("", "  "):
        with pytest.raises(LoaderError, match="'connection_url' must be the URL of the database"):
            create_loader("pgsql_text", table="products", connection_url=empty)
    loader = PgsqlTextLoader("products", connection_url="postgresql+psycopg://reader@shop-db/shop")
    assert loader._connection_url == "postgresql://reader@shop-db/shop"  # building connects to nothing


def test_an_option_the_loader_fixes_itself_is_refused_by_name() -> None:
    with pytest.raises(LoaderError, match="no option 'content_type'"):
        create_loader("s3_text", bucket="b", content_type="image")


def test_loader_config_creates_the_catalog_loader() -> None:
    loader = LoaderConfig(name="jsonl_catalog", options={}).create()
    item = loader.load([ItemMeta("4380635")]).items[0]
    assert {"title", "text"} <= set(item.data)


def test_settings_pick_the_catalog_loader(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "x", "title": "Title", "text": "Body"}\n', encoding="utf-8")
    monkeypatch.setenv("EMBEDDING_STUDIO_CATALOG_LOADER", "jsonl_catalog")
    monkeypatch.setenv("EMBEDDING_STUDIO_CATALOG_LOADER_OPTIONS", f'{{"path": "{corpus}"}}')
    reset_settings()
    try:
        loader = create_configured_loader()
        assert loader.load([ItemMeta("x")]).items[0].data == {"title": "Title", "text": "Body"}
    finally:
        monkeypatch.undo()
        reset_settings()
