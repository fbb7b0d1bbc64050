"""Which dataset the demo runs on, the catalog it indexes and which queries users search or are held out."""

from __future__ import annotations

import json
from pathlib import Path

from embedding_studio.evaluation import BeirDataset, DatasetError, QuerySplit, sampled_split

from .profiles import DemoProfile

# Data the repository carries at its root, outside the installed package: nfcorpus (academic, non-commercial use,
# so never shipped), and the msmarco and dbpedia slices the benchmarks and tests also read.
REPO_DATA_DIR = Path(__file__).resolve().parents[2] / "data"
DEFAULT_DATASET = "nfcorpus"


def _datasets_in(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(child.name for child in folder.iterdir() if (child / "corpus.jsonl").is_file())


def resolve_dataset(name_or_path: str) -> Path:
    """A dataset by name (``nfcorpus``, ``msmarco``, ``dbpedia`` in the repository's data/) or any BEIR-layout
    folder by path."""
    if "/" not in name_or_path and (REPO_DATA_DIR / name_or_path / "corpus.jsonl").is_file():
        return REPO_DATA_DIR / name_or_path
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    names = _datasets_in(REPO_DATA_DIR)
    hint = ""
    if name_or_path == DEFAULT_DATASET:
        hint = (
            f" ({DEFAULT_DATASET} comes with the repository checkout, in data/{DEFAULT_DATASET}: run the demo "
            "from a checkout or pass --data PATH)"
        )
    raise DatasetError(
        f"no dataset {name_or_path!r}{hint}: use one of {', '.join(names) or '(none here)'} or --data with the path "
        "of a BEIR folder"
    )


def _judgments_in(judgments: dict[str, dict[str, int]], keep: set[str]) -> dict[str, dict[str, int]]:
    return {
        query_id: kept
        for query_id, judged in judgments.items()
        if (kept := {item_id: grade for item_id, grade in judged.items() if item_id in keep})
    }


def demo_catalog(dataset: BeirDataset, profile: DemoProfile, seed: int) -> BeirDataset:
    """The catalog the demo indexes: at most ``max_catalog_items``, items relevant to some query first, then others
    (``BeirDataset.relevant_first``, as benchmarks/quality.py cuts its corpus), so other queries' relevant items
    are the hard distractors. Judgments of items left out are dropped (test and training ones), so every figure
    stays achievable and every training query left has something to click."""
    if profile.max_catalog_items is None or len(dataset.corpus) <= profile.max_catalog_items:
        return dataset
    catalog = dataset.relevant_first(profile.max_catalog_items, seed)
    keep = set(catalog.corpus)
    catalog.qrels = _judgments_in(dataset.qrels, keep)
    catalog.train_qrels = _judgments_in(dataset.train_qrels, keep)
    return catalog


def demo_split(catalog: BeirDataset, profile: DemoProfile, seed: int) -> QuerySplit:
    """Which queries users search (``train``) and which are scored before and after (``test``).

    A dataset with its own training split (``qrels/train.tsv``) is split as its authors split it
    (:func:`split_from_qrels`): its training queries, judged by the training judgments, drive the clicks, and its
    test queries are held out. Otherwise the queries are split at random (``test_share``). Each side is then a
    seeded sample of the profile's size, so a profile's wall time does not grow with the dataset."""
    return sampled_split(catalog, profile.test_share, seed, profile.train_queries, profile.test_queries)


def write_catalog(dataset: BeirDataset, path: Path) -> Path:
    """The catalog as a BEIR corpus.jsonl, the file the ``jsonl_catalog`` loader of the worker reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for item_id in dataset.item_ids:
            title, text = dataset.corpus[item_id]
            handle.write(json.dumps({"_id": item_id, "title": title, "text": text}) + "\n")
    return path
