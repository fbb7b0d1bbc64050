"""The demo's pieces that need no servers: dataset choice, catalog slicing, the demo method plugin."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedding_studio.demo import (
    DEMO_METHOD,
    PROFILE_ENV,
    PROFILES,
    create_demo_plugin,
    demo_catalog,
    kept_untrained,
    resolve_dataset,
    stop_stale_postgres,
    write_catalog,
)
from embedding_studio.evaluation import DatasetError, load_beir_dataset, split_queries


def test_datasets_by_name_or_path(tmp_path: Path) -> None:
    assert resolve_dataset("msmarco").name == "msmarco"
    assert resolve_dataset("dbpedia").name == "dbpedia"
    assert resolve_dataset(str(tmp_path)) == tmp_path
    with pytest.raises(DatasetError, match="msmarco"):
        resolve_dataset("no-such-set")


def test_quick_catalog_is_capped_relevant_items_first_and_every_judgment_achievable() -> None:
    dataset = load_beir_dataset(resolve_dataset("dbpedia"))  # 865 relevant items of 5000
    profile = PROFILES["quick"]
    catalog = demo_catalog(dataset, profile, seed=0)
    assert profile.max_catalog_items is not None
    assert len(catalog.corpus) == profile.max_catalog_items
    relevant = {item_id for judged in dataset.qrels.values() for item_id, grade in judged.items() if grade > 0}
    relevant &= set(dataset.corpus)
    # Relevant items first, then the others: a cap below the relevant count holds relevant items only.
    if profile.max_catalog_items < len(relevant):
        assert set(catalog.corpus) <= relevant
    else:
        assert relevant <= set(catalog.corpus)
    for judged in catalog.qrels.values():
        assert judged and all(item_id in catalog.corpus for item_id in judged)  # every judgment is achievable
    assert demo_catalog(dataset, profile, seed=0).item_ids == catalog.item_ids  # deterministic
    split = split_queries(catalog, test_share=profile.test_share, seed=0)
    assert split.train and split.test
    # The full profile trains on the same data and searches more parameter sets: its first trial is quick's.
    full = demo_catalog(dataset, PROFILES["full"], seed=0)
    assert full.item_ids == catalog.item_ids
    assert PROFILES["full"].max_evals > profile.max_evals


def test_untrained_weights_are_recognised_from_the_selection_metric_history() -> None:
    assert kept_untrained([(0, 0.43), (15, 0.41), (30, 0.43)])  # training never beat the baseline
    assert kept_untrained([(0, 0.43)])  # no validation after training at all
    assert not kept_untrained([(0, 0.43), (15, 0.45), (30, 0.44)])
    assert not kept_untrained([])  # nothing logged: nothing to claim


def test_written_catalog_is_what_the_loader_and_the_evaluation_both_read(tmp_path: Path) -> None:
    from embedding_studio.items import create_loader

    dataset = load_beir_dataset(resolve_dataset("dbpedia"))
    catalog = dataset.subset(set(dataset.item_ids[:25]))
    path = write_catalog(catalog, tmp_path / "catalog" / "corpus.jsonl")
    loader = create_loader("jsonl_catalog", path=str(path))
    loaded = {item.meta.item_id: item.data for batch in loader.load_all(10) for item in batch}
    assert set(loaded) == set(catalog.item_ids)
    for item_id, data in loaded.items():
        assert data == catalog.item_text(item_id)  # offline figures score the texts search indexes


def test_demo_method_follows_the_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    from embedding_studio.finetuning.method import get_method

    monkeypatch.setenv(PROFILE_ENV, "quick")
    quick = get_method(DEMO_METHOD)
    assert quick.name == DEMO_METHOD
    assert (quick.max_evals, quick.num_epochs) == (PROFILES["quick"].max_evals, PROFILES["quick"].num_epochs)
    monkeypatch.setenv(PROFILE_ENV, "full")
    full = create_demo_plugin(max_evals=5)
    assert full.max_evals == 5 and full.num_epochs == PROFILES["full"].num_epochs


def test_stopping_a_server_that_is_not_there_does_nothing(tmp_path: Path) -> None:
    stop_stale_postgres(tmp_path / "pgdata")
    (tmp_path / "pgdata").mkdir()
    (tmp_path / "pgdata" / "postmaster.pid").write_text("999999999\n")
    stop_stale_postgres(tmp_path / "pgdata")
