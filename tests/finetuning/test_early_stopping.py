"""Early stopping really fires: a real fit of a tiny model, asked for many epochs, stops once the held-out metric
stops improving, and says so (in ``FitResult`` and on the trial's MLflow run).

Every other fit in the suite runs one to three epochs, fewer than the patience (3 validations), so none of them
could ever see the callback fire.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from embedding_studio.clickstream.types import FineTuningInput
from embedding_studio.finetuning.fine_tuner import EmbeddingsFineTuner, FitResult, fit_fine_tuner
from embedding_studio.finetuning.params import FineTuningParams
from embedding_studio.finetuning.splitter import TrainTestSplitter
from embedding_studio.models import build_tiny_text_model

MAX_EPOCHS = 30


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Two shared cores: OpenMP threads spinning against each other make tiny products many times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _key_word_world(
    item_count: int = 20, session_count: int = 60, seed: int = 0
) -> tuple[dict[str, list[str]], list[FineTuningInput], list[str]]:
    """Each item carries a key word and each query names the key of the item its user clicked: learnable in a
    few epochs, after which held-out NDCG@10 sits at its ceiling and cannot improve any more."""
    rng = random.Random(seed)
    keys = [f"key{number}" for number in range(item_count)]
    fillers = [f"fill{number}" for number in range(10)]
    items = {f"item{n}": [f"{keys[n]} {rng.choice(fillers)} {rng.choice(fillers)}"] for n in range(item_count)}
    inputs = []
    for number in range(session_count):
        target = rng.randrange(item_count)
        shown = [f"item{index}" for index in rng.sample([o for o in range(item_count) if o != target], 7) + [target]]
        rng.shuffle(shown)
        inputs.append(
            FineTuningInput(
                session_id=f"s{number}",
                query=f"{keys[target]} {rng.choice(fillers)}",
                results=shown,
                ranks={item_id: rank for rank, item_id in enumerate(shown, 1)},
                events=[f"item{target}"],
            )
        )
    return items, inputs, keys + fillers


def _fit(max_epochs: int) -> FitResult:
    items, inputs, vocabulary = _key_word_world()
    split = TrainTestSplitter(seed=0).split(inputs)
    params = FineTuningParams(
        loss="info_nce",
        query_lr=1e-2,
        batch_size=16,
        num_epochs=max_epochs,
        seed=0,
        choose_weight_share=False,
        refit_on_all_sessions=False,
    )
    fine_tuner = EmbeddingsFineTuner.create(
        build_tiny_text_model(seed=0, dim=32, vocab=vocabulary), items, None, params
    )
    return fit_fine_tuner(fine_tuner, split.train, split.test, params, max_epochs=max_epochs, test_each_n_inputs=1.0)


def test_early_stopping_ends_a_long_run_once_the_metric_stops_improving_and_says_why() -> None:
    result = _fit(MAX_EPOCHS)

    assert result.epochs_run < MAX_EPOCHS, result.stop_reason
    assert len(result.history) == result.epochs_run  # one validation per epoch, none after the stop
    ndcg = [entry["val_ndcg_at_10"] for entry in result.history]
    best_at = ndcg.index(max(ndcg))
    # Patience 3: the last three validations did not beat the best one before them.
    assert len(ndcg) - 1 - best_at >= 3, ndcg
    assert result.stop_reason.startswith(f"early stopping after {result.epochs_run} of {MAX_EPOCHS} epochs: ")
    assert "val_ndcg_at_10 did not improve in the last 3 records" in result.stop_reason
    assert result.best_metrics["val_ndcg_at_10"] == max(ndcg) > result.baseline_metrics["val_ndcg_at_10"]


def test_a_run_that_uses_every_epoch_says_so() -> None:
    result = _fit(2)

    assert result.epochs_run == 2
    assert result.stop_reason == "ran all 2 epochs"


@pytest.mark.integration  # a real MLflow store
def test_the_trials_run_records_why_training_stopped(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The reason reaches MLflow as a tag of the trial's run, where someone asking "why only 5 epochs?" looks."""
    from embedding_studio.finetuning.hpo import PreparedData, TrialRunner
    from embedding_studio.finetuning.method import FineTuningMethod, LoaderConfig
    from embedding_studio.finetuning.query_retriever import TextQueryRetriever
    from embedding_studio.tracking import ExperimentsManager
    from embedding_studio.tracking.manager import TAG_STOP_REASON

    reason = "early stopping after 5 of 30 epochs: Monitored metric val_ndcg_at_10 did not improve"

    def train(*, on_validation_metrics, **_):  # type: ignore[no-untyped-def]
        metrics = {"val_loss": 1.0, "val_ndcg_at_10": 0.5}
        on_validation_metrics(1, metrics)
        return FitResult(best_metrics=metrics, history=[metrics], stopped_epoch=5, epochs_run=5, stop_reason=reason)

    tracker = ExperimentsManager(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifact_location=(tmp_path / "artifacts").as_uri(),
        cache_dir=tmp_path / "cache",
    )
    method = FineTuningMethod(name="toy", loader=LoaderConfig(name="jsonl_catalog"), max_evals=1, num_epochs=30)
    iteration = tracker.start_iteration(method.name, "1")
    runner = TrialRunner(
        method,
        PreparedData([], [], {}, TextQueryRetriever()),
        tiny_model_dir,
        tracker,
        iteration,
        device="cpu",
        train=train,
    )
    outcome = runner.run({})

    assert tracker.client.get_run(outcome.run_id).data.tags[TAG_STOP_REASON] == reason
