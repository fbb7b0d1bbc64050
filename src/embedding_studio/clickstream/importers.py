"""Import historical clickstream logs from JSONL and Parquet files.

Both formats hold one session per line / row in the shape of the bulk endpoint (``session_id``,
``query``, ``results``, optional ``user_id``, ``created_at``, ``payload``, ``is_irrelevant`` and
``events``). Files are read and stored in chunks, so a file of any size is imported in constant
memory, and a chunk is one transaction: a crash loses at most the chunk in flight, and importing
the file again only adds what is missing (sessions and events are idempotent by id).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from embedding_studio.clickstream.dao import ClickstreamRepository
from embedding_studio.clickstream.errors import ClickstreamError
from embedding_studio.clickstream.types import BulkResult, RejectedRecord

FileFormat = Literal["jsonl", "parquet", "trec-session"]
DEFAULT_CHUNK_SIZE = 1000

ProgressCallback = Callable[[int, int], None]
"""``progress(completed, total)`` in the importer's unit (bytes for JSONL, rows for Parquet)."""


class UnsupportedFileError(ClickstreamError):
    """A path that is not a readable JSONL or Parquet file."""


@dataclass(frozen=True)
class RecordChunk:
    """Records read from a file, with their positions, plus the lines that could not even be decoded."""

    positions: list[int]
    records: list[Any]
    unreadable: list[RejectedRecord] = field(default_factory=list)
    completed: int = 0


@dataclass
class ImportResult:
    """What an import stored; ``rejected[*].index`` is the 1-based line (JSONL) or the 0-based row / record."""

    path: Path
    file_format: FileFormat
    records_read: int = 0
    totals: BulkResult = field(default_factory=BulkResult)

    @property
    def inserted(self) -> int:
        return self.totals.inserted

    @property
    def duplicates(self) -> int:
        return self.totals.duplicates

    @property
    def rejected(self) -> list[RejectedRecord]:
        return self.totals.rejected

    @property
    def position_name(self) -> str:
        return {"jsonl": "line", "parquet": "row"}.get(self.file_format, "record")


def detect_format(path: Path) -> FileFormat:
    suffixes = "".join(path.suffixes[-2:]).lower()
    if suffixes.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if suffixes.endswith((".parquet", ".pq")):
        return "parquet"
    if suffixes.endswith(".xml"):
        return "trec-session"
    raise UnsupportedFileError(
        f"cannot tell the format of {path}: name it *.jsonl (one JSON session per line), *.parquet, "
        "or *.xml (a TREC Session Track log)"
    )


def iter_jsonl_chunks(path: Path, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[RecordChunk]:
    """Chunks of decoded lines; a line that is not JSON is reported, not raised, so the rest still imports."""
    positions: list[int] = []
    records: list[Any] = []
    unreadable: list[RejectedRecord] = []
    completed = 0
    with path.open("rb") as handle:
        for line_number, line in enumerate(handle, start=1):
            completed += len(line)
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
                positions.append(line_number)
            except ValueError as error:
                unreadable.append(RejectedRecord(line_number, None, f"invalid JSON: {error}"))
            if len(records) + len(unreadable) >= chunk_size:
                yield RecordChunk(positions, records, unreadable, completed)
                positions, records, unreadable = [], [], []
    if records or unreadable or completed == 0:
        yield RecordChunk(positions, records, unreadable, completed)


def iter_parquet_chunks(path: Path, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[RecordChunk]:
    """Row groups are read a batch at a time; nulls become missing fields so optional columns may be empty."""
    parquet_file = _open_parquet(path)
    row = 0
    for batch in parquet_file.iter_batches(batch_size=chunk_size):
        records = [_drop_nulls(record) for record in batch.to_pylist()]
        positions = list(range(row, row + len(records)))
        row += len(records)
        yield RecordChunk(positions, records, [], row)


def iter_trec_session_chunks(path: Path, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[RecordChunk]:
    from embedding_studio.clickstream.trec_session import read_trec_session_records

    records = list(read_trec_session_records(path))  # the XML is parsed whole anyway
    for start in range(0, len(records), chunk_size):
        chunk = records[start : start + chunk_size]
        yield RecordChunk(list(range(start, start + len(chunk))), chunk, [], start + len(chunk))


def _open_parquet(path: Path) -> Any:
    import pyarrow.parquet as parquet

    try:
        return parquet.ParquetFile(path)
    except Exception as error:  # pyarrow raises several types for a file that is not Parquet
        raise UnsupportedFileError(f"{path} is not a readable Parquet file: {error}") from error


def _drop_nulls(record: dict[str, Any]) -> dict[str, Any]:
    cleaned = {key: value for key, value in record.items() if value is not None}
    events = cleaned.get("events")
    if isinstance(events, list):
        cleaned["events"] = [
            {key: value for key, value in event.items() if value is not None} if isinstance(event, dict) else event
            for event in events
        ]
    payload = cleaned.get("payload")
    if isinstance(payload, str):
        # Payloads of varying shape are usually written to Parquet as a JSON text column.
        try:
            cleaned["payload"] = json.loads(payload)
        except ValueError:
            pass  # left as text: validation rejects the record with a reason naming `payload`
    return cleaned


def count_units(path: Path, file_format: FileFormat) -> int:
    """The total a progress bar counts towards: bytes of a JSONL file, rows of a Parquet file."""
    if file_format == "jsonl":
        return path.stat().st_size
    if file_format == "trec-session":
        from embedding_studio.clickstream.trec_session import read_trec_session_records

        return sum(1 for _ in read_trec_session_records(path))
    return _open_parquet(path).metadata.num_rows


def import_file(
    clickstream: ClickstreamRepository,
    path: str | Path,
    file_format: FileFormat | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: ProgressCallback | None = None,
) -> ImportResult:
    """Store every valid session of the file in ``clickstream``; each rejected record is listed with its position
    and reason."""
    path = Path(path)
    if not path.is_file():
        raise UnsupportedFileError(f"no such file: {path}")
    file_format = file_format or detect_format(path)
    readers = {"jsonl": iter_jsonl_chunks, "parquet": iter_parquet_chunks, "trec-session": iter_trec_session_chunks}
    if file_format not in readers:
        raise UnsupportedFileError(f"unknown import format {file_format!r}; use one of {', '.join(readers)}")
    chunks = readers[file_format](path, chunk_size)
    total = count_units(path, file_format)
    result = ImportResult(path=path, file_format=file_format)
    for chunk in chunks:
        result.records_read += len(chunk.records) + len(chunk.unreadable)
        result.totals.rejected.extend(chunk.unreadable)
        if chunk.records:
            stored = clickstream.bulk_add(chunk.records)
            result.totals.inserted += stored.inserted
            result.totals.duplicates += stored.duplicates
            result.totals.events_inserted += stored.events_inserted
            result.totals.rejected.extend(
                RejectedRecord(chunk.positions[rejected.index], rejected.session_id, rejected.reason)
                for rejected in stored.rejected
            )
        if progress is not None:
            progress(chunk.completed, total)
    result.totals.rejected.sort(key=lambda rejected: rejected.index)
    return result
