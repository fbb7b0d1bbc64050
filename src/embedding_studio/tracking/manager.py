"""Experiment tracking on MLflow: iterations, parameter sets, metrics, models, the best run.

Vocabulary (from the seed): an *iteration* is one fine-tuning of one clickstream batch by one plugin and
is one MLflow experiment named `<plugin>/batch-<batch_id>/iteration-<n>`; each parameter set tried in it
is one MLflow run. A run's model is stored as the artifact directory `model/` in the format
`embedding_studio.models` saves, so any run can be turned back into a model with `download_model`.

MLflow is imported on first use only: the API and CLI start without paying for it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from embedding_studio.config import get_settings
from embedding_studio.config.scratch import scratch_directory

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from embedding_studio.models.clip import TextToImageEmbeddingModel
    from embedding_studio.models.text import TextEmbeddingModel

TAG_PREFIX = "embedding_studio."
TAG_PLUGIN = TAG_PREFIX + "plugin"
TAG_BATCH = TAG_PREFIX + "batch_id"
TAG_ITERATION = TAG_PREFIX + "iteration"
TAG_BASE_MODEL = TAG_PREFIX + "base_model"
TAG_PARAMS_JSON = TAG_PREFIX + "params_json"
TAG_HAS_MODEL = TAG_PREFIX + "has_model"
TAG_KIND = TAG_PREFIX + "kind"
#: why a trial's training ended ("early stopping after 5 of 30 epochs: …" or "ran all 3 epochs")
TAG_STOP_REASON = TAG_PREFIX + "stop_reason"
#: whether and why a run's model is or is not refit on every session ("refit skipped: ...", "refit deferred: ...",
#: "refit on every session ...")
TAG_REFIT = TAG_PREFIX + "refit"
#: a deferred refit's plan (``finetuning.fine_tuner.RefitPlan`` as JSON), for when the search chooses the run
TAG_REFIT_PLAN = TAG_PREFIX + "refit_plan"
ITERATION_KIND = "fine_tuning_iteration"
MODEL_ARTIFACT_PATH = "model"
PARAMS_ARTIFACT = "params.json"
MAX_TAG_VALUE_LENGTH = 5000
_ITERATION_NAME = re.compile(r"^(?P<plugin>.+)/batch-(?P<batch>.+)/iteration-(?P<index>\d+)$")

_initialized_stores: set[str] = set()
_initialization_guard = threading.Lock()


class TrackingError(RuntimeError):
    """A tracking operation that cannot do what was asked; the message names the run or experiment."""


@dataclass(frozen=True)
class Iteration:
    """One fine-tuning iteration = one MLflow experiment."""

    experiment_id: str
    name: str
    plugin_name: str = ""
    batch_id: str = ""
    index: int = 0
    base_model: str | None = None


@dataclass(frozen=True)
class RunSummary:
    """One parameter set's run: its original params, its latest metric values and where its model lives."""

    run_id: str
    experiment_id: str
    status: str
    params: dict[str, Any]
    metrics: dict[str, float]
    artifact_uri: str
    has_model: bool
    start_time: int = 0
    tags: dict[str, str] = field(default_factory=dict)


