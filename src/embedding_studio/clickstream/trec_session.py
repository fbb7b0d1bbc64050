"""TREC Session Track logs (2012, 2013) as clickstream records: real search logs in, sessions out.

A TREC "session" is a user's whole task, holding several interactions; each interaction (one query,
its ranked results, the clicks on them) is one search session for us. The item id is the ClueWeb
document id of a shown result; a click names a rank, which is mapped back to the result shown there.
Raw times (seconds since the task started in 2013, clock times in 2012) have no date, so they are
kept in the payloads, and event ids carry the zero-padded click number so clicks sort in the
order they were made.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedding_studio.clickstream.errors import ClickstreamError

_BARE_AMPERSAND = re.compile(rb"&(?!(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#x[0-9A-Fa-f]+);)")


class TrecSessionFormatError(ClickstreamError):
    """A file that is not a TREC Session Track XML log."""


@dataclass(frozen=True)
class TrecDocument:
    """What the user saw of a result: enough text to train and evaluate on the shown items."""

    doc_id: str
    url: str
    title: str
    snippet: str


@dataclass
class TrecConversionStats:
    tasks: int = 0
    interactions: int = 0
    sessions: int = 0
    shown_results: int = 0
    clicks: int = 0
    clicks_on_unlisted_ranks: int = 0
    repeated_results_dropped: int = 0


def _parse(path: Path) -> ElementTree.Element:
    # The 2012 file has bare '&' in URLs and snippets, which no XML parser accepts.
    content = _BARE_AMPERSAND.sub(b"&amp;", Path(path).read_bytes())
    try:
        root = ElementTree.fromstring(content)
    except ElementTree.ParseError as error:
        raise TrecSessionFormatError(f"{path} is not valid XML even after escaping bare '&': {error}") from error
    if not root.tag.startswith("sessiontrack"):
        raise TrecSessionFormatError(f"{path}: root element is <{root.tag}>, expected <sessiontrack2012|2013>")
    return root


def _text(element: ElementTree.Element | None) -> str:
    return (element.text or "").strip() if element is not None else ""


def _doc_id(result: ElementTree.Element) -> str:
    for tag in ("clueweb12id", "clueweb09id"):
        found = result.find(tag)
        if found is not None and _text(found):
            return _text(found)
    raise TrecSessionFormatError(f"result at rank {result.get('rank')} has no clueweb id")


def read_trec_session_records(path: str | Path, stats: TrecConversionStats | None = None) -> Iterator[dict[str, Any]]:
    """Bulk-endpoint records, one per interaction with shown results, with its clicks as events."""
    path = Path(path)
    root = _parse(path)
    year = root.tag.removeprefix("sessiontrack")
    stats = stats if stats is not None else TrecConversionStats()
    for task in root.iter("session"):
        stats.tasks += 1
        task_number = task.get("num", "?")
        topic = task.find("topic")
        topic_number = topic.get("num") if topic is not None else None
        for interaction in task.iter("interaction"):
            stats.interactions += 1
            results_element = interaction.find("results")
            if results_element is None:
                continue
            results: list[str] = []
            doc_by_rank: dict[str, str] = {}
            for result in results_element.iter("result"):
                doc_id = _doc_id(result)
                doc_by_rank[result.get("rank", "")] = doc_id
                if doc_id in results:
                    stats.repeated_results_dropped += 1
                    continue
                results.append(doc_id)
            if not results:
                continue
            session_id = f"trec{year}-s{task_number}-i{interaction.get('num', '?')}"
            events = []
            clicked = interaction.find("clicked")
            for click in clicked.iter("click") if clicked is not None else ():
                doc_id = doc_by_rank.get(_text(click.find("rank")))
                if doc_id is None:
                    stats.clicks_on_unlisted_ranks += 1
                    continue
                number = int(click.get("num", "0"))
                events.append(
                    {
                        "event_id": f"{session_id}-click-{number:04d}",
                        "item_id": doc_id,
                        "event_type": "click",
                        "payload": {"starttime": click.get("starttime"), "endtime": click.get("endtime")},
                    }
                )
            stats.sessions += 1
            stats.shown_results += len(results)
            stats.clicks += len(events)
            yield {
                "session_id": session_id,
                "query": _text(interaction.find("query")),
                "results": results,
                "user_id": f"trec{year}-s{task_number}",
                "payload": {
                    "source": f"trec-session-{year}",
                    "task": task_number,
                    "topic": topic_number,
                    "starttime": interaction.get("starttime"),
                },
                "events": events,
            }


def read_trec_session_documents(path: str | Path) -> dict[str, TrecDocument]:
    """Every shown result's URL, title and snippet by document id (first occurrence wins)."""
    documents: dict[str, TrecDocument] = {}
    for result in _parse(Path(path)).iter("result"):
        doc_id = _doc_id(result)
        if doc_id not in documents:
            documents[doc_id] = TrecDocument(
                doc_id=doc_id,
                url=_text(result.find("url")),
                title=_text(result.find("title")),
                snippet=_text(result.find("snippet")),
            )
    return documents
