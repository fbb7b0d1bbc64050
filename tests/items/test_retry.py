from __future__ import annotations

from collections.abc import Iterator

import pytest

from embedding_studio.items import ItemMeta, RetryPolicy
from embedding_studio.items.loader import ItemMissingError, ObjectStoreLoader, call_with_retries


class FlakyStore(ObjectStoreLoader):
    """Fails the first ``failures`` fetches of every key with a connection error."""

    def __init__(self, failures: int, objects: dict[str, bytes], **options) -> None:
        super().__init__(**options)
        self.failures = failures
        self.objects = objects
        self.calls: dict[str, int] = {}
        self.sleeps: list[float] = []
        self._sleep = self.sleeps.append

    def describe(self) -> str:
        return "flaky"

    def fetch_bytes(self, key: str) -> bytes:
        self.calls[key] = self.calls.get(key, 0) + 1
        if self.calls[key] <= self.failures:
            raise ConnectionResetError("connection reset by peer")
        if key not in self.objects:
            raise ItemMissingError(f"{key} not found")
        return self.objects[key]

    def iter_keys(self) -> Iterator[str]:
        yield from sorted(self.objects)


def test_transient_errors_are_retried_with_exponential_backoff() -> None:
    policy = RetryPolicy(attempts=4, initial_delay=0.1, multiplier=2.0, max_delay=10, jitter=0.0)
    store = FlakyStore(failures=2, objects={"a": b"alpha"}, retry=policy, max_workers=1)
    result = store.load([ItemMeta("a")])
    assert [item.data for item in result.items] == ["alpha"]
    assert store.calls["a"] == 3
    assert store.sleeps == pytest.approx([0.1, 0.2])


def test_retries_give_up_after_the_configured_attempts() -> None:
    store = FlakyStore(failures=5, objects={"a": b"alpha"}, retry={"attempts": 3, "initial_delay": 0.01})
    result = store.load([ItemMeta("a")])
    assert result.items == [] and result.failed[0].reason == "error"
    assert "connection reset" in result.failed[0].detail
    assert store.calls["a"] == 3 and len(store.sleeps) == 2


def test_missing_items_are_never_retried() -> None:
    store = FlakyStore(failures=0, objects={}, retry={"attempts": 5})
    result = store.load([ItemMeta("gone")])
    assert result.failed[0].reason == "missing"
    assert store.calls["gone"] == 1 and store.sleeps == []


def test_non_transient_errors_are_not_retried() -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise ValueError("bad")

    with pytest.raises(ValueError):
        call_with_retries(broken, RetryPolicy(attempts=5), lambda error: isinstance(error, ConnectionError))
    assert len(calls) == 1


def test_backoff_is_capped_and_jittered_downwards() -> None:
    policy = RetryPolicy(initial_delay=1.0, multiplier=10.0, max_delay=3.0, jitter=0.5)
    delays = [policy.delay(attempt) for attempt in range(1, 6)]
    assert 0.5 <= delays[0] <= 1.0
    assert all(1.5 <= delay <= 3.0 for delay in delays[1:])
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


def test_load_all_reports_failures_through_the_attribute_and_callback() -> None:
    store = FlakyStore(failures=0, objects={"a": b"ok", "b": b"\xff\xfe", "c": b"fine"}, max_workers=2)
    seen: list[str] = []
    batches = list(store.load_all(batch_size=2, on_failed=lambda failed: seen.extend(f.meta.item_id for f in failed)))
    assert [[item.item_id for item in batch] for batch in batches] == [["a"], ["c"]]
    assert seen == ["b"] and [f.reason for f in store.load_all_failed] == ["unreadable"]
