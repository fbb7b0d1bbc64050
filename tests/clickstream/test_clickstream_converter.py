"""Sessions become fine-tuning inputs: 1-based ranks, clicks once each in click order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from embedding_studio.clickstream.converter import ClickstreamConverter
from embedding_studio.clickstream.types import ClickstreamEvent, ClickstreamSession

START = datetime(2025, 3, 1, tzinfo=UTC)


def _event(event_id: str, item_id: str, seconds: int, event_type: str = "click") -> ClickstreamEvent:
    return ClickstreamEvent(event_id, "s1", item_id, event_type, START + timedelta(seconds=seconds))


def _session(results: list[str], events: list[ClickstreamEvent], is_irrelevant: bool = False) -> ClickstreamSession:
    return ClickstreamSession(
        session_id="s1",
        batch_id=1,
        query="running shoes",
        results=results,
        user_id=None,
        is_irrelevant=is_irrelevant,
        created_at=START,
        events=events,
    )


def test_convert_ranks_and_clicks_in_click_order() -> None:
    events = [
        _event("e-late", "a", 30),
        _event("e-first", "c", 10),
        _event("e-again", "c", 40),
        _event("e-view", "b", 5, event_type="view"),
    ]
    converted = ClickstreamConverter().convert(_session(["a", "b", "c", "d"], events))
    assert converted is not None
    assert converted.ranks == {"a": 1, "b": 2, "c": 3, "d": 4}
    assert converted.events == ["c", "a"]
    assert converted.not_events == ["b", "d"]
    assert converted.query == "running shoes"
    assert converted.timestamp == START
    assert not converted.is_irrelevant


def test_a_later_page_keeps_its_true_ranks() -> None:
    """Page two of a search (offset 10) was shown at ranks 11.., and propensities are estimated from ranks."""
    session = _session(["k", "l", "m"], [_event("e1", "l", 1)])
    converted = ClickstreamConverter().convert(ClickstreamSession(**{**session.__dict__, "rank_offset": 10}))
    assert converted is not None
    assert converted.ranks == {"k": 11, "l": 12, "m": 13}
    assert converted.results == ["k", "l", "m"] and converted.events == ["l"]


def test_convert_keeps_irrelevance_and_configurable_event_types() -> None:
    converted = ClickstreamConverter(positive_event_types=("click", "view")).convert(
        _session(["a", "b"], [_event("e1", "b", 1, event_type="view")], is_irrelevant=True)
    )
    assert converted is not None and converted.events == ["b"] and converted.is_irrelevant


def test_sessions_without_results_are_skipped_and_counted() -> None:
    converter = ClickstreamConverter()
    assert converter.convert(_session([], [])) is None
    result = converter.convert_all([_session([], []), _session(["a"], [_event("e1", "a", 1)]), _session([], [])])
    assert result.skipped_count == 2
    assert [item.events for item in result.inputs] == [["a"]]
