"""Retrieval datasets in the BEIR layout, read from any folder.

The demo and the benchmarks measure quality against graded human judgments; reading the layout
from a path (not a bundled name) lets a larger dataset drop in without code changes.

Layout: ``corpus.jsonl`` (``{"_id", "title", "text"}`` per line), ``queries.jsonl``
(``{"_id", "text"}``), ``qrels/test.tsv`` (``query-id <TAB> corpus-id <TAB> score``, an optional
header line) and, in datasets that ship their own training split, ``qrels/train.tsv`` in the same
format. Unjudged items count as not relevant.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

# The catalog loader's join, so offline figures score exactly the "title. text" that search indexes.
from embedding_studio.items.item_text import ItemTextError
from embedding_studio.items.item_text import item_text as text_of_item


class DatasetError(ValueError):
    """A dataset folder is missing a file or holds a line that cannot be read; the message names both."""


TRAIN_SPLIT = "train"


@dataclass(frozen=True)
class QuerySplit:
    """Query ids to simulate clicks for (``train``) and to score (``test``); never overlapping."""

    train: list[str]
    test: list[str]


@dataclass
class BeirDataset:
    """One retrieval dataset: items, queries and graded judgments (``qrels[query_id][item_id] = grade``).

    ``qrels`` are the judgments figures are scored against (the test split). ``train_qrels`` are the
    judgments of the dataset's own training queries (``qrels/train.tsv``), empty when it ships none:
    a dataset that has them is split as its authors split it (:func:`split_from_qrels`), so figures
    compare with published ones and the training queries are the ones the authors meant to train on.
    """

    corpus: dict[str, tuple[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    name: str = "dataset"
    path: Path | None = None
    train_qrels: dict[str, dict[str, int]] = field(default_factory=dict)
    _item_ids: list[str] = field(default_factory=list, repr=False)

    @property
    def item_ids(self) -> list[str]:
        """Corpus ids in file order (stable, so embedding matrices line up with it)."""
        if len(self._item_ids) != len(self.corpus):
            self._item_ids = list(self.corpus)
        return self._item_ids

    def item_text(self, item_id: str) -> str:
        """The text a model sees for an item: ``items.item_text`` of its catalog line, as the product indexes it
        with the default ``ItemText`` ("title. text"); an item with neither is the empty text."""
        title, text = self.corpus[item_id]
        try:
            return text_of_item({"title": title, "text": text})
        except ItemTextError:
            return ""

    @property
    def has_train_split(self) -> bool:
        """Whether the dataset ships judgments of its own training queries (``qrels/train.tsv``)."""
        return bool(self.train_qrels)

    @property
    def max_grade(self) -> int:
        """The highest grade of any judgment, test or train: the top of the scale a click model maps to."""
        judgments = (*self.qrels.values(), *self.train_qrels.values())
        return max((grade for judged in judgments for grade in judged.values()), default=0)

    def training_judgments(self, query_id: str) -> dict[str, int]:
        """The judgments clicks of a training query are drawn from: ``train_qrels`` when the dataset ships a
        training split, else ``qrels`` (a random split's training queries are judged in the test file)."""
        source = self.train_qrels if self.has_train_split else self.qrels
        return source.get(query_id, {})

    def relevant_items(self, query_id: str, threshold: int = 1) -> dict[str, int]:
        return {item_id: grade for item_id, grade in self.qrels.get(query_id, {}).items() if grade >= threshold}

    def judged_query_ids(self, threshold: int = 1) -> list[str]:
        """Queries with text and at least one relevant item: the only ones a ranking metric can score."""
        return [query_id for query_id in self.queries if self.relevant_items(query_id, threshold)]

    def subset(self, item_ids: set[str]) -> BeirDataset:
        """The same queries and judgments over a smaller corpus (judgments of dropped items are kept:
        they still count as relevant items the search failed to find)."""
        corpus = {item_id: value for item_id, value in self.corpus.items() if item_id in item_ids}
        return BeirDataset(
            corpus=corpus,
            queries=dict(self.queries),
            qrels=self.qrels,
            name=self.name,
            path=self.path,
            train_qrels=self.train_qrels,
        )

    def relevant_first(self, max_items: int | None, seed: int = 0) -> BeirDataset:
        """At most ``max_items`` items (``subset``): those relevant to some query first, in a seeded order, then
        the others, so the task stays meaningful and other queries' relevant items are the hard distractors.

        "Some query" includes the training queries of ``train_qrels``: their relevant items are what simulated
        users click, and a cut that dropped them would leave those queries nothing to click."""
        if max_items is None or len(self.corpus) <= max_items:
            return self
        rng = random.Random(seed)
        judgments = (*self.qrels.values(), *self.train_qrels.values())
        relevant = sorted({item_id for judged in judgments for item_id, grade in judged.items() if grade > 0})
        relevant = [item_id for item_id in relevant if item_id in self.corpus]
        others = sorted(set(self.corpus) - set(relevant))
        rng.shuffle(relevant)
        rng.shuffle(others)
        return self.subset(set((relevant + others)[:max_items]))


def _read_jsonl(path: Path, required: tuple[str, ...]) -> list[dict[str, object]]:
    if not path.is_file():
        raise DatasetError(
            f"{path} does not exist (a BEIR dataset folder holds corpus.jsonl, queries.jsonl, qrels/test.tsv)"
        )
    records: list[dict[str, object]] = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DatasetError(f"{path}, line {line_number}: not valid JSON ({error.msg})") from error
            if not isinstance(record, dict):
                raise DatasetError(f"{path}, line {line_number}: expected a JSON object")
            missing = [key for key in required if key not in record]
            if missing:
                raise DatasetError(f"{path}, line {line_number}: missing field(s) {', '.join(missing)}")
            records.append(record)
    return records


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    if not path.is_file():
        raise DatasetError(f"{path} does not exist (relevance judgments: query-id, corpus-id, score, tab-separated)")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            columns = line.split("\t")
            if len(columns) != 3:
                raise DatasetError(
                    f"{path}, line {line_number}: expected 3 tab-separated columns (query-id, corpus-id, score), "
                    f"found {len(columns)}"
                )
            query_id, item_id, score = (column.strip() for column in columns)
            try:
                grade = int(score)
            except ValueError as error:
                if line_number == 1:  # the header line ("query-id corpus-id score") is optional
                    continue
                raise DatasetError(f"{path}, line {line_number}: score {score!r} is not an integer") from error
            qrels.setdefault(query_id, {})[item_id] = grade
    return qrels


def load_beir_dataset(path: str | Path, split: str = "test") -> BeirDataset:
    """Read a BEIR-layout folder; raise :class:`DatasetError` naming the file and line of any problem.

    ``qrels`` holds ``qrels/<split>.tsv``. When the folder also has ``qrels/train.tsv`` (and ``split`` is not
    ``"train"`` itself), its judgments go to ``train_qrels``, so :func:`split_from_qrels` can split the queries as
    the dataset's authors did.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DatasetError(f"dataset folder {folder} does not exist")
    corpus: dict[str, tuple[str, str]] = {}
    for record in _read_jsonl(folder / "corpus.jsonl", ("_id", "text")):
        corpus[str(record["_id"])] = (str(record.get("title") or ""), str(record["text"]))
    queries = {
        str(record["_id"]): str(record["text"]) for record in _read_jsonl(folder / "queries.jsonl", ("_id", "text"))
    }
    qrels = _read_qrels(folder / "qrels" / f"{split}.tsv")
    train_path = folder / "qrels" / f"{TRAIN_SPLIT}.tsv"
    train_qrels = _read_qrels(train_path) if split != TRAIN_SPLIT and train_path.is_file() else {}
    if not corpus:
        raise DatasetError(f"{folder / 'corpus.jsonl'} holds no items")
    if not queries:
        raise DatasetError(f"{folder / 'queries.jsonl'} holds no queries")
    # Judgments of queries we have no text for cannot be evaluated; drop them rather than fail.
    qrels = {query_id: judged for query_id, judged in qrels.items() if query_id in queries}
    train_qrels = {query_id: judged for query_id, judged in train_qrels.items() if query_id in queries}
    return BeirDataset(
        corpus=corpus, queries=queries, qrels=qrels, name=folder.name, path=folder, train_qrels=train_qrels
    )


def split_queries(dataset: BeirDataset, test_share: float = 0.2, seed: int = 0) -> QuerySplit:
    """Split queries (never sessions) into train and held-out test, so no held-out query is ever trained on.

    Only queries with a relevant judgment take part; the split is deterministic for a seed.
    """
    if not 0.0 < test_share < 1.0:
        raise ValueError(f"test_share must be between 0 and 1 (exclusive), got {test_share}")
    query_ids = sorted(dataset.judged_query_ids())
    if len(query_ids) < 2:
        raise DatasetError(f"dataset {dataset.name} has {len(query_ids)} judged queries; a split needs at least 2")
    random.Random(seed).shuffle(query_ids)
    test_count = min(len(query_ids) - 1, max(1, round(len(query_ids) * test_share)))
    return QuerySplit(train=sorted(query_ids[test_count:]), test=sorted(query_ids[:test_count]))


def split_from_qrels(dataset: BeirDataset, threshold: int = 1) -> QuerySplit:
    """The dataset's own split: train = queries with a relevant judgment in ``train_qrels``, test = those with
    one in ``qrels`` (:meth:`BeirDataset.judged_query_ids`).

    A query judged in both files is kept on the test side only, so no scored query is ever trained on (BEIR's
    splits are disjoint; the guard is for hand-made folders). Raises :class:`DatasetError` when the dataset
    ships no training judgments (use :func:`split_queries` then) or when either side ends up empty.
    """
    if not dataset.has_train_split:
        raise DatasetError(f"dataset {dataset.name} has no qrels/{TRAIN_SPLIT}.tsv; split it with split_queries")
    test = sorted(dataset.judged_query_ids(threshold))
    held_out = set(test)
    train = sorted(
        query_id
        for query_id, judged in dataset.train_qrels.items()
        if query_id not in held_out and any(grade >= threshold for grade in judged.values())
    )
    if not train or not test:
        raise DatasetError(
            f"dataset {dataset.name}: its own split has {len(train)} training and {len(test)} test queries with a "
            "relevant judgment; both need at least one"
        )
    return QuerySplit(train=train, test=test)


def sampled_split(
    dataset: BeirDataset,
    test_share: float = 0.2,
    seed: int = 0,
    max_train_queries: int | None = None,
    max_test_queries: int | None = None,
) -> QuerySplit:
    """The dataset's own split when it ships ``qrels/train.tsv`` (:func:`split_from_qrels`), else a random one by
    ``test_share`` (:func:`split_queries`); then each side cut to a seeded sample of at most its maximum.

    A dataset with its own split must be split by it: its training queries are judged only in the train qrels,
    which is what clicks are drawn from. Sampling keeps a run's time from growing with the dataset; one generator,
    seeded by ``seed``, draws the training sample first, then the test sample.
    """
    split = split_from_qrels(dataset) if dataset.has_train_split else split_queries(dataset, test_share, seed)
    rng = random.Random(seed)

    def sample(query_ids: list[str], size: int | None) -> list[str]:
        if size is None or len(query_ids) <= size:
            return list(query_ids)
        return sorted(rng.sample(query_ids, size))

    return QuerySplit(train=sample(split.train, max_train_queries), test=sample(split.test, max_test_queries))
