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
QUERY_TEMPLATES = ("{0}", "{1}", "{0} {2}", "find {1}")


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


def toy_sessions(sessions_per_query: int = 2, seed: int = 0, prefix: str = "s") -> list[ToySession]:
    rng = random.Random(seed)
    all_items = [f"{topic}-{index}" for topic, phrases in TOPICS.items() for index in range(len(phrases))]
    sessions: list[ToySession] = []
    for topic, phrases in TOPICS.items():
        own = [f"{topic}-{index}" for index in range(len(phrases))]
        for template_index, template in enumerate(QUERY_TEMPLATES[:2]):
            query = template.format(*[phrase.split()[0] for phrase in phrases])
            for repeat in range(sessions_per_query):
                others = rng.sample([item for item in all_items if item not in own], 4)
                results = own[:2] + others
                rng.shuffle(results)
                clicks = [own[rng.randrange(2)]]
                sessions.append(ToySession(f"{prefix}-{topic}-{template_index}-{repeat}", query, results, clicks))
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
