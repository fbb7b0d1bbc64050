"""Items stored as rows of a PostgreSQL table: one text column, several text columns, or a jsonb column.

Table and column names come from configuration, so they are checked against the catalog
(``information_schema.columns``) before any query runs, and then always quoted as identifiers;
item ids are always bound as parameters. A name like ``text"; DROP TABLE items; --`` is simply a
column that does not exist. Loading costs one query per page of ids (``WHERE id = ANY(%s)``), and
``load_all`` walks the table by keyset pages (``WHERE id > last ORDER BY id LIMIT n``), so a large
table is never read with OFFSET or held in memory.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from embedding_studio.items.loader import (
    MISSING,
    UNREADABLE,
    DataLoader,
    LoaderError,
    LoadResult,
    RetryPolicy,
    chunked,
    paused_gc,
)
from embedding_studio.items.types import DownloadedItem, FailedItem, ItemMeta

_INTEGER_TYPES = {"int2", "int4", "int8"}


class TableNotFoundError(LoaderError):
    """The configured table is not in the database (or not visible to the connecting user)."""


class ColumnNotFoundError(LoaderError):
    """A configured column is not in the table."""


@dataclass(frozen=True)
class _TableShape:
    columns: dict[str, str]  # column name -> udt name (int4, text, jsonb, uuid, ...)


def _libpq(url: str) -> str:
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def _text_id(item_id: str) -> str:
    if "\x00" in item_id:
        raise ValueError("PostgreSQL text cannot hold a NUL character")
    return item_id


class PgsqlLoader(DataLoader):
    """Rows of ``schema.table`` keyed by ``id_column``; subclasses say which columns hold the content.

    ``connection_url`` is required: the catalog's database is the user's, and a loader that fell back to Embedding
    Studio's own database when it was left out would read (and index, and show in search) the product's internal
    tables instead of failing.
    """

    def __init__(
        self,
        table: str,
        connection_url: str,
        id_column: str = "id",
        schema: str = "public",
        page_size: int = 1000,
        connect_timeout_s: int = 10,
        retry: RetryPolicy | dict[str, Any] | None = None,
        source: str = "default",
    ) -> None:
        super().__init__(retry=retry, source=source)
        if page_size < 1:
            raise LoaderError(f"page_size must be at least 1, got {page_size}")
        for option, value in (("table", table), ("id_column", id_column), ("schema", schema)):
            if not isinstance(value, str) or not value:
                raise LoaderError(f"PostgreSQL loader option {option!r} must be a non-empty name")
        if not isinstance(connection_url, str) or not connection_url.strip():
            raise LoaderError(
                "PostgreSQL loader option 'connection_url' must be the URL of the database that holds the catalog "
                f"(postgresql://user@host/dbname), got {connection_url!r}"
            )
        self.table = table
        self.id_column = id_column
        self.schema = schema
        self.page_size = page_size
        self.connect_timeout_s = connect_timeout_s
        self._connection_url = _libpq(connection_url)
        self._connection: Any = None
        self._shape: _TableShape | None = None
        self._lock = threading.RLock()

    # -- what subclasses provide --
    def content_columns(self) -> list[str]:
        raise NotImplementedError

    def row_content(self, values: Sequence[Any]) -> tuple[Any, dict[str, Any]]:
        """The item's data from its content column values (in ``content_columns`` order)."""
        raise NotImplementedError

    # -- connection --
    def describe(self) -> str:
        return f'table "{self.schema}"."{self.table}"'

    def _connect(self) -> Any:
        import psycopg

        if self._connection is None or self._connection.closed or self._connection.broken:
            self._connection = psycopg.connect(
                self._connection_url, autocommit=True, connect_timeout=self.connect_timeout_s
            )
        return self._connection

    def is_transient(self, error: BaseException) -> bool:
        import psycopg

        if isinstance(error, psycopg.OperationalError):
            with self._lock:
                if self._connection is not None and self._connection.broken:
                    self._connection = None
            return True
        return super().is_transient(error)

    def _execute(self, query: Any, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        def run() -> list[tuple[Any, ...]]:
            with self._lock:
                connection = self._connect()
                with connection.cursor() as cursor:
                    cursor.execute(query, params)
                    return cursor.fetchall()

        return self._with_retries(run, what=self.describe())

    # -- validation --
    def validate(self) -> _TableShape:
        """Check the table and every configured column exist; raises naming the one that does not."""
        if self._shape is not None:
            return self._shape
        rows = self._execute(
            "SELECT column_name, udt_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
            (self.schema, self.table),
        )
        columns = {str(name): str(udt) for name, udt in rows}
        if not columns:
            raise TableNotFoundError(f"{self.describe()} does not exist (or is not visible to this user)")
        wanted = [self.id_column, *self.content_columns()]
        unknown = [name for name in wanted if name not in columns]
        if unknown:
            raise ColumnNotFoundError(
                f"{self.describe()} has no column {', '.join(map(repr, unknown))}; "
                f"its columns: {', '.join(sorted(columns))}"
            )
        self._shape = _TableShape(columns=columns)
        return self._shape

    @staticmethod
    def _id_converter(udt: str) -> Callable[[str], Any]:
        """Turns an item id into the id column's Python type; ValueError when it cannot be one (no such row)."""
        if udt in _INTEGER_TYPES:
            return int
        if udt == "uuid":
            return uuid.UUID
        return _text_id

    @staticmethod
    def _array_literal(values: list[Any]) -> str:
        """A PostgreSQL array literal of the ids, bound as one parameter and cast server-side.

        psycopg adapts a Python list element by element in Python; for thousands of ids the literal is
        several times cheaper. Every element is double-quoted with backslashes and quotes escaped, so
        the literal means exactly these values (and is still a bound parameter, never SQL text).
        """
        if values and isinstance(values[0], int):
            return "{" + ",".join(map(str, values)) + "}"
        quoted = (str(value).replace("\\", "\\\\").replace('"', '\\"') for value in values)
        return "{" + ",".join(f'"{value}"' for value in quoted) + "}"

    def _select(self) -> Any:
        from psycopg import sql

        return sql.SQL("SELECT {id}, {columns} FROM {table}").format(
            id=sql.Identifier(self.id_column),
            columns=sql.SQL(", ").join(sql.Identifier(name) for name in self.content_columns()),
            table=sql.Identifier(self.schema, self.table),
        )

    def _id_array_cast(self, udt: str) -> Any:
        from psycopg import sql

        return sql.SQL("{}[]").format(sql.Identifier(udt))

    # -- loading --
    def load(self, items: Iterable[ItemMeta]) -> LoadResult:
        with paused_gc():
            return self._load(items)

    def _load(self, items: Iterable[ItemMeta]) -> LoadResult:
        from psycopg import sql

        result = LoadResult()
        items = items if isinstance(items, list | tuple | set | frozenset) else list(items)
        if not items:
            return result
        shape = self.validate()
        udt = shape.columns[self.id_column]
        convert = self._id_converter(udt)
        # id value -> the meta asking for it; a second meta for the same row (another source, "07" and "7")
        # waits in ``also_wanted``, so the common case costs one dict entry per id
        wanted: dict[Any, ItemMeta] = {}
        also_wanted: dict[Any, list[ItemMeta]] = {}
        impossible: set[ItemMeta] = set()
        for meta in items:
            try:
                value = convert(meta.location or meta.item_id)
            except ValueError:
                if meta not in impossible:
                    impossible.add(meta)
                    result.failed.append(
                        FailedItem(meta, MISSING, f"{meta.item_id!r} cannot be a {udt} id of {self.describe()}")
                    )
                continue
            first = wanted.setdefault(value, meta)
            if first is not meta and first != meta:
                others = also_wanted.setdefault(value, [])
                if meta not in others:
                    others.append(meta)
        query = sql.SQL("{select} WHERE {id} = ANY(%s::{cast})").format(
            select=self._select(), id=sql.Identifier(self.id_column), cast=self._id_array_cast(udt)
        )
        pages = [self._array_literal(page) for page in chunked(list(wanted), self.page_size)]
        row_content = self.row_content
        items_append, failed_append = result.items.append, result.failed.append
        for rows in self._execute_pages(query, pages):
            for row in rows:
                meta = wanted.pop(row[0], None)
                if meta is None:
                    continue
                try:
                    data, extra = row_content(row[1:])
                except ValueError as error:
                    failed_append(FailedItem(meta, UNREADABLE, f"{self.describe()}: {error}"))
                    for other in also_wanted.get(row[0], ()):
                        failed_append(FailedItem(other, UNREADABLE, f"{self.describe()}: {error}"))
                    continue
                items_append(DownloadedItem(meta, data, extra))
                for other in also_wanted.get(row[0], ()):
                    items_append(DownloadedItem(other, data, dict(extra)))
        for value, meta in wanted.items():  # what no page returned
            for missing in (meta, *also_wanted.get(value, ())):
                failed_append(FailedItem(missing, MISSING, f"no row with {self.id_column} = {value!s}"))
        return result

    def _execute_pages(self, query: Any, pages: list[str]) -> list[list[tuple[Any, ...]]]:
        """One query per page, sent in a pipeline so the server works on the next page while this
        process decodes the previous one (one round trip in all instead of one per page)."""
        import psycopg

        if len(pages) == 1 or not psycopg.Pipeline.is_supported():
            return [self._execute(query, (page,)) for page in pages]

        def run() -> list[list[tuple[Any, ...]]]:
            with self._lock:
                connection = self._connect()
                cursors = []
                try:
                    with connection.pipeline():
                        for page in pages:
                            cursor = connection.cursor()
                            cursor.execute(query, (page,))
                            cursors.append(cursor)
                        return [cursor.fetchall() for cursor in cursors]
                finally:
                    for cursor in cursors:
                        cursor.close()

        return self._with_retries(run, what=self.describe())

    def _append_row(self, result: LoadResult, meta: ItemMeta, values: Sequence[Any]) -> None:
        try:
            data, extra = self.row_content(values)
        except ValueError as error:
            result.failed.append(FailedItem(meta, UNREADABLE, f"{self.describe()}: {error}"))
            return
        result.items.append(DownloadedItem(meta=meta, data=data, extra=extra))

    def load_all(
        self, batch_size: int = 1000, on_failed: Callable[[list[FailedItem]], None] | None = None
    ) -> Iterator[list[DownloadedItem]]:
        from psycopg import sql

        if batch_size < 1:
            raise LoaderError(f"batch_size must be at least 1, got {batch_size}")
        self.load_all_failed = []
        self.validate()
        identifier = sql.Identifier(self.id_column)
        first = sql.SQL("{select} ORDER BY {id} LIMIT %s").format(select=self._select(), id=identifier)
        following = sql.SQL("{select} WHERE {id} > %s ORDER BY {id} LIMIT %s").format(
            select=self._select(), id=identifier
        )
        rows = self._execute(first, (batch_size,))
        while rows:
            page = LoadResult()
            for row in rows:
                self._append_row(page, ItemMeta(item_id=str(row[0]), source=self.source), row[1:])
            self._report_load_all_failures(page.failed, on_failed)
            if page.items:
                yield page.items
            if len(rows) < batch_size:
                break
            rows = self._execute(following, (rows[-1][0], batch_size))

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


class PgsqlTextLoader(PgsqlLoader):
    """One text column per item; NULL loads as an empty text (``extra["empty"]``), like an empty file."""

    def __init__(self, table: str, text_column: str = "text", **options: Any) -> None:
        super().__init__(table, **options)
        self.text_column = text_column

    def content_columns(self) -> list[str]:
        return [self.text_column]

    def row_content(self, values: Sequence[Any]) -> tuple[Any, dict[str, Any]]:
        value = values[0]
        if value is None or value == "":
            return "", {"empty": True}
        return str(value), {}


class PgsqlMultiTextColumnLoader(PgsqlLoader):
    """Several text columns per item, as fields (column -> text, NULL as ""): which of them make the text the
    model embeds, and how, is the fine-tuning method's ``item_text`` (``items.item_parts``), not the loader's."""

    def __init__(self, table: str, text_columns: Sequence[str] = ("title", "text"), **options: Any) -> None:
        super().__init__(table, **options)
        if isinstance(text_columns, str) or not text_columns:
            raise LoaderError("text_columns must be a non-empty list of column names")
        self.text_columns = list(text_columns)

    def content_columns(self) -> list[str]:
        return self.text_columns

    def row_content(self, values: Sequence[Any]) -> tuple[Any, dict[str, Any]]:
        pairs = zip(self.text_columns, values, strict=True)
        return {name: ("" if value is None else str(value)) for name, value in pairs}, {}


class PgsqlJsonbLoader(PgsqlLoader):
    """One json/jsonb column per item (a text column holding JSON works too); NULL is unreadable."""

    def __init__(self, table: str, jsonb_column: str = "data", **options: Any) -> None:
        super().__init__(table, **options)
        self.jsonb_column = jsonb_column

    def content_columns(self) -> list[str]:
        return [self.jsonb_column]

    def row_content(self, values: Sequence[Any]) -> tuple[Any, dict[str, Any]]:
        value = values[0]
        if value is None:
            raise ValueError(f"column {self.jsonb_column!r} is NULL")
        if isinstance(value, str | bytes):
            try:
                return json.loads(value), {}
            except json.JSONDecodeError as error:
                raise ValueError(f"column {self.jsonb_column!r} is not valid JSON ({error.msg})") from error
        return value, {}


class PgsqlImageLoader(PgsqlLoader):
    """Images whose address is a column of a table (or a view: any query the catalog can be written as): a URL
    (``s3://bucket/key``, ``gs://bucket/key``), a file path, or a key under ``base_url``.

    The rows give ids and addresses; the pictures are read by the image loaders of their stores
    (``items.loaders.image_urls``), downloaded and decoded in those loaders' thread pools. A NULL address, one that
    names nothing, a missing object and bytes that are no image are failed items with the reason, never dropped.
    An image's key (``extra["image"]``, what search returns as ``payload.image`` and what an upsert names) is the
    column's value; ``extra["image_url"]`` is the full URL. ``s3`` and ``gcs`` are the options of ``s3_image`` and
    ``gcs_image`` besides the bucket (``endpoint_url``, credentials, ``api_endpoint``, ``anonymous``, ...).
    """

    content_type = "image"

    def __init__(
        self,
        table: str,
        url_column: str = "image_url",
        base_url: str = "",
        s3: dict[str, Any] | None = None,
        gcs: dict[str, Any] | None = None,
        max_workers: int = 8,
        **options: Any,
    ) -> None:
        from embedding_studio.items.loaders.image_urls import ImageUrlReader

        super().__init__(table, **options)
        if max_workers < 1:
            raise LoaderError(f"max_workers must be at least 1, got {max_workers}")
        self.url_column = url_column
        self.reader = ImageUrlReader(base_url=base_url, s3=s3, gcs=gcs, max_workers=max_workers)

    def content_columns(self) -> list[str]:
        return [self.url_column]

    def row_content(self, values: Sequence[Any]) -> tuple[Any, dict[str, Any]]:
        value = values[0]
        if value is None or not str(value).strip():
            raise ValueError(f"column {self.url_column!r} is empty: no image address")
        return str(value), {}

    def url_for_key(self, key: str) -> str:
        """Where the image of ``key`` (a column value) lives, as search shows it in ``payload.image_url``."""
        return self.reader.url_for(key)

    def _images(self, rows: LoadResult) -> LoadResult:
        """The rows' addresses read as images; the rows' own failures (missing, NULL) kept."""
        loaded, failed = self.reader.read((item.meta, item.data) for item in rows.items)
        keys = {item.meta: item.data for item in rows.items}
        result = LoadResult(failed=[*rows.failed, *failed])
        for item in loaded:
            key = keys[item.meta]
            item.extra.update(image=key, image_url=self.url_for_key(key))
            result.items.append(item)
        return result

    def load(self, items: Iterable[ItemMeta]) -> LoadResult:
        return self._images(super().load(items))

    def load_keys(self, keys: Sequence[str]) -> dict[str, DownloadedItem | FailedItem]:
        """Each key (a column value, as an upsert names an image) read as an image, or why not: no row is read."""
        metas = {key: ItemMeta(item_id=key, location=key) for key in dict.fromkeys(keys)}
        result = self._images(LoadResult(items=[DownloadedItem(meta, key) for key, meta in metas.items()]))
        return {outcome.meta.item_id: outcome for outcome in (*result.items, *result.failed)}

    def load_all(
        self, batch_size: int = 1000, on_failed: Callable[[list[FailedItem]], None] | None = None
    ) -> Iterator[list[DownloadedItem]]:
        for rows in super().load_all(batch_size, on_failed=on_failed):
            page = self._images(LoadResult(items=rows))
            self._report_load_all_failures(page.failed, on_failed)
            if page.items:
                yield page.items

    def close(self) -> None:
        self.reader.close()
        super().close()

    def item_metas(self) -> Iterator[ItemMeta]:
        """The table's ids, read from the rows alone: listing the catalog (a sharded reindex cuts it so) must not
        download every picture. A row without an address is listed too, so whoever loads it reports why."""
        unreadable: list[FailedItem] = []
        for rows in super().load_all(on_failed=unreadable.extend):
            yield from (item.meta for item in rows)
            yield from (failure.meta for failure in unreadable)
            unreadable.clear()
        yield from (failure.meta for failure in unreadable)
