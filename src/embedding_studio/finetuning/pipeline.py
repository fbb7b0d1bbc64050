"""One fine-tuning iteration, the seed's flow step by step: released batches in, the best model out.

batches → sessions (the newest batch whole, ``replay_share`` of the older ones) → ``FineTuningInput``
(ClickstreamConverter) → queries (QueryRetriever) → the items they show (DataLoader) → train/test
(TrainTestSplitter) → prepared items (ItemSetManager) → initial model saved once → parameter selection
(HPO, or the previous iteration's best until those stop improving: ``hpo.search_again_reason``) → the
tracker picks the best run → its recipe is refit on every session (the only refit of the iteration) → the other
models are deleted and the best is registered with an alias.

Checks come before anything expensive: a batch that is unknown, still collecting, empty, without a
click, or whose items mostly cannot be loaded fails in seconds with an error naming the problem,
before a model is loaded. Model and CUDA memory are freed after each trial and at the end, also
when a step fails.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from embedding_studio.config import Settings, get_settings
from embedding_studio.config.scratch import scratch_directory
from embedding_studio.finetuning.errors import (
    BatchNotReleasedError,
    EmptyBatchError,
    FineTuningCanceled,
    FineTuningError,
    NoClicksError,
    NotEnoughDataError,
    TooManyFailedItemsError,
    UnknownBatchError,
    describe_batches,
    describe_failure_reasons,
)
from embedding_studio.finetuning.hpo import (
    HyperparameterSearchSettings,
    PreparedData,
    SelectionResult,
    TrainFunction,
    TrialRunner,
    iteration_gain,
    previous_best_parameter_sets,
    record_iteration_outcome,
    recorded_outcomes,
    resolve_storage,
    run_parameter_sets,
    search_again_reason,
    search_parameters,
)
from embedding_studio.finetuning.method import FineTuningMethod, get_method
from embedding_studio.finetuning.query_retriever import normalize_query_text
from embedding_studio.finetuning.shared_search import SharedTrials, TrialPlan, TrialsProgress, data_fingerprint
from embedding_studio.items.upserted_items import UpsertedItems

if TYPE_CHECKING:
    from embedding_studio.clickstream.dao import ClickstreamRepository
    from embedding_studio.clickstream.types import FineTuningInput
    from embedding_studio.items.types import FailedItem
    from embedding_studio.models import TextEmbeddingModel
    from embedding_studio.tracking import ExperimentsManager

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[float, str], None]

# Share of the progress bar each stage takes; trials get everything between preparation and selection.
_PREPARED = 0.15
_TRIALS_END = 0.95
_FAILED_EXAMPLES = 5
BEST_MODEL_ALIAS = "best"


@dataclass
class FineTuningResult:
    best_run_id: str
    best_model_url: str
    metrics: dict[str, float]
    experiment_id: str
    skipped_sessions: int = 0
    failed_items: int = 0
    trial_count: int = 0
    pruned_trials: int = 0
    selection_mode: str = "search"
    params: dict[str, Any] = field(default_factory=dict)
    #: the reference model's (the blue one's) validation on the same held-out sessions and pool; {} without one
    reference_metrics: dict[str, float] = field(default_factory=dict)
    reference_model_id: str | None = None
    main_metric: str = "val_ndcg_at_10"
    higher_is_better: bool = True
    validation_queries: int = 0
    validation_pool_items: int = 0
    #: the batches trained on, oldest first, and how many sessions of the older ones were replayed
    batch_ids: list[int] = field(default_factory=list)
    replayed_sessions: int = 0
    #: why the parameters were searched again although a previous iteration had some (None: they were not)
    search_reason: str | None = None
    #: trials per worker of a shared search (empty: one process ran them all)
    trial_workers: dict[str, int] = field(default_factory=dict)
    #: the best run's main metric minus the reference (blue) or start model's on the same held-out sessions
    gain: float | None = None
    #: a few held-out queries that had clicks (at most ``HELD_OUT_EXAMPLES``), as typed: the report shows what the
    #: start and the fine-tuned model answer to them (thumbnails for an image catalog)
    held_out_queries: list[str] = field(default_factory=list)


def run_fine_tuning(
    clickstream: ClickstreamRepository,
    batch_id: int | Sequence[int],
    method: str | FineTuningMethod = "default_text",
    embedding_model_id: str | None = None,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    settings: Settings | None = None,
    tracker: ExperimentsManager | None = None,
    *,
    search_settings: HyperparameterSearchSettings | None = None,
    train: TrainFunction | None = None,
    reference_model_id: str | None = None,
    replay_share: float = 1.0,
    shared: SharedTrials | None = None,
) -> FineTuningResult:
    """Fine-tune on released batch ``batch_id`` (or several: a sequence of ids) of ``clickstream`` with ``method``,
    starting from ``embedding_model_id``.

    Every session of the newest batch is used; of the older batches, ``replay_share`` of the sessions (a sample
    drawn with the method's ``split_seed``, so a rerun trains on the same ones). The held-out split is then made
    over all of them, by whole queries, as for one batch.

    ``embedding_model_id`` is a base model name or local path (``models.load_embedding_model``) or the
    MLflow run id of an earlier best model; None starts from the method's base model. ``should_stop``
    is asked between trials; when it says yes, :class:`FineTuningCanceled` is raised.

    ``reference_model_id`` (the blue model, for a deployment gate) is validated on the same held-out sessions and
    candidate pool as the trials; its metrics come back in ``reference_metrics``.

    ``shared`` (a worker's fine-tuning task): a parameter search is an Optuna study in the project's PostgreSQL
    whose trials any worker may run (``run_shared_trials``, ``finetuning.shared_search``); this call runs trials
    too and returns once all of them finished, wherever they ran.
    """
    settings = settings or get_settings()
    fine_tuning_method = method if isinstance(method, FineTuningMethod) else get_method(method, settings=settings)
    report = _Progress(progress)

    if not 0.0 <= replay_share <= 1.0:
        raise ValueError(f"replay_share must be between 0 and 1, got {replay_share}")
    batch_ids = sorted({batch_id} if isinstance(batch_id, int) else set(batch_id))
    if not batch_ids:
        raise FineTuningError("no clickstream batch to train on")
    batch_label = "+".join(str(one) for one in batch_ids)
    prepared = _prepare(clickstream, fine_tuning_method, batch_ids, settings, replay_share, report)
    data, query_retriever, failed = prepared.data, prepared.query_retriever, prepared.failed
    skipped_sessions, replayed = prepared.skipped_sessions, prepared.replayed

    tracker = tracker or _default_tracker(fine_tuning_method, settings)
    previous = tracker.get_previous_iteration(fine_tuning_method.name)
    iteration = tracker.start_iteration(
        fine_tuning_method.name, batch_label, base_model=embedding_model_id or fine_tuning_method.base_model
    )
    search_reason = (
        search_again_reason(
            recorded_outcomes(tracker, fine_tuning_method.name, iteration),
            fine_tuning_method.search_again_after,
            fine_tuning_method.min_iteration_gain,
        )
        if previous is not None
        else None
    )

    model: TextEmbeddingModel | None = None
    try:
        with scratch_directory("initial-model-") as initial_model_dir:
            report(0.12, f"loading the initial model {embedding_model_id or fine_tuning_method.base_model}")
            model = _load_initial_model(fine_tuning_method, embedding_model_id, tracker)
            model.save(initial_model_dir)
            model = None
            _release_memory()
            report(_PREPARED, "initial model ready; selecting parameters")

            runner = TrialRunner(
                fine_tuning_method,
                data,
                initial_model_dir,
                tracker,
                iteration,
                device=_resolve_device(settings),
                train=train,
            )
            selection = _select_parameters(
                runner,
                None if search_reason else previous,
                tracker,
                iteration,
                report,
                should_stop,
                settings,
                search_settings,
                batch_label,
                search_reason,
                shared=shared,
                plan=(
                    TrialPlan.of_iteration(
                        iteration,
                        trials=fine_tuning_method.max_evals,
                        batch_ids=batch_ids,
                        replay_share=replay_share,
                        start_model_id=embedding_model_id,
                        data_fingerprint=data_fingerprint(data),
                    )
                    if shared is not None
                    else None
                ),
            )
            if should_stop is not None and should_stop():
                raise FineTuningCanceled(len(selection.outcomes))
            report(_TRIALS_END, "choosing the best run")
            best = tracker.get_best_run(iteration.experiment_id)
            if best is None:
                raise FineTuningError(
                    f"no trial of experiment {iteration.experiment_id} logged {fine_tuning_method.main_metric!r}; "
                    "nothing to choose from"
                )
            # Trials leave the refit on every session to the run chosen here (TrialRunner.refit_chosen_run).
            report(0.96, f"refitting the chosen run {best.run_id} on every session")
            runner.refit_chosen_run(best.run_id)
    finally:
        model = None
        _release_memory()

    reference_metrics: dict[str, float] = {}
    if reference_model_id is not None:
        report(0.97, f"validating the reference model {reference_model_id} on the same held-out sessions")
        reference_metrics = _reference_metrics(
            fine_tuning_method, data, selection, best.run_id, embedding_model_id, reference_model_id, tracker, settings
        )
    best_metrics = {key: float(value) for key, value in dict(getattr(best, "metrics", {}) or {}).items()}
    gain = iteration_gain(best_metrics, reference_metrics or _start_metrics(selection, best.run_id), fine_tuning_method)
    record_iteration_outcome(tracker, iteration, selection.mode, gain, batch_ids)
    tracker.delete_non_best_models(iteration.experiment_id)
    tracker.register_best(best.run_id, _registered_name(fine_tuning_method), BEST_MODEL_ALIAS)
    report(1.0, f"best run {best.run_id}")
    return FineTuningResult(
        best_run_id=best.run_id,
        best_model_url=tracker.model_url(best.run_id),
        metrics=best_metrics,
        experiment_id=iteration.experiment_id,
        skipped_sessions=skipped_sessions,
        failed_items=len(failed),
        trial_count=len(selection.outcomes),
        pruned_trials=sum(1 for outcome in selection.outcomes if outcome.state == "pruned"),
        selection_mode=selection.mode,
        params=dict(getattr(best, "params", {}) or {}),
        reference_metrics=reference_metrics,
        reference_model_id=reference_model_id,
        main_metric=fine_tuning_method.main_metric,
        higher_is_better=fine_tuning_method.higher_is_better,
        validation_queries=len(
            {normalize_query_text(query) for query in query_retriever.get_queries(data.test_inputs)}
        ),
        validation_pool_items=len(data.items),
        batch_ids=batch_ids,
        replayed_sessions=replayed,
        search_reason=search_reason,
        gain=gain,
        trial_workers=dict(selection.workers),
        held_out_queries=held_out_examples(query_retriever, data.test_inputs),
    )


HELD_OUT_EXAMPLES = 5


def held_out_examples(
    query_retriever: Any, inputs: Sequence[FineTuningInput], count: int = HELD_OUT_EXAMPLES
) -> list[str]:
    """The first ``count`` distinct held-out queries with a click, in session order: kept in the task's result (a few
    strings), so a report can show what the models answer to queries they never trained on without redoing the
    split."""
    clicked = [one for one in inputs if one.events and not one.is_irrelevant]
    examples: dict[str, str] = {}
    for text in query_retriever.get_queries(clicked):
        examples.setdefault(normalize_query_text(text), text)
        if len(examples) >= count:
            break
    return list(examples.values())


@dataclass
class _Prepared:
    data: PreparedData
    query_retriever: Any
    failed: list[Any]
    skipped_sessions: int
    replayed: int


def _prepare(
    clickstream: ClickstreamRepository,
    method: FineTuningMethod,
    batch_ids: list[int],
    settings: Settings,
    replay_share: float,
    report: _Progress,
) -> _Prepared:
    """Batches → sessions → items → the split and prepared items every trial shares (deterministic: a helper of a
    shared search prepares the same from the same batches, and the fingerprint on the study checks it)."""
    report(0.0, f"reading {describe_batches(batch_ids)}")
    inputs, skipped_sessions, replayed = _read_batches(
        clickstream, batch_ids, settings, replay_share, method.split_seed
    )

    report(0.04, f"rendering {len(inputs)} queries")
    query_retriever = method.create_query_retriever()
    query_retriever.get_queries(inputs)  # fails early, naming the session, when a query cannot be rendered

    # The catalog as the API left it: the loader's items with the upserts of the clickstream's own database on top.
    upserted = UpsertedItems(clickstream.database)
    report(0.06, "loading the items shown in the batch")
    downloaded, failed = _load_items(method, upserted, inputs, settings)

    report(0.08, f"sampling up to {method.validation_pool_size} catalog items for the validation")
    pool_sample = _sample_catalog(method, upserted, {item.meta.item_id for item in downloaded})

    report(0.10, "splitting sessions into train and test by query")
    data = _prepare_data(method, inputs, [*downloaded, *pool_sample], query_retriever, describe_batches(batch_ids))
    return _Prepared(data, query_retriever, list(failed), skipped_sessions, replayed)


def run_shared_trials(
    clickstream: ClickstreamRepository,
    method: str | FineTuningMethod,
    shared: SharedTrials,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    settings: Settings | None = None,
    tracker: ExperimentsManager | None = None,
    *,
    search_settings: HyperparameterSearchSettings | None = None,
    train: TrainFunction | None = None,
) -> int:
    """A helper's share of another worker's search: the trials still waiting in ``shared``'s study, run on the data
    the owner's plan names and logged to the owner's experiment; returns how many this worker ran (0, having
    prepared nothing, when none waits). ``progress`` gets the whole search's progress after each trial."""
    from embedding_studio.finetuning.shared_search import (
        data_fingerprint,
        helper_should_run,
        open_shared_study,
        run_planned_trials,
    )

    settings = settings or get_settings()
    search_settings = search_settings or HyperparameterSearchSettings()
    fine_tuning_method = method if isinstance(method, FineTuningMethod) else get_method(method, settings=settings)
    if not helper_should_run(shared, fine_tuning_method, search_settings):
        return 0
    opened = open_shared_study(shared, fine_tuning_method, search_settings)
    assert opened is not None
    study, plan = opened
    prepared = _prepare(clickstream, fine_tuning_method, plan.batch_ids, settings, plan.replay_share, _Progress(None))
    fingerprint = data_fingerprint(prepared.data)
    if fingerprint != plan.data_fingerprint:
        raise FineTuningError(
            f"study {shared.study_name!r}: this worker prepared other data than the task's owner (fingerprint "
            f"{fingerprint}, the plan's {plan.data_fingerprint}): the catalog or the code differ between workers"
        )
    tracker = tracker or _default_tracker(fine_tuning_method, settings)

    def on_trial(state: TrialsProgress) -> None:
        if progress is not None:
            progress(_trials_fraction(state), state.describe())

    try:
        with scratch_directory("initial-model-") as initial_model_dir:
            model = _load_initial_model(fine_tuning_method, plan.start_model_id, tracker)
            model.save(initial_model_dir)
            del model
            _release_memory()
            runner = TrialRunner(
                fine_tuning_method,
                prepared.data,
                initial_model_dir,
                tracker,
                plan.iteration(),
                device=_resolve_device(settings),
                train=train,
            )
            return run_planned_trials(
                runner, study, plan, worker=shared.worker, should_stop=should_stop, on_trial=on_trial
            )
    finally:
        _release_memory()


def _trials_fraction(state: TrialsProgress) -> float:
    return _PREPARED + (_TRIALS_END - _PREPARED) * state.done / max(1, state.total)


def _shared_search(
    runner: TrialRunner,
    shared: SharedTrials,
    search_settings: HyperparameterSearchSettings,
    plan: TrialPlan,
    report: _Progress,
    should_stop: Callable[[], bool] | None,
) -> SelectionResult:
    """The owner's side: plan the study, let helpers know, run trials alongside them, wait for theirs, and read
    every trial's outcome back from the study."""
    from embedding_studio.finetuning.shared_search import (
        create_shared_study,
        run_planned_trials,
        study_outcomes,
        wait_for_trials,
    )

    def on_trial(state: TrialsProgress) -> None:
        report(_trials_fraction(state), state.describe())

    study = create_shared_study(shared, runner.method, search_settings, plan)
    if shared.on_study_ready is not None:
        shared.on_study_ready(plan.trials)
    run_planned_trials(runner, study, plan, worker=shared.worker, should_stop=should_stop, on_trial=on_trial)
    state = wait_for_trials(study, plan, should_stop=should_stop, on_change=on_trial)
    if should_stop is not None and should_stop():
        raise FineTuningCanceled(state.done)
    return study_outcomes(study, plan)


def _start_metrics(selection: SelectionResult, best_run_id: str) -> dict[str, float]:
    """The start model's validation on the iteration's held-out sessions: the best trial's untrained baseline."""
    outcome = next((outcome for outcome in selection.outcomes if outcome.run_id == best_run_id), None)
    return dict(outcome.baseline_metrics) if outcome is not None else {}


def _sample_catalog(method: FineTuningMethod, upserted: UpsertedItems, shown: set[str]) -> list[Any]:
    """``method.validation_pool_size`` catalog items the batch did not show: the retrieval validation's distractors.

    A loader that cannot be read whole is no reason to fail the task: validation then searches the shown items
    only, and the log says so."""
    if method.validation_pool_size <= 0:
        return []
    loader = method.create_loader(upserted)
    try:
        return loader.sample(method.validation_pool_size, seed=method.validation_pool_seed, exclude=shown)
    except Exception as error:  # the batch's own items loaded; a failed sample only narrows the validation
        logger.warning("could not sample the catalog for validation (%s); validating on the shown items", error)
        return []
    finally:
        loader.close()


def _reference_metrics(
    method: FineTuningMethod,
    data: PreparedData,
    selection: SelectionResult,
    best_run_id: str,
    start_model_id: str | None,
    reference_model_id: str,
    tracker: ExperimentsManager,
    settings: Settings,
) -> dict[str, float]:
    """The reference model's validation, comparable with the best run's: the same sessions, pool and parameters.

    When the reference is the model training started from (the usual case: fine-tuning starts from blue), the
    best trial's own baseline validation is that figure; otherwise the reference model is loaded and validated.
    """
    from embedding_studio.finetuning.fine_tuner import validate_model
    from embedding_studio.finetuning.params import FineTuningParams

    best_outcome = next((outcome for outcome in selection.outcomes if outcome.run_id == best_run_id), None)
    if best_outcome is not None and best_outcome.baseline_metrics and reference_model_id == start_model_id:
        return dict(best_outcome.baseline_metrics)
    params = FineTuningParams.model_validate(best_outcome.params if best_outcome is not None else method.base_params())
    model = _load_initial_model(method, reference_model_id, tracker)
    try:
        return validate_model(
            model,
            data.items,
            data.query_retriever,
            data.train_inputs,
            data.test_inputs,
            params,
            device=_resolve_device(settings),
        )
    finally:
        del model
        _release_memory()


class _Progress:
    def __init__(self, callback: ProgressCallback | None) -> None:
        self.callback = callback

    def __call__(self, fraction: float, message: str) -> None:
        logger.info("fine-tuning %3.0f%% %s", fraction * 100, message)
        if self.callback is not None:
            self.callback(fraction, message)


def _read_batches(
    clickstream: ClickstreamRepository, batch_ids: list[int], settings: Settings, replay_share: float, seed: int
) -> tuple[list[FineTuningInput], int, int]:
    """The sessions to train on: every usable one of the newest batch, ``replay_share`` of each older batch's.

    Returns them in content order with the count of sessions skipped (no shown results) and of older-batch
    sessions kept. Every batch is checked to exist and be released before any is read."""
    from embedding_studio.clickstream.converter import ClickstreamConverter
    from embedding_studio.clickstream.errors import UnknownBatchError as ClickstreamUnknownBatchError

    for batch_id in batch_ids:
        try:
            batch = clickstream.get_batch(batch_id)
        except ClickstreamUnknownBatchError as error:
            raise UnknownBatchError(batch_id) from error
        if batch.status != "released":
            raise BatchNotReleasedError(batch_id, batch.status)

    newest = max(batch_ids)
    inputs: list[FineTuningInput] = []
    skipped = replayed = 0
    for batch_id in batch_ids:
        converted = ClickstreamConverter().convert_all(
            clickstream.get_batch_sessions(batch_id, page_size=settings.clickstream_page_size)
        )
        skipped += converted.skipped_count
        # Sessions come back in session-id order, and ids are random: ordering by content makes the sample and
        # the training order, and so the trained model, depend on the batches and the seed only.
        batch_inputs = sorted(converted.inputs, key=_content_order)
        if batch_id != newest:
            batch_inputs = _replay_sample(batch_inputs, replay_share, seed, batch_id)
            replayed += len(batch_inputs)
        inputs.extend(batch_inputs)
    if not inputs:
        raise EmptyBatchError(batch_ids, skipped, skipped)
    if not any(fine_tuning_input.events for fine_tuning_input in inputs):
        raise NoClicksError(batch_ids, len(inputs))
    return sorted(inputs, key=_content_order), skipped, replayed


def _replay_sample(inputs: list[FineTuningInput], share: float, seed: int, batch_id: int) -> list[FineTuningInput]:
    """``share`` of an older batch's sessions (rounded), drawn by ``seed`` and the batch id, in their order."""
    keep = round(share * len(inputs))
    if keep >= len(inputs):
        return inputs
    chosen = set(random.Random(f"replay-{seed}-{batch_id}").sample(range(len(inputs)), keep))
    return [fine_tuning_input for index, fine_tuning_input in enumerate(inputs) if index in chosen]


def _content_order(fine_tuning_input: FineTuningInput) -> tuple[str, tuple[str, ...], tuple[str, ...], bool, str]:
    query = fine_tuning_input.query
    query_text = query if isinstance(query, str) else json.dumps(query, sort_keys=True, default=str)
    return (
        query_text,
        tuple(fine_tuning_input.results),
        tuple(sorted(fine_tuning_input.events)),
        fine_tuning_input.is_irrelevant,
        fine_tuning_input.session_id,  # content ties are identical sessions; the id only makes the order total
    )


def _load_items(
    method: FineTuningMethod, upserted: UpsertedItems, inputs: list[FineTuningInput], settings: Settings
) -> tuple[list[Any], list[FailedItem]]:
    from embedding_studio.items.types import ItemMeta

    item_ids = dict.fromkeys(item_id for fine_tuning_input in inputs for item_id in fine_tuning_input.results)
    metas = [ItemMeta(item_id=item_id, source=method.item_source) for item_id in item_ids]
    loader = method.create_loader(upserted)
    try:
        loaded = loader.load(metas)
    finally:
        loader.close()
    total = len(metas)
    failed = list(loaded.failed)
    if total and len(failed) / total > settings.max_failed_items_share:
        examples = [failure.meta.item_id for failure in failed[:_FAILED_EXAMPLES]]
        raise TooManyFailedItemsError(
            len(failed), total, settings.max_failed_items_share, examples, loaded.failed_by_reason()
        )
    if failed:
        logger.warning(
            "%d of %d items could not be loaded (%s); training without them",
            len(failed),
            total,
            describe_failure_reasons(loaded.failed_by_reason()),
        )
    return list(loaded.items), failed


def _prepare_data(
    method: FineTuningMethod,
    inputs: list[FineTuningInput],
    downloaded: list[Any],
    query_retriever: Any,
    batches: str,
) -> PreparedData:
    from embedding_studio.finetuning.splitter import TooFewQueriesError, TrainTestSplitter

    splitter = TrainTestSplitter(test_share=method.test_share, seed=method.split_seed, query_retriever=query_retriever)
    try:
        split = splitter.split(inputs)
    except TooFewQueriesError as error:
        raise NotEnoughDataError(f"{batches}: {error}") from error
    item_set_manager = method.create_item_set_manager()
    prepared_items, clickstream_dataset = item_set_manager(downloaded, split)
    train_inputs = list(clickstream_dataset.train)
    test_inputs = list(clickstream_dataset.test)
    if not any(fine_tuning_input.events for fine_tuning_input in train_inputs):
        raise NotEnoughDataError(
            f"{batches}: no training session with a click is left after the split "
            f"({len(train_inputs)} train, {len(test_inputs)} test sessions)"
        )
    if not test_inputs:
        raise NotEnoughDataError(f"{batches}: no session is left to validate on")
    return PreparedData(
        train_inputs=train_inputs, test_inputs=test_inputs, items=prepared_items, query_retriever=query_retriever
    )


def _default_tracker(method: FineTuningMethod, settings: Settings) -> ExperimentsManager:
    from embedding_studio.tracking import ExperimentsManager

    return ExperimentsManager(
        tracking_uri=settings.resolved_mlflow_tracking_uri,
        main_metric=method.main_metric,
        higher_is_better=method.higher_is_better,
    )


def _load_initial_model(
    method: FineTuningMethod, embedding_model_id: str | None, tracker: ExperimentsManager
) -> TextEmbeddingModel:
    """A base name or local path goes through the method's model factory; anything else is a run id."""
    if embedding_model_id is None:
        return method.create_model()
    from embedding_studio.models.errors import ModelNotFoundError

    try:
        return method.create_model(embedding_model_id)
    except ModelNotFoundError as not_a_path:
        try:
            return tracker.download_model(embedding_model_id)
        except Exception as error:
            raise FineTuningError(
                f"initial model {embedding_model_id!r} is neither a base model or local directory nor a tracker run "
                f"with a model ({error})"
            ) from not_a_path


def _select_parameters(
    runner: TrialRunner,
    previous: Any,
    tracker: ExperimentsManager,
    iteration: Any,
    report: _Progress,
    should_stop: Callable[[], bool] | None,
    settings: Settings,
    search_settings: HyperparameterSearchSettings | None,
    batch_label: str,
    search_reason: str | None = None,
    shared: SharedTrials | None = None,
    plan: TrialPlan | None = None,
) -> SelectionResult:
    """The previous iteration's best parameter sets when there is one (``previous``), else a search; the caller
    passes no ``previous`` when ``search_reason`` says the reused parameters stopped improving."""
    span = (_PREPARED, _TRIALS_END)
    if previous is not None:
        parameter_sets = previous_best_parameter_sets(tracker, previous, runner.method.top_params_count)
        if parameter_sets:
            report(_PREPARED, f"retrying {len(parameter_sets)} parameter sets of iteration {previous.name}")
            return run_parameter_sets(
                runner, parameter_sets, progress=report, should_stop=should_stop, progress_span=span
            )
    search_settings = search_settings or HyperparameterSearchSettings()
    if shared is not None and plan is not None:
        report(
            _PREPARED,
            f"searching {plan.trials} parameter sets on every fine-tuning worker (study {shared.study_name})"
            + (f" again: {search_reason}" if search_reason else ""),
        )
        return _shared_search(runner, shared, search_settings, plan, report, should_stop)
    storage_url = resolve_storage(search_settings.storage, settings.database_url)
    report(
        _PREPARED,
        f"searching {runner.method.max_evals} parameter sets" + (f" again: {search_reason}" if search_reason else ""),
    )
    return search_parameters(
        runner,
        study_name=search_settings.study_name
        or f"{runner.method.name}-batch-{batch_label}-experiment-{iteration.experiment_id}",
        search_settings=search_settings,
        storage_url=storage_url,
        progress=report,
        should_stop=should_stop,
        progress_span=span,
    )


def _registered_name(method: FineTuningMethod) -> str:
    return f"embedding-studio-{method.name}"


def _resolve_device(settings: Settings) -> Any:
    from embedding_studio.models import resolve_device

    return resolve_device(settings.device)


def _release_memory() -> None:
    from embedding_studio.models import release_memory

    release_memory()
