from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg.types.json import Jsonb

from embedding_studio.db import libpq_url
from embedding_studio.items import ItemMeta, create_loader
from embedding_studio.items.loaders.pgsql import (
    ColumnNotFoundError,
    PgsqlJsonbLoader,
    PgsqlMultiTextColumnLoader,
    PgsqlTextLoader,
    TableNotFoundError,
)

pytestmark = pytest.mark.integration

SCHEMA = "items_loader_test"


@pytest.fixture(scope="module")
def pg_url(database_url: str) -> Iterator[str]:
    """Test tables in their own schema, so ``clean_db`` (which empties public tables) never touches them."""
    url = libpq_url(database_url)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        connection.execute(f"CREATE SCHEMA {SCHEMA}")
        connection.execute(f"CREATE TABLE {SCHEMA}.docs (id bigint PRIMARY KEY, title text, body text, meta jsonb)")
        with connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {SCHEMA}.docs (id, title, body, meta) VALUES (%s, %s, %s, %s)",
                [
                    (index, f"title {index}", None if index == 3 else f"body {index}", Jsonb({"n": index}))
                    for index in range(1, 301)
                ],
            )
        connection.execute(f"UPDATE {SCHEMA}.docs SET meta = NULL, title = NULL WHERE id = 5")
        connection.execute(f'CREATE TABLE {SCHEMA}."odd ""name" ("key" text PRIMARY KEY, "select" text)')
        connection.execute(f"INSERT INTO {SCHEMA}.\"odd \"\"name\" VALUES ('k1', 'quoted fine')")
    yield url
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


def docs_row_count(url: str) -> int:
    with psycopg.connect(url) as connection:
        return int(connection.execute(f"SELECT count(*) FROM {SCHEMA}.docs").fetchone()[0])


def test_text_loader_loads_by_id_and_reports_missing(pg_url: str) -> None:
    loader = PgsqlTextLoader("docs", text_column="body", schema=SCHEMA, connection_url=pg_url)
    result = loader.load([ItemMeta("1"), ItemMeta("3"), ItemMeta("999"), ItemMeta("not-a-number")])
    assert {item.item_id: item.data for item in result.items} == {"1": "body 1", "3": ""}
    assert {(f.meta.item_id, f.reason) for f in result.failed} == {("999", "missing"), ("not-a-number", "missing")}
    loader.close()


def test_two_metas_naming_one_row_both_get_it_and_repeats_count_once(pg_url: str) -> None:
    loader = PgsqlTextLoader("docs", text_column="body", schema=SCHEMA, connection_url=pg_url)
    metas = [ItemMeta("7"), ItemMeta("07"), ItemMeta("7", source="other"), ItemMeta("7"), ItemMeta("0999")]
    result = loader.load(metas)
    assert [(item.meta.item_id, item.meta.source, item.data) for item in result.items] == [
        ("7", "default", "body 7"),
        ("07", "default", "body 7"),
        ("7", "other", "body 7"),
    ]
    assert [(f.meta.item_id, f.reason) for f in result.failed] == [("0999", "missing")]


def test_more_ids_than_one_page_cost_one_query_per_page(pg_url: str) -> None:
    loader = PgsqlTextLoader("docs", text_column="body", schema=SCHEMA, connection_url=pg_url, page_size=50)
    loader.validate()
    queries: list[int] = []
    original = loader._execute_pages

    def counting_execute_pages(query, pages):
        queries.extend(page.count(",") + 1 for page in pages)  # pages are array literals "{1,2,...}"
        return original(query, pages)

    loader._execute_pages = counting_execute_pages  # type: ignore[method-assign]
    result = loader.load(ItemMeta(str(index)) for index in range(1, 131))
    assert len(result.items) == 130 and result.failed == []
    assert sorted(int(item.item_id) for item in result.items) == list(range(1, 131))
    assert queries == [50, 50, 30]


def test_multi_column_items_are_their_columns_read_as_one_text(pg_url: str) -> None:
    from embedding_studio.items import item_text

    loader = create_loader(
        "pgsql_multi_text", table="docs", schema=SCHEMA, text_columns=["title", "body"], connection_url=pg_url
    )
    result = loader.load([ItemMeta("2"), ItemMeta("3"), ItemMeta("5")])
    assert {item.item_id: item_text(item.data) for item in result.items} == {
        "2": "title 2. body 2",
        "3": "title 3",
        "5": "body 5",
    }
    explicit = PgsqlMultiTextColumnLoader("docs", schema=SCHEMA, text_columns=["title", "body"], connection_url=pg_url)
    assert explicit.load([ItemMeta("3")]).items[0].data == {"title": "title 3", "body": ""}


