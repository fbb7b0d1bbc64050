"""Several batches with a replay share, and the rule that sends an iteration back to the parameter search."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from embedding_studio.config import get_settings
from embedding_studio.finetuning.hpo import IterationOutcome, iteration_gain, search_again_reason
from embedding_studio.finetuning.query_retriever import normalize_query_text
from embedding_studio.items.upserted_items import UpsertedItems

from .test_pipeline import store_batch, toy_method
from .toy_clicks import toy_sessions, write_catalog

if TYPE_CHECKING:
    from embedding_studio.clickstream.dao import ClickstreamRepository


@pytest.fixture()
def catalog(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.jsonl"
    write_catalog(path)
    return path


# ----------------------------------------------------------------------------------- the rule, alone

REUSED_FLAT = IterationOutcome("previous_best", 0.0)
REUSED_GAIN = IterationOutcome("previous_best", 0.02)
SEARCHED = IterationOutcome("search", -0.01)


def test_search_again_after_k_reused_iterations_that_did_not_improve() -> None:
    assert search_again_reason([REUSED_FLAT, REUSED_FLAT], 2, 0.0) is not None
    assert "last 2 iterations" in (search_again_reason([REUSED_FLAT, REUSED_FLAT, SEARCHED], 2, 0.0) or "")
    # an unknown gain counts as no improvement
    assert search_again_reason([IterationOutcome("previous_best", None), REUSED_FLAT], 2, 0.0) is not None


def test_no_search_while_reused_params_still_improve_or_a_search_was_recent() -> None:
    assert search_again_reason([REUSED_FLAT], 2, 0.0) is None  # too few
    assert search_again_reason([REUSED_FLAT, REUSED_GAIN], 2, 0.0) is None  # one improved
    assert search_again_reason([REUSED_FLAT, SEARCHED], 2, 0.0) is None  # searched lately
    # the minimum: a gain of 0.02 is not enough when 0.05 is asked for
    assert search_again_reason([REUSED_FLAT, REUSED_GAIN], 2, 0.05) is not None


def test_gain_is_signed_so_that_positive_is_better(catalog: Path, tiny_model_dir: Path) -> None:
    method = toy_method(catalog, tiny_model_dir)
    assert iteration_gain({"val_ndcg_at_10": 0.5}, {"val_ndcg_at_10": 0.4}, method) == pytest.approx(0.1)
    assert iteration_gain({"val_ndcg_at_10": 0.5}, {}, method) is None
    lower_better = toy_method(catalog, tiny_model_dir, main_metric="val_loss", higher_is_better=False)
    assert iteration_gain({"val_loss": 0.3}, {"val_loss": 0.5}, lower_better) == pytest.approx(0.2)


# ------------------------------------------------------------------------- several batches, real DB


@pytest.fixture()
def tracker(tmp_path: Path, clean_db: str) -> Iterator[object]:
    from embedding_studio.tracking import ExperimentsManager

    yield ExperimentsManager(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifact_location=(tmp_path / "artifacts").as_uri(),
        cache_dir=tmp_path / "model-cache",
    )


@pytest.mark.integration
def test_older_batches_are_replayed_by_share_the_same_sessions_every_time(
    clean_db: str, clickstream_repository: ClickstreamRepository
) -> None:
    from embedding_studio.finetuning.pipeline import _read_batches

    older = store_batch(clickstream_repository, toy_sessions(1, seed=0, prefix="old"))
    newer = store_batch(clickstream_repository, toy_sessions(1, seed=1, prefix="new"))
    settings = get_settings()
    total_old = len(toy_sessions(1, seed=0))

    everything, _, replayed_all = _read_batches(clickstream_repository, [older, newer], settings, 1.0, seed=0)
    assert replayed_all == total_old and len(everything) == 2 * total_old

    inputs, skipped, replayed = _read_batches(clickstream_repository, [older, newer], settings, 0.25, seed=0)
    assert skipped == 0 and replayed == round(0.25 * total_old)
    ids = {fine_tuning_input.session_id for fine_tuning_input in inputs}
    assert sum(session_id.startswith("new-") for session_id in ids) == total_old  # the newest batch whole
    again, _, _ = _read_batches(clickstream_repository, [older, newer], settings, 0.25, seed=0)
    assert [one.session_id for one in again] == [one.session_id for one in inputs]
    other_seed, _, _ = _read_batches(clickstream_repository, [older, newer], settings, 0.25, seed=1)
    assert {one.session_id for one in other_seed} != ids

    none_replayed, _, replayed_none = _read_batches(clickstream_repository, [older, newer], settings, 0.0, seed=0)
    assert replayed_none == 0 and all(one.session_id.startswith("new-") for one in none_replayed)


@pytest.mark.integration
def test_several_batches_train_together_split_by_whole_queries_and_the_search_comes_back(
    clean_db: str, catalog: Path, tiny_model_dir: Path, tracker: Any, clickstream_repository: ClickstreamRepository
) -> None:
    """One trial per iteration. An impossible minimum gain makes every reuse a failure, so with
    search_again_after=1: iteration 1 searches, 2 reuses its parameters, 3 searches again, 4 reuses again."""
    from embedding_studio.finetuning.hpo import TAG_BATCH_IDS, TAG_GAIN, TAG_SELECTION_MODE
    from embedding_studio.finetuning.pipeline import run_fine_tuning

    method = toy_method(
        catalog, tiny_model_dir, max_evals=1, top_params_count=1, search_again_after=1, min_iteration_gain=1.0
    )
    first_batch = store_batch(clickstream_repository, toy_sessions(1, seed=0, prefix="a"))
    second_batch = store_batch(clickstream_repository, toy_sessions(1, seed=1, prefix="b"))

    first = run_fine_tuning(
        clickstream_repository, [second_batch, first_batch], method=method, tracker=tracker, replay_share=0.5
    )
    assert first.batch_ids == [first_batch, second_batch]
    assert first.replayed_sessions == round(0.5 * len(toy_sessions(1)))
    assert first.selection_mode == "search" and first.search_reason is None and first.gain is not None
    iteration = tracker.get_iteration(first.experiment_id)
    assert iteration.batch_id == f"{first_batch}+{second_batch}"
    tags = tracker.get_iteration_tags(first.experiment_id)
    assert tags[TAG_SELECTION_MODE] == "search" and tags[TAG_BATCH_IDS] == f"{first_batch},{second_batch}"
    assert float(tags[TAG_GAIN]) == pytest.approx(first.gain)

    modes = [first.selection_mode]
    reasons = [first.search_reason]
    for _ in range(3):
        result = run_fine_tuning(clickstream_repository, second_batch, method=method, tracker=tracker)
        modes.append(result.selection_mode)
        reasons.append(result.search_reason)
    assert modes == ["search", "previous_best", "search", "previous_best"]
    assert reasons[2] is not None and "last 1 iterations reused" in reasons[2]


@pytest.mark.integration
def test_the_validation_split_keeps_whole_queries_across_batches(
    clean_db: str, catalog: Path, tiny_model_dir: Path, clickstream_repository: ClickstreamRepository
) -> None:
    """The same query asked in two batches lands on one side of the split, not on both."""
    from embedding_studio.finetuning.pipeline import _prepare_data, _read_batches

    method = toy_method(catalog, tiny_model_dir)
    batches = [
        store_batch(clickstream_repository, toy_sessions(1, seed=0, prefix="a")),
        store_batch(clickstream_repository, toy_sessions(1, seed=1, prefix="b")),
    ]
    inputs, _, _ = _read_batches(clickstream_repository, batches, get_settings(), 1.0, seed=0)
    retriever = method.create_query_retriever()
    loader = method.create_loader(UpsertedItems(clickstream_repository.database))
    try:
        from embedding_studio.items.types import ItemMeta

        item_ids = {item for one in inputs for item in one.results}
        downloaded = loader.load([ItemMeta(item_id=item, source=method.item_source) for item in item_ids]).items
    finally:
        loader.close()
    data = _prepare_data(method, inputs, downloaded, retriever, "batches")

    def queries(side: list[Any]) -> set[str]:
        return {normalize_query_text(query) for query in retriever.get_queries(side)}

    train_queries, test_queries = queries(data.train_inputs), queries(data.test_inputs)
    assert train_queries and test_queries and not train_queries & test_queries
    test_ids = {one.session_id for one in data.test_inputs}
    assert any(one.startswith("a-") for one in test_ids) and any(one.startswith("b-") for one in test_ids)
