"""The pipeline end to end on the real embedded PostgreSQL and a local MLflow, with a tiny model on CPU."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from optuna.distributions import FloatDistribution

from embedding_studio.config import get_settings
from embedding_studio.finetuning.errors import (
    BatchNotReleasedError,
    EmptyBatchError,
    FineTuningCanceled,
    NoClicksError,
    TooManyFailedItemsError,
    UnknownBatchError,
)
from embedding_studio.finetuning.method import FineTuningMethod, LoaderConfig
from embedding_studio.finetuning.pipeline import run_fine_tuning

from .toy_clicks import ToySession, toy_sessions, write_catalog

if TYPE_CHECKING:
    from embedding_studio.clickstream.dao import ClickstreamRepository

pytestmark = pytest.mark.integration


@pytest.fixture()
def catalog(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.jsonl"
    write_catalog(path)
    return path


def toy_method(catalog: Path, base_model: Path, **overrides: object) -> FineTuningMethod:
    fields: dict[str, object] = {
        "name": "toy_text",
        "loader": LoaderConfig(name="jsonl_catalog", options={"path": str(catalog)}),
        "base_model": str(base_model),
        "loss": "info_nce",
        "search_space": {"query_lr": FloatDistribution(2e-3, 5e-3, log=True)},
        "fixed_params": {"max_seq_length": 16, "temperature": 0.1},
        "max_evals": 2,
        "num_epochs": 1,
        "batch_size": 8,
        "test_each_n_inputs": 1.0,
    }
    fields.update(overrides)
    return FineTuningMethod(**fields)  # type: ignore[arg-type]


def store_batch(
    clickstream_repository: ClickstreamRepository,
    sessions: list[ToySession],
    release: bool = True,
    irrelevant: tuple[str, ...] = (),
) -> int:
    for session in sessions:
        clickstream_repository.add_session(session.session_id, session.query, session.results)
        if session.clicks:
            clickstream_repository.add_events(
                session.session_id,
                [{"event_id": f"{session.session_id}-{item}", "item_id": item} for item in session.clicks],
            )
        if session.session_id in irrelevant:
            clickstream_repository.mark_irrelevant(session.session_id)
    if release:
        return clickstream_repository.release_batch().released_batch_id
    return clickstream_repository.get_collecting_batch().id


@pytest.fixture()
def tracker(tmp_path: Path, clean_db: str) -> Iterator[object]:
    from embedding_studio.tracking import ExperimentsManager

    yield ExperimentsManager(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifact_location=(tmp_path / "artifacts").as_uri(),
        cache_dir=tmp_path / "model-cache",
    )


# ----------------------------------------------------------------------------------- clear errors


def test_unknown_batch_is_named(
    clean_db: str, catalog: Path, tiny_model_dir: Path, clickstream_repository: ClickstreamRepository
) -> None:
    with pytest.raises(UnknownBatchError, match="batch 987654 does not exist"):
        run_fine_tuning(clickstream_repository, 987654, method=toy_method(catalog, tiny_model_dir))


def test_collecting_batch_must_be_released_first(
    clean_db: str, catalog: Path, tiny_model_dir: Path, clickstream_repository: ClickstreamRepository
) -> None:
    batch_id = store_batch(clickstream_repository, toy_sessions(1), release=False)
    with pytest.raises(BatchNotReleasedError, match=f"batch {batch_id} is still 'collecting'"):
        run_fine_tuning(clickstream_repository, batch_id, method=toy_method(catalog, tiny_model_dir))


def test_empty_batch(
    clean_db: str, catalog: Path, tiny_model_dir: Path, clickstream_repository: ClickstreamRepository
) -> None:
    batch_id = store_batch(clickstream_repository, [])
    with pytest.raises(EmptyBatchError, match=f"batch {batch_id} has no sessions"):
        run_fine_tuning(clickstream_repository, batch_id, method=toy_method(catalog, tiny_model_dir))


def test_batch_whose_sessions_showed_nothing_is_empty(
    clean_db: str, catalog: Path, tiny_model_dir: Path, clickstream_repository: ClickstreamRepository
) -> None:
    batch_id = store_batch(
        clickstream_repository, [ToySession("nothing-1", "river", [], []), ToySession("nothing-2", "sea", [], [])]
    )
    with pytest.raises(EmptyBatchError, match="2 sessions but none can be used: 2 had no shown results"):
        run_fine_tuning(clickstream_repository, batch_id, method=toy_method(catalog, tiny_model_dir))


def test_batch_without_clicks(
    clean_db: str, catalog: Path, tiny_model_dir: Path, clickstream_repository: ClickstreamRepository
) -> None:
    sessions = [ToySession(s.session_id, s.query, s.results, []) for s in toy_sessions(1)]
    batch_id = store_batch(clickstream_repository, sessions, irrelevant=(sessions[0].session_id,))
    with pytest.raises(NoClicksError, match=f"batch {batch_id} has {len(sessions)} sessions .* not one click"):
        run_fine_tuning(clickstream_repository, batch_id, method=toy_method(catalog, tiny_model_dir))


def test_too_many_items_missing_names_some(
    clean_db: str, tmp_path: Path, tiny_model_dir: Path, clickstream_repository: ClickstreamRepository
) -> None:
    catalog = tmp_path / "partial.jsonl"
    write_catalog(catalog, missing_topics=("river", "mountain", "animal"))
    batch_id = store_batch(clickstream_repository, toy_sessions(1))
    assert get_settings().max_failed_items_share == pytest.approx(0.1)
    with pytest.raises(TooManyFailedItemsError) as raised:
        run_fine_tuning(clickstream_repository, batch_id, method=toy_method(catalog, tiny_model_dir))
    message = str(raised.value)
    assert "9 of 24 items" in message and "more than the allowed 10%" in message
    assert "could not be loaded (9 missing)" in message  # why: the catalog lacks them, not that they are unreadable
    assert raised.value.reasons == {"missing": 9}
    assert "'river-0'" in message or "'mountain-0'" in message or "'animal-0'" in message


# ----------------------------------------------------------------------------------- end to end


def test_two_iterations_end_to_end(
    clean_db: str, catalog: Path, tiny_model_dir: Path, tracker: Any, clickstream_repository: ClickstreamRepository
) -> None:
    from embedding_studio.tracking.manager import TAG_REFIT

    method = toy_method(
        catalog, tiny_model_dir, fixed_params={"max_seq_length": 16, "temperature": 0.1, "refit_on_all_sessions": True}
    )
    sessions = toy_sessions(1)
    sessions.append(ToySession("shown-nothing", "river", [], []))
    batch_id = store_batch(clickstream_repository, sessions)
    progress: list[tuple[float, str]] = []

    first = run_fine_tuning(
        clickstream_repository,
        batch_id,
        method=method,
        tracker=tracker,
        progress=lambda fraction, message: progress.append((fraction, message)),
    )

    assert first.skipped_sessions == 1 and first.failed_items == 0
    assert first.selection_mode == "search" and first.trial_count == 2
    fractions = [fraction for fraction, _ in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("trial 2/2" in message for _, message in progress)
    runs = tracker.list_runs(first.experiment_id)
    assert len(runs) == 2
    # only the best run keeps its model; it is registered under the alias
    assert {run.run_id for run in runs if run.has_model} == {first.best_run_id}
    assert tracker.get_registered_run_id("embedding-studio-toy_text", "best") == first.best_run_id
    assert first.metrics["val_ndcg_at_10"] == tracker.get_best_run(first.experiment_id).metrics["val_ndcg_at_10"]
    assert first.best_model_url.endswith("/model")
    # the trials left the refit on every session to the chosen run, which got it before it was registered
    assert any(message.startswith("refitting the chosen run") for _, message in progress)
    tags = {run.run_id: run.tags.get(TAG_REFIT, "") for run in runs}
    assert tags[first.best_run_id].startswith("refit on every session (")
    assert not any(
        tag.startswith("refit on every session") for run_id, tag in tags.items() if run_id != first.best_run_id
    )
    best_model = tracker.download_model(first.best_run_id)
    assert best_model.encode_queries(["river boat"]).shape == (1, 32)

    # the next batch starts from the best model and the best parameters of the first iteration
    second_batch = store_batch(clickstream_repository, toy_sessions(1, seed=1, prefix="t"))
    second = run_fine_tuning(
        clickstream_repository, second_batch, method=method, embedding_model_id=first.best_run_id, tracker=tracker
    )
    assert second.selection_mode == "previous_best"
    assert second.experiment_id != first.experiment_id
    first_best_params = tracker.get_run(first.best_run_id).params
    second_runs = sorted(tracker.list_runs(second.experiment_id), key=lambda run: run.start_time)
    assert second_runs[0].params == first_best_params
    assert tracker.get_iteration(second.experiment_id).base_model == first.best_run_id


def test_cancel_between_trials(
    clean_db: str, catalog: Path, tiny_model_dir: Path, tracker: Any, clickstream_repository: ClickstreamRepository
) -> None:
    batch_id = store_batch(clickstream_repository, toy_sessions(1))
    with pytest.raises(FineTuningCanceled, match="canceled after 0 finished trials"):
        run_fine_tuning(
            clickstream_repository,
            batch_id,
            method=toy_method(catalog, tiny_model_dir),
            tracker=tracker,
            should_stop=lambda: True,
        )


def test_the_reference_model_is_validated_on_the_same_sessions_and_pool(
    clean_db: str, catalog: Path, tiny_model_dir: Path, tracker: Any, clickstream_repository: ClickstreamRepository
) -> None:
    """The deployment gate compares like with like: the reference model's figure is the one a trial would report
    for it. Starting from the reference, that is the best trial's own baseline; another model is validated anew,
    and validating the start model anew gives the baseline figure again."""
    method = toy_method(catalog, tiny_model_dir, max_evals=1, validation_pool_size=5)
    batch_id = store_batch(clickstream_repository, toy_sessions(1))

    from_start = run_fine_tuning(
        clickstream_repository,
        batch_id,
        method=method,
        embedding_model_id=str(tiny_model_dir),
        reference_model_id=str(tiny_model_dir),
        tracker=tracker,
    )
    baseline = tracker.get_metric_history(from_start.best_run_id, "val_ndcg_at_10")[0][1]
    assert from_start.reference_metrics["val_ndcg_at_10"] == pytest.approx(baseline)
    assert from_start.main_metric == "val_ndcg_at_10" and from_start.higher_is_better is method.higher_is_better
    assert from_start.validation_queries > 0
    assert from_start.validation_pool_items == 24  # every catalog item: the shown ones and the sample of 5

    other = run_fine_tuning(
        clickstream_repository,
        batch_id,
        method=method,
        embedding_model_id=from_start.best_run_id,
        reference_model_id=str(tiny_model_dir),
        tracker=tracker,
    )
    assert other.reference_metrics["val_ndcg_at_10"] == pytest.approx(baseline, abs=1e-5)
    assert set(other.reference_metrics) >= {"val_ndcg_at_10", "val_recall_at_10", "val_mrr"}
