"""Importing historical logs: JSONL and Parquet files with some bad rows, and the real TREC Session logs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as parquet
import pytest

from embedding_studio.clickstream.converter import ClickstreamConverter
from embedding_studio.clickstream.importers import UnsupportedFileError, detect_format, import_file
from embedding_studio.clickstream.trec_session import (
    TrecConversionStats,
    read_trec_session_documents,
    read_trec_session_records,
)

if TYPE_CHECKING:
    from embedding_studio.clickstream.dao import ClickstreamRepository

pytestmark = pytest.mark.integration

TREC_DIR = Path(__file__).resolve().parents[1] / "data" / "trec-session"


def _good(session_id: str, clicks: int = 1) -> dict[str, object]:
    return {
        "session_id": session_id,
        "query": f"query {session_id}",
        "results": [f"{session_id}-r{rank}" for rank in range(1, 4)],
        "user_id": "u1",
        "events": [
            {"event_id": f"{session_id}-e{number}", "item_id": f"{session_id}-r{number + 1}"}
            for number in range(clicks)
        ],
    }


def test_jsonl_import_with_bad_lines_keeps_good_ones_and_is_resumable(
    clean_db: str, tmp_path: Path, clickstream_repository: ClickstreamRepository
) -> None:
    lines = [json.dumps(_good(f"s{number}")) for number in range(7)]
    lines.insert(2, '{"session_id": "broken", ')  # line 3: not JSON
    lines.insert(4, json.dumps({"session_id": "no-results", "query": "q"}))  # line 5: missing field
    lines.insert(5, "")  # blank lines are skipped
    lines.append(json.dumps({**_good("bad-click"), "events": [{"event_id": "x", "item_id": "nope"}]}))
    path = tmp_path / "sessions.jsonl"
    path.write_text("\n".join(lines) + "\n")
    seen_progress = []

    result = import_file(
        clickstream_repository, path, chunk_size=3, progress=lambda done, total: seen_progress.append((done, total))
    )
    assert (result.inserted, result.duplicates, result.totals.events_inserted) == (7, 0, 7)
    assert [(rejected.index, rejected.session_id) for rejected in result.rejected] == [
        (3, None),
        (5, "no-results"),
        (11, "bad-click"),
    ]
    assert "invalid JSON" in result.rejected[0].reason
    assert "results" in result.rejected[1].reason
    assert "'nope'" in result.rejected[2].reason
    assert result.position_name == "line"
    assert seen_progress[-1] == (path.stat().st_size, path.stat().st_size)
    assert len(seen_progress) > 2

    again = import_file(clickstream_repository, path, chunk_size=4)
    assert (again.inserted, again.duplicates, len(again.rejected)) == (0, 7, 3)
    assert clickstream_repository.get_collecting_batch().session_count == 7


def test_parquet_import_with_bad_rows(
    clean_db: str, tmp_path: Path, clickstream_repository: ClickstreamRepository
) -> None:
    event_type = pa.struct([("event_id", pa.string()), ("item_id", pa.string()), ("event_type", pa.string())])
    table = pa.table(
        {
            "session_id": ["p1", "p2", None, "p4"],
            "query": ["shoes", "hats", "socks", "coats"],
            "results": [["a", "b"], ["c"], ["d"], ["e", "f"]],
            "created_at": [datetime(2024, 6, 1, 12, tzinfo=UTC)] * 4,
            "payload": ['{"page": 1}', None, None, "not json"],
            "events": pa.array(
                [[{"event_id": "p1-e1", "item_id": "b", "event_type": "click"}], [], [], []],
                type=pa.list_(event_type),
            ),
        }
    )
    path = tmp_path / "sessions.parquet"
    parquet.write_table(table, path, row_group_size=2)
    result = import_file(clickstream_repository, path, chunk_size=2)
    assert (result.inserted, result.totals.events_inserted) == (2, 1)
    assert [(rejected.index, rejected.session_id) for rejected in result.rejected] == [(2, None), (3, "p4")]
    assert "session_id" in result.rejected[0].reason and "payload" in result.rejected[1].reason
    stored = clickstream_repository.get_session("p1")
    assert stored.payload == {"page": 1}
    assert stored.created_at == datetime(2024, 6, 1, 12, tzinfo=UTC)
    assert [event.item_id for event in stored.events] == ["b"]


def test_unknown_formats_are_named(tmp_path: Path, clickstream_repository: ClickstreamRepository) -> None:
    with pytest.raises(UnsupportedFileError, match="sessions.csv"):
        detect_format(tmp_path / "sessions.csv")
    with pytest.raises(UnsupportedFileError, match="no such file"):
        import_file(clickstream_repository, tmp_path / "missing.jsonl")
    not_parquet = tmp_path / "fake.parquet"
    not_parquet.write_text("hello")
    with pytest.raises(UnsupportedFileError, match="not a readable Parquet"):
        import_file(clickstream_repository, not_parquet)


def test_trec_2012_needs_ampersands_escaped_and_matches_the_published_counts() -> None:
    stats = TrecConversionStats()
    records = list(read_trec_session_records(TREC_DIR / "sessiontrack2012.xml", stats))
    # README: 98 sessions, 2,157 shown results, 272 clicks (18 results repeat within a ranking).
    assert stats.tasks == 98
    assert stats.shown_results + stats.repeated_results_dropped == 2157
    assert stats.clicks == 272 and stats.clicks_on_unlisted_ranks == 0
    assert len(records) == stats.sessions
    first = records[0]
    assert first["query"] == "US tax code 403 (b)"
    assert first["results"][1] == "clueweb09-enwp01-56-23264"
    assert [event["item_id"] for event in first["events"]][:2] == [first["results"][1], first["results"][0]]


def test_trec_2013_import_real_logs_in_sessions_out(
    clean_db: str, clickstream_repository: ClickstreamRepository
) -> None:
    path = TREC_DIR / "sessiontrack2013.xml"
    result = import_file(clickstream_repository, path)
    # README: 133 sessions (tasks), 4,449 shown results, 586 clicks; one interaction = one search session here.
    assert result.rejected == []
    assert result.totals.events_inserted == 586
    assert 379 <= result.inserted <= 401
    batch_id = clickstream_repository.release_batch().released_batch_id
    sessions = list(clickstream_repository.get_batch_sessions(batch_id, page_size=100))
    assert len(sessions) == result.inserted
    assert len({session.user_id for session in sessions}) == 133
    assert sum(len(session.results) for session in sessions) == 4449
    converted = ClickstreamConverter().convert_all(sessions)
    assert converted.skipped_count == 0
    clicked_sessions = [item for item in converted.inputs if item.events]
    assert 0 < len(clicked_sessions) < len(sessions)
    by_id = {item.session_id: item for item in converted.inputs}
    civil_war = by_id["trec2013-s1-i1"]
    assert civil_war.query == "US civil war causes"
    assert civil_war.events == ["clueweb12-1400wb-08-23845"] and civil_war.ranks[civil_war.events[0]] == 1
    documents = read_trec_session_documents(path)
    assert documents["clueweb12-1400wb-08-23845"].title.startswith("Us Civil War Causes")
    assert set(documents) >= {item_id for item in converted.inputs for item_id in item.results}
