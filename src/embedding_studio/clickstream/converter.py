"""From stored sessions to what fine-tuning learns from: a query, ranked results, and clicked ids."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from embedding_studio.clickstream.types import ClickstreamSession, FineTuningInput

DEFAULT_POSITIVE_EVENT_TYPES = ("click",)


@dataclass
class ConversionResult:
    inputs: list[FineTuningInput] = field(default_factory=list)
    skipped_count: int = 0


class ClickstreamConverter:
    """Turns a :class:`ClickstreamSession` into a :class:`FineTuningInput`.

    Only events whose type is in ``positive_event_types`` count as clicks (a "view" says nothing about
    relevance); an item clicked several times counts once, at its first click, so clicks keep the
    order in which the user made them.
    """

    def __init__(self, positive_event_types: Iterable[str] = DEFAULT_POSITIVE_EVENT_TYPES) -> None:
        self.positive_event_types = frozenset(positive_event_types)

    def convert(self, session: ClickstreamSession) -> FineTuningInput | None:
        """None for a session that showed nothing: there is no ranking to learn from."""
        if not session.results:
            return None
        ranks: dict[str, int] = {}
        # True ranks, not positions on the page: propensities are estimated from them.
        for rank, item_id in enumerate(session.results, start=session.rank_offset + 1):
            ranks.setdefault(item_id, rank)
        ordered_events = sorted(
            (event for event in session.events if event.event_type in self.positive_event_types),
            key=lambda event: (event.created_at, event.event_id),
        )
        clicked = [event.item_id for event in ordered_events if event.item_id in ranks]
        return FineTuningInput(
            session_id=session.session_id,
            query=session.query,
            results=list(session.results),
            ranks=ranks,
            events=list(dict.fromkeys(clicked)),
            is_irrelevant=session.is_irrelevant,
            timestamp=session.created_at,
        )

    def convert_all(self, sessions: Iterable[ClickstreamSession]) -> ConversionResult:
        result = ConversionResult()
        for session in sessions:
            converted = self.convert(session)
            if converted is None:
                result.skipped_count += 1
            else:
                result.inputs.append(converted)
        return result