def test_jsonb_loader_and_null_is_unreadable(pg_url: str) -> None:
    loader = PgsqlJsonbLoader("docs", jsonb_column="meta", schema=SCHEMA, connection_url=pg_url)
    result = loader.load([ItemMeta("4"), ItemMeta("5")])
    assert result.items[0].data == {"n": 4}
    assert result.failed[0].meta.item_id == "5" and result.failed[0].reason == "unreadable"


def test_load_all_walks_keyset_pages(pg_url: str) -> None:
    loader = PgsqlJsonbLoader("docs", jsonb_column="meta", schema=SCHEMA, connection_url=pg_url)
    batches = list(loader.load_all(batch_size=128))
    assert [len(batch) for batch in batches] == [127, 128, 44]  # id 5, in the first page, has a NULL document
    assert [item.item_id for item in batches[0][:3]] == ["1", "2", "3"]
    assert [(f.meta.item_id, f.reason) for f in loader.load_all_failed] == [("5", "unreadable")]


def test_quoted_names_that_need_quoting_work(pg_url: str) -> None:
    loader = PgsqlTextLoader('odd "name', id_column="key", text_column="select", schema=SCHEMA, connection_url=pg_url)
    assert loader.load([ItemMeta("k1")]).items[0].data == "quoted fine"
    assert [item.item_id for batch in loader.load_all(10) for item in batch] == ["k1"]


def test_table_that_does_not_exist_is_named(pg_url: str) -> None:
    loader = PgsqlTextLoader("no_such_table", schema=SCHEMA, connection_url=pg_url)
    with pytest.raises(TableNotFoundError, match=f'"{SCHEMA}"."no_such_table" does not exist'):
        loader.load([ItemMeta("1")])


@pytest.mark.parametrize(
    "options",
    [
        {"table": "docs", "text_column": f"body FROM {SCHEMA}.docs; DROP TABLE {SCHEMA}.docs; --"},
        {"table": "docs", "text_column": 'body"; DROP TABLE items_loader_test.docs; --'},
        {"table": f"docs; DROP TABLE {SCHEMA}.docs; --", "text_column": "body"},
        {"table": "docs", "text_column": "body", "id_column": "id = id OR 1=1; DROP TABLE items_loader_test.docs"},
    ],
)
def test_injection_attempts_in_names_fail_and_the_table_survives(pg_url: str, options: dict[str, str]) -> None:
    before = docs_row_count(pg_url)
    loader = PgsqlTextLoader(schema=SCHEMA, connection_url=pg_url, **options)
    with pytest.raises((ColumnNotFoundError, TableNotFoundError)):
        loader.load([ItemMeta("1")])
    with pytest.raises((ColumnNotFoundError, TableNotFoundError)):
        list(loader.load_all(10))
    assert docs_row_count(pg_url) == before == 300


def test_text_ids_with_quotes_braces_and_nul_and_an_injection_attempt(pg_url: str) -> None:
    awkward = ['a"b', "c\\d", "{e,f}", "NULL", "", " spaced ", "it's"]
    with psycopg.connect(pg_url, autocommit=True) as connection:
        connection.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.named (name text PRIMARY KEY, body text)")
        with connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {SCHEMA}.named VALUES (%s, %s) ON CONFLICT DO NOTHING",
                [(name, f"body of {name}") for name in awkward],
            )
    loader = PgsqlTextLoader("named", id_column="name", text_column="body", schema=SCHEMA, connection_url=pg_url)
    hostile = [f"a'; DROP TABLE {SCHEMA}.docs; --", "x\x00y", "e", "f"]
    result = loader.load([ItemMeta(name) for name in [*awkward, *hostile]])
    assert {item.item_id: item.data for item in result.items} == {name: f"body of {name}" for name in awkward}
    assert sorted(f.meta.item_id for f in result.failed) == sorted(hostile)
    assert {f.reason for f in result.failed} == {"missing"}
    assert docs_row_count(pg_url) == 300


def test_a_dropped_connection_is_retried(pg_url: str) -> None:
    loader = PgsqlTextLoader(
        "docs", text_column="body", schema=SCHEMA, connection_url=pg_url, retry={"attempts": 3, "initial_delay": 0}
    )
    assert len(loader.load([ItemMeta("1")]).items) == 1
    backend_pid = loader._connection.info.backend_pid
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (backend_pid,))
    result = loader.load([ItemMeta("2")])
    assert [item.data for item in result.items] == ["body 2"]
    assert loader._connection.info.backend_pid != backend_pid