def _quiet_mlflow() -> None:
    """MLflow must not phone home (telemetry) nor flood worker logs with migration and warning noise."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("mlflow", "alembic", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module=r"mlflow(\..*)?")
    warnings.filterwarnings("ignore", message=r".*[Ff]ilesystem tracking backend.*")


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dicts to dotted keys with string values, the only shape MLflow params take."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, prefix=f"{name}."))
        elif isinstance(value, list | tuple | set):
            flat[name] = json.dumps(list(value), default=str)
        else:
            flat[name] = str(value)
    return flat


def share_figure_metrics(figures: Mapping[float, Mapping[str, float]]) -> dict[str, float]:
    """``{0.5: {"val_ndcg_at_10": v}}`` → ``{"share_0.5/val_ndcg_at_10": v}``: a weight share's figures as tracker
    metrics, apart from the fully trained weights' curve (the tracker ranks runs by that name, and the replay of
    pruners reads it) and grouped by share where the tracker's charts group names by their prefix. The naming lives
    here, beside :func:`share_figure_of`, because fine-tuning writes these names and the report reads them."""
    return {
        f"share_{share:g}/{name}": float(value) for share, metrics in figures.items() for name, value in metrics.items()
    }


_SHARE_FIGURE_NAME = re.compile(r"share_(?P<share>[^/]+)/(?P<metric>.+)")


def share_figure_of(metric_name: str) -> tuple[float, str] | None:
    """``"share_0.5/val_ndcg_at_10"`` → ``(0.5, "val_ndcg_at_10")``, the inverse of :func:`share_figure_metrics`;
    None for a name that is not a weight share's figure, so a reader can sort a run's metrics with it."""
    match = _SHARE_FIGURE_NAME.fullmatch(metric_name)
    if match is None:
        return None
    try:
        share = float(match["share"])
    except ValueError:
        return None
    return share, match["metric"]


def _local_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and uri:
        return Path(uri)
    return None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An inter-process lock (several workers may open the same sqlite store at once)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class ExperimentsManager:
    """The fine-tuning pipeline's view of MLflow.

    `main_metric` and `higher_is_better` declare how the best run is chosen: the run with the best
    latest value of `main_metric` among finished runs that logged it (ties go to the earlier run).
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        main_metric: str = "val_ndcg_at_10",
        higher_is_better: bool = True,
        artifact_location: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        settings = get_settings()
        self.tracking_uri = tracking_uri or settings.resolved_mlflow_tracking_uri
        self.main_metric = main_metric
        self.higher_is_better = higher_is_better
        self.artifact_location = artifact_location or self._default_artifact_location(tracking_uri is None)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else settings.data_dir / "model-cache"
        self._client: MlflowClient | None = None

    def _default_artifact_location(self, uri_from_settings: bool) -> str | None:
        """Local stores keep artifacts next to the database; a tracking server decides for itself."""
        if self.tracking_uri.startswith("sqlite:///"):
            if uri_from_settings and get_settings().mlflow_tracking_uri is None:
                return get_settings().mlflow_artifact_location
            database = Path(self.tracking_uri.removeprefix("sqlite:///"))
            return (database.parent / "mlartifacts").resolve().as_uri()
        return None

    # ----- client -----------------------------------------------------------------------------------
    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = self._create_client()
        return self._client

    def _create_client(self) -> MlflowClient:
        """Create (and for sqlite, create or migrate) the store under a file lock.

        MLflow migrates a sqlite schema when a client first touches it; two workers doing that at once
        fail with "duplicate column", so the first touch is serialised across processes.
        """
        _quiet_mlflow()
        from mlflow import MlflowClient

        with _initialization_guard:
            if self.tracking_uri in _initialized_stores or not self.tracking_uri.startswith("sqlite:///"):
                return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
            database = Path(self.tracking_uri.removeprefix("sqlite:///"))
            database.parent.mkdir(parents=True, exist_ok=True)
            with _file_lock(database.with_name(database.name + ".lock")):
                client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
                client.search_experiments(max_results=1)
                client.search_registered_models(max_results=1)
            _initialized_stores.add(self.tracking_uri)
            return client

    # ----- iterations -------------------------------------------------------------------------------
    def start_iteration(self, plugin_name: str, batch_id: str, base_model: str | None = None) -> Iteration:
        """Create the experiment of the next iteration of `plugin_name` (index = previous highest + 1)."""
        if not plugin_name or "/" in plugin_name:
            raise ValueError(f"plugin name {plugin_name!r} must be non-empty and contain no '/'")
        with self._allocation_lock():
            return self._create_next_iteration(plugin_name, batch_id, base_model)

    @contextlib.contextmanager
    def _allocation_lock(self) -> Iterator[None]:
        """Serialise "read the highest index, create the next" across processes sharing a sqlite store.

        Experiment names differ per batch, so a name clash alone cannot stop two workers on different
        batches from taking the same index; on a local store a file lock does. A tracking server has no
        shared file: there the name clash still catches workers on the same batch.
        """
        if not self.tracking_uri.startswith("sqlite:///"):
            yield
            return
        database = Path(self.tracking_uri.removeprefix("sqlite:///"))
        with _file_lock(database.with_name(database.name + ".iterations.lock")):
            yield

    def _create_next_iteration(self, plugin_name: str, batch_id: str, base_model: str | None) -> Iteration:
        from mlflow.exceptions import MlflowException

        for _attempt in range(20):
            index = max((iteration.index for iteration in self.list_iterations(plugin_name)), default=0) + 1
            name = f"{plugin_name}/batch-{batch_id}/iteration-{index}"
            tags = {
                TAG_KIND: ITERATION_KIND,
                TAG_PLUGIN: plugin_name,
                TAG_BATCH: str(batch_id),
                TAG_ITERATION: str(index),
            }
            if base_model is not None:
                tags[TAG_BASE_MODEL] = base_model
            location = None
            if self.artifact_location is not None:
                location = f"{self.artifact_location.rstrip('/')}/{uuid.uuid4().hex}"
            try:
                experiment_id = self.client.create_experiment(name, artifact_location=location, tags=tags)
            except MlflowException as error:
                if "RESOURCE_ALREADY_EXISTS" in str(error.error_code) or "already exists" in str(error):
                    continue  # another worker took this index at the same moment; take the next one
                raise
            return Iteration(experiment_id, name, plugin_name, str(batch_id), index, base_model)
        raise TrackingError(f"could not allocate an iteration index for plugin {plugin_name!r}")

    def list_iterations(self, plugin_name: str) -> list[Iteration]:
        """All iterations of a plugin, oldest first."""
        experiments = self._search_all(
            lambda token: self.client.search_experiments(
                filter_string=f"tags.`{TAG_PLUGIN}` = '{_escape(plugin_name)}'", max_results=1000, page_token=token
            )
        )
        iterations = [self._iteration_from_experiment(experiment) for experiment in experiments]
        return sorted(iterations, key=lambda iteration: iteration.index)

    def get_iteration(self, experiment_id: str) -> Iteration:
        return self._iteration_from_experiment(self.client.get_experiment(experiment_id))

    @staticmethod
    def _iteration_from_experiment(experiment: Any) -> Iteration:
        tags = experiment.tags or {}
        match = _ITERATION_NAME.match(experiment.name)
        index = int(tags.get(TAG_ITERATION) or (match.group("index") if match else 0))
        return Iteration(
            experiment_id=experiment.experiment_id,
            name=experiment.name,
            plugin_name=tags.get(TAG_PLUGIN, match.group("plugin") if match else ""),
            batch_id=tags.get(TAG_BATCH, match.group("batch") if match else ""),
            index=index,
            base_model=tags.get(TAG_BASE_MODEL),
        )

    def set_iteration_tags(self, experiment_id: str, tags: Mapping[str, str]) -> None:
        """Record facts about a finished iteration on its experiment (how its parameters were chosen, its gain),
        which later iterations read back with :meth:`get_iteration_tags`."""
        for key, value in tags.items():
            self.client.set_experiment_tag(experiment_id, key, str(value)[:MAX_TAG_VALUE_LENGTH])

    def get_iteration_tags(self, experiment_id: str) -> dict[str, str]:
        return dict(self.client.get_experiment(experiment_id).tags or {})

    def get_previous_iteration(self, plugin_name: str, before: Iteration | None = None) -> Iteration | None:
        """The latest iteration of the plugin that finished with a best run (the next one starts from it).

        An iteration counts as finished once one of its runs finished with the main metric; iterations
        that crashed before any run finished are skipped. `before` excludes that iteration and later ones.
        """
        for iteration in reversed(self.list_iterations(plugin_name)):
            if before is not None and iteration.index >= before.index:
                continue
            if self.get_best_run(iteration.experiment_id) is not None:
                return iteration
        return None

    # ----- runs -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def run(self, iteration: Iteration, params: Mapping[str, Any], run_name: str | None = None) -> Iterator[str]:
        """One parameter set's run; FINISHED on a normal exit, FAILED (or KILLED) when the block raises."""
        original = json.loads(json.dumps(dict(params), default=_json_default))
        tags = {TAG_PLUGIN: iteration.plugin_name, TAG_BATCH: iteration.batch_id, TAG_HAS_MODEL: "false"}
        params_json = json.dumps(original, sort_keys=True)
        if len(params_json) <= MAX_TAG_VALUE_LENGTH:
            tags[TAG_PARAMS_JSON] = params_json
        mlflow_run = self.client.create_run(iteration.experiment_id, tags=tags, run_name=run_name)
        run_id = mlflow_run.info.run_id
        try:
            from mlflow.entities import Param

            flat = flatten_params(original)
            self.client.log_batch(run_id, params=[Param(key, value[:6000]) for key, value in flat.items()])
            self.client.log_text(run_id, params_json, PARAMS_ARTIFACT)
        except BaseException:
            self.client.set_terminated(run_id, "FAILED")
            raise
        try:
            yield run_id
        except KeyboardInterrupt:
            self.client.set_terminated(run_id, "KILLED")
            raise
        except BaseException:
            self.client.set_terminated(run_id, "FAILED")
            raise
        self.client.set_terminated(run_id, "FINISHED")

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log several metrics at one step in a single request; non-finite values are refused by name."""
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        entries = []
        for key, value in metrics.items():
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(f"metric {key!r} of run {run_id} is {number}; only finite values are logged")
            entries.append(Metric(key, number, timestamp, step or 0))
        if entries:
            self.client.log_batch(run_id, metrics=entries)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Attach text facts to a run (e.g. why its training stopped), each cut to MLflow's tag length."""
        for key, value in tags.items():
            self.client.set_tag(run_id, key, str(value)[:MAX_TAG_VALUE_LENGTH])

    def save_model(self, run_id: str, model: TextEmbeddingModel | TextToImageEmbeddingModel) -> str:
        """Store the model as the run's `model/` artifact directory; returns its URI.

        A run's model is replaced once at most: a search refits the run it chose before registering it
        (``TrialRunner.refit_chosen_run``). This tracker's cached copy of the run's model is dropped with it."""
        with scratch_directory("model-upload-") as directory:
            model_directory = directory / MODEL_ARTIFACT_PATH
            model.save(model_directory)
            self.client.log_artifacts(run_id, str(model_directory), artifact_path=MODEL_ARTIFACT_PATH)
        shutil.rmtree(self.cache_dir / run_id, ignore_errors=True)
        self.client.set_tag(run_id, TAG_HAS_MODEL, "true")
        return self.model_url(run_id)

    def model_url(self, run_id: str) -> str:
        return f"{self.client.get_run(run_id).info.artifact_uri.rstrip('/')}/{MODEL_ARTIFACT_PATH}"

    def get_run(self, run_id: str) -> RunSummary:
        return self._summarize(self.client.get_run(run_id))

    def get_metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """(step, value) pairs in logging order."""
        history = self.client.get_metric_history(run_id, key)
        ordered = sorted(history, key=lambda metric: (metric.step, metric.timestamp))
        return [(int(metric.step), float(metric.value)) for metric in ordered]

    # ----- selection --------------------------------------------------------------------------------
    def list_runs(self, experiment_id: str) -> list[RunSummary]:
        runs = self._search_all(
            lambda token: self.client.search_runs([experiment_id], max_results=1000, page_token=token)
        )
        return [self._summarize(run) for run in runs]

    def ranked_runs(self, experiment_id: str) -> list[RunSummary]:
        """Finished runs that logged the main metric, best first."""
        candidates = [
            run
            for run in self.list_runs(experiment_id)
            if run.status == "FINISHED" and math.isfinite(run.metrics.get(self.main_metric, math.nan))
        ]
        sign = -1.0 if self.higher_is_better else 1.0
        return sorted(candidates, key=lambda run: (sign * run.metrics[self.main_metric], run.start_time))

    def get_best_run(self, experiment_id: str) -> RunSummary | None:
        ranked = self.ranked_runs(experiment_id)
        return ranked[0] if ranked else None

    def outranking_run(self, experiment_id: str, metrics: Mapping[str, float]) -> RunSummary | None:
        """A finished run strictly ahead of a run that would log ``metrics``: with it in the experiment, such a run
        can never be :meth:`get_best_run`, whatever else finishes (runs only get added before the choice). None
        when no finished run is ahead, or ``metrics`` lack the main metric."""
        value = metrics.get(self.main_metric)
        if value is None or not math.isfinite(value):
            return None
        ranked = self.ranked_runs(experiment_id)
        if not ranked:
            return None
        best = ranked[0].metrics[self.main_metric]
        ahead = best > value if self.higher_is_better else best < value
        return ranked[0] if ahead else None

    def get_top_params(self, experiment_id: str, n: int) -> list[dict[str, Any]]:
        """The params (with their original JSON types) of the `n` best runs, best first."""
        if n < 0:
            raise ValueError(f"n must be at least 0, got {n}")
        return [run.params for run in self.ranked_runs(experiment_id)[:n]]

    # ----- models -----------------------------------------------------------------------------------
    def download_model(
        self, run_id: str, device: str | Any | None = None
    ) -> TextEmbeddingModel | TextToImageEmbeddingModel:
        """The run's model, downloaded once into the local cache and loaded through `load_embedding_model`."""
        from embedding_studio.models import ModelNotFoundError, load_embedding_model

        target = self.cache_dir / run_id / MODEL_ARTIFACT_PATH
        if not target.is_dir():
            summary = self.get_run(run_id)
            if not summary.has_model:
                raise ModelNotFoundError(
                    f"run {run_id} has no model artifact (never saved, or deleted as a non-best run)"
                )
            staging = self.cache_dir / f".{run_id}.downloading-{uuid.uuid4().hex}"
            staging.mkdir(parents=True)
            try:
                self.client.download_artifacts(run_id, MODEL_ARTIFACT_PATH, dst_path=str(staging))
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    (staging / MODEL_ARTIFACT_PATH).rename(target)
                except OSError:
                    if not target.is_dir():  # another process finished the same download first: use theirs
                        raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return load_embedding_model(target, device=device)

    def delete_non_best_models(self, experiment_id: str) -> list[str]:
        """Delete the model artifacts of every ended run but the best; params and metrics stay.

        Runs still in progress (another worker's trial) keep their files. Returns the run ids cleaned.
        """
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        best = self.get_best_run(experiment_id)
        if best is None:
            return []
        deleted = []
        for run in self.list_runs(experiment_id):
            if run.run_id == best.run_id or run.status == "RUNNING" or not run.has_model:
                continue
            local_root = _local_path(run.artifact_uri)
            if local_root is not None:
                shutil.rmtree(local_root / MODEL_ARTIFACT_PATH, ignore_errors=True)
            else:
                get_artifact_repository(run.artifact_uri).delete_artifacts(MODEL_ARTIFACT_PATH)
            self.client.set_tag(run.run_id, TAG_HAS_MODEL, "false")
            shutil.rmtree(self.cache_dir / run.run_id, ignore_errors=True)
            deleted.append(run.run_id)
        return deleted

    def register_best(self, run_id: str, name: str, alias: str) -> str:
        """Register the run's model as a new version of `name` and point `alias` at it; returns the version."""
        from mlflow.exceptions import MlflowException

        if not self.get_run(run_id).has_model:
            raise TrackingError(f"run {run_id} has no model artifact to register")
        try:
            self.client.create_registered_model(name)
        except MlflowException as error:
            if "RESOURCE_ALREADY_EXISTS" not in str(error.error_code) and "already exists" not in str(error):
                raise
        version = self.client.create_model_version(
            name, source=self.model_url(run_id), run_id=run_id, await_creation_for=0
        )
        self.client.set_registered_model_alias(name, alias, version.version)
        return str(version.version)

    def get_registered_run_id(self, name: str, alias: str) -> str:
        """The run behind the version `alias` points to."""
        version = self.client.get_model_version_by_alias(name, alias)
        if version.run_id is None:
            raise TrackingError(f"model {name!r} alias {alias!r} has no run behind it")
        return str(version.run_id)

    # ----- helpers ----------------------------------------------------------------------------------
    def _summarize(self, run: Run) -> RunSummary:
        tags = dict(run.data.tags)
        params_json = tags.get(TAG_PARAMS_JSON)
        if params_json is not None:
            params = json.loads(params_json)
        else:
            params = self._params_from_artifact(run)
        return RunSummary(
            run_id=run.info.run_id,
            experiment_id=run.info.experiment_id,
            status=run.info.status,
            params=params,
            metrics=dict(run.data.metrics),
            artifact_uri=run.info.artifact_uri,
            has_model=tags.get(TAG_HAS_MODEL) == "true",
            start_time=int(run.info.start_time or 0),
            tags=tags,
        )

    def _params_from_artifact(self, run: Run) -> dict[str, Any]:
        """Params too long for a tag live in params.json; runs made elsewhere fall back to MLflow's strings."""
        with contextlib.suppress(Exception):
            from mlflow.artifacts import load_text

            return json.loads(load_text(f"{run.info.artifact_uri.rstrip('/')}/{PARAMS_ARTIFACT}"))
        return dict(run.data.params)

    @staticmethod
    def _search_all(search: Any) -> list[Any]:
        results: list[Any] = []
        token = None
        while True:
            page = search(token)
            results.extend(page)
            token = page.token
            if not token:
                return results


def _escape(value: str) -> str:
    return value.replace("'", "\\'")


def _json_default(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return sorted(value)
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"parameter value {value!r} of type {type(value).__name__} cannot be stored as JSON")
