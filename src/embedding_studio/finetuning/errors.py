"""Why a fine-tuning run refused to start or stopped: each error names what is wrong.

They all derive from :class:`FineTuningError`, so the worker can mark a task failed with the message
alone, and the CLI can print it as one line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class FineTuningError(RuntimeError):
    """Base of every error the fine-tuning pipeline raises on purpose."""


class UnknownBatchError(FineTuningError):
    def __init__(self, batch_id: int) -> None:
        super().__init__(f"clickstream batch {batch_id} does not exist")
        self.batch_id = batch_id


class BatchNotReleasedError(FineTuningError):
    def __init__(self, batch_id: int, status: str) -> None:
        super().__init__(
            f"clickstream batch {batch_id} is still {status!r}: release it before fine-tuning on it "
            "(sessions keep arriving into a collecting batch)"
        )
        self.batch_id = batch_id
        self.status = status


def describe_batches(batch_ids: int | Sequence[int]) -> str:
    """ "clickstream batch 3" or "clickstream batches 1, 2, 3": what an error says it is about."""
    if isinstance(batch_ids, int):
        return f"clickstream batch {batch_ids}"
    if len(batch_ids) == 1:
        return f"clickstream batch {batch_ids[0]}"
    return "clickstream batches " + ", ".join(str(batch_id) for batch_id in batch_ids)


class EmptyBatchError(FineTuningError):
    def __init__(self, batch_id: int | Sequence[int], session_count: int = 0, skipped_sessions: int = 0) -> None:
        verb = "have" if not isinstance(batch_id, int) and len(batch_id) > 1 else "has"
        if session_count == 0:
            message = f"{describe_batches(batch_id)} {verb} no sessions"
        else:
            message = (
                f"{describe_batches(batch_id)} {verb} {session_count} sessions but none can be used: "
                f"{skipped_sessions} had no shown results"
            )
        super().__init__(message)
        self.batch_id = batch_id
        self.session_count = session_count
        self.skipped_sessions = skipped_sessions


class NoClicksError(FineTuningError):
    def __init__(self, batch_id: int | Sequence[int], session_count: int) -> None:
        verb = "have" if not isinstance(batch_id, int) and len(batch_id) > 1 else "has"
        super().__init__(
            f"{describe_batches(batch_id)} {verb} {session_count} sessions with results but not one click: "
            "there is nothing to learn from"
        )
        self.batch_id = batch_id
        self.session_count = session_count


def describe_failure_reasons(reasons: Mapping[str, int]) -> str:
    """``{"missing": 8, "unreadable": 1}`` as ``8 missing, 1 unreadable``, the most frequent first."""
    return ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items(), key=lambda pair: -pair[1]))


class TooManyFailedItemsError(FineTuningError):
    """Too large a share of the shown items could not be loaded; the message says why (how many were missing,
    unreadable, ...), since a missing catalog and an unreadable one are fixed in different places."""

    def __init__(
        self,
        failed_count: int,
        total_count: int,
        max_share: float,
        examples: Sequence[str],
        reasons: Mapping[str, int] | None = None,
    ) -> None:
        share = failed_count / total_count if total_count else 1.0
        shown = ", ".join(repr(item_id) for item_id in examples)
        why = f" ({describe_failure_reasons(reasons)})" if reasons else ""
        super().__init__(
            f"{failed_count} of {total_count} items ({share:.0%}) could not be loaded{why}, more than the allowed "
            f"{max_share:.0%} (max_failed_items_share); for example {shown}"
        )
        self.failed_count = failed_count
        self.total_count = total_count
        self.max_share = max_share
        self.examples = list(examples)
        self.reasons = dict(reasons or {})


class NotEnoughDataError(FineTuningError):
    """The batch has clicks, but too few inputs to hold some out for validation."""


class UnknownMethodError(FineTuningError):
    def __init__(self, name: str, available: Sequence[str]) -> None:
        listed = ", ".join(sorted(available)) or "none installed"
        super().__init__(
            f"unknown fine-tuning method {name!r}; available (entry points in group "
            f"'embedding_studio.plugins'): {listed}"
        )
        self.name = name
        self.available = list(available)


class InvalidSearchSpaceError(FineTuningError):
    """A plugin's search space names a parameter that FineTuningParams does not have, or an empty choice."""


class FineTuningCanceled(FineTuningError):
    def __init__(self, completed_trials: int = 0) -> None:
        super().__init__(f"fine-tuning was canceled after {completed_trials} finished trials")
        self.completed_trials = completed_trials
