"""A small learnable catalog and clickstream: queries click the items of their own topic."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from embedding_studio.clickstream.types import FineTuningInput

TOPICS = {
    "river": ("river boat water", "sea ocean ship", "fish swim deep"),
    "mountain": ("mountain snow cold", "rock high stood", "hill top climb"),
    "animal": ("dog cat animal", "horse bird tail", "pet friend care"),
    "road": ("car road drive", "wheel street fast", "travel town map"),
    "music": ("music song sing", "listen sound voice", "play piano note"),
    "food": ("food eat hot", "cook fire meal", "plate table bread"),
    "book": ("book read letter", "paper page story", "word write language"),
    "garden": ("tree plant grow", "green field flower", "sun rain earth"),
}


@dataclass(frozen=True)
class ToySession:
    session_id: str
    query: str
    results: list[str]
    clicks: list[str]


def write_catalog(path: Path, missing_topics: tuple[str, ...] = ()) -> dict[str, str]:
    """Three items per topic in BEIR corpus.jsonl form; topics in ``missing_topics`` are left out of the file."""
    texts: dict[str, str] = {}
    with path.open("w", encoding="utf-8") as handle:
        for topic, phrases in TOPICS.items():
            for index, phrase in enumerate(phrases):
                item_id = f"{topic}-{index}"
                texts[item_id] = phrase
                if topic not in missing_topics:
                    handle.write(json.dumps({"_id": item_id, "title": topic, "text": phrase}) + "\n")
    return texts


def topic_queries(topic: str) -> list[str]:
    """Word pairs from the topic's phrases: every word appears in several queries, so what is learnt on the
    training queries of a topic carries over to its held-out ones."""
    words = [word for phrase in TOPICS[topic] for word in phrase.split()]
    return [f"{words[index]} {words[(index + 4) % len(words)]}" for index in range(0, len(words), 2)]


def toy_sessions(sessions_per_query: int = 2, seed: int = 0, prefix: str = "s") -> list[ToySession]:
    """Each session shows 2 items of the query's topic among 4 of other topics; the user clicks the topic's
    items that contain a query word (or the first one shown)."""
    rng = random.Random(seed)
    all_items = [f"{topic}-{index}" for topic, phrases in TOPICS.items() for index in range(len(phrases))]
    sessions: list[ToySession] = []
    for topic, phrases in TOPICS.items():
        own = [f"{topic}-{index}" for index in range(len(phrases))]
        for query_index, query in enumerate(topic_queries(topic)):
            query_words = set(query.split())
            for repeat in range(sessions_per_query):
                shown_own = rng.sample(own, 2)
                results = shown_own + rng.sample([item for item in all_items if item not in own], 4)
                rng.shuffle(results)
                clicks = [
                    item
                    for item in results
                    if item in own and query_words & set(phrases[int(item.rsplit("-")[1])].split())
                ] or [next(item for item in results if item in own)]
                sessions.append(ToySession(f"{prefix}-{topic}-{query_index}-{repeat}", query, results, clicks))
    return sessions


def as_inputs(sessions: list[ToySession]) -> list[FineTuningInput]:
    return [
        FineTuningInput(
            session_id=session.session_id,
            query=session.query,
            results=list(session.results),
            ranks={item_id: rank for rank, item_id in enumerate(session.results, start=1)},
            events=list(session.clicks),
        )
        for session in sessions
    ]
