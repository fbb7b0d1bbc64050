"""`embedding-studio demo`: the whole loop, on real public data, on a laptop with nothing installed.

It runs the product as a user would, never a shortcut around it: an embedded PostgreSQL and a local
MLflow store in a data directory, the HTTP API (`serve`) and a worker (`worker`) as separate processes,
the catalog indexed by a reindex task, simulated users searching and clicking through the HTTP API,
a released batch, a fine-tuning task with `deploy_as_blue`, its reindex and the blue flip. Quality is
measured the way a user sees it: held-out queries sent to the search endpoint before and after, scored
against the dataset's graded relevance judgments.

The simulated users click with a position-based click model over what search showed them, so the
clickstream carries the same position bias real clicks do. On a dataset with its own training split
(NFCorpus, the default: ``data/nfcorpus`` in the repository) users search the training queries and click
by the training judgments, and the dataset's test queries are the held-out ones, scored by the test
judgments: no held-out query or judgment is ever seen by the clickstream. The change in NDCG@10 comes with
a 95% paired bootstrap interval over the held-out queries, because a few hundred queries cannot tell a
small gain from noise without one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import httpx
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from embedding_studio.cli.errors import UserFacingError, ensure_writable_directory
from embedding_studio.evaluation import (
    BeirDataset,
    BootstrapInterval,
    DatasetError,
    PositionBasedClickModel,
    QuerySplit,
    RetrievalEvaluation,
    evaluate_rankings,
    load_beir_dataset,
    sampled_split,
)

if TYPE_CHECKING:
    from embedding_studio.reporting import HeldOutComparison

# Data the repository carries at its root, outside the installed package (NFCorpus: academic, non-commercial
# use, so it is not shipped); a pip-installed package has no such folder and takes --data PATH instead.
REPO_DATA_DIR = Path(__file__).resolve().parents[2] / "data"
# The small slices shipped inside the package (the benchmarks' and tests' msmarco and dbpedia).
DEMO_DATA_DIR = Path(__file__).resolve().parent / "demo_data"
DEFAULT_DATASET = "nfcorpus"
DEMO_METHOD = "demo_text"
PROFILE_ENV = "EMBEDDING_STUDIO_DEMO_PROFILE"
SEED_ENV = "EMBEDDING_STUDIO_DEMO_SEED"
EVALUATION_USER = "demo-evaluation"
EVALUATION_DEPTH = 100  # Recall@100 needs the top 100
SHOWN_RESULTS = 10


@dataclass(frozen=True)
class DemoProfile:
    """How much of everything the demo does; `quick` trades statistical weight for time, never realism.

    The sizes are set by wall time on 2 CPU cores, where encoding dominates: the catalog is encoded twice (the
    base index and the reindex after the flip, at the model's 256 tokens, about 1.7 parts per NFCorpus item),
    the validation pool once per validation (three in one epoch: the baseline, the epoch's end and half the
    change), and every clicked training session once per epoch."""

    name: str
    max_catalog_items: int | None  # None: the whole catalog; else BeirDataset.relevant_first
    train_queries: int | None  # training queries users search (a seeded sample); None: all of them
    sessions_per_query: int
    test_queries: int | None  # held-out queries scored before and after (a seeded sample); None: all
    max_evals: int  # trials; the first is always the default recipe (default_text's own parameters)
    num_epochs: int
    validation_pool_size: int  # catalog items sampled as the retrieval validation's distractors
    test_share: float = 0.2  # datasets without their own training split: the share of queries held out


# Sized on NFCorpus (3,633 long medical abstracts, 2,590 training and 323 test queries) by wall time on 2 CPU cores,
# where encoding dominates. quick on an idle machine: 103 s (index 16 s, 2,000 sessions 24 s, fine-tuning 36 s,
# reindex 10 s); 247 s with another CPU-bound job on the same 2 cores. full: 346 s with that job running. Both
# train one trial of the default_text recipe for one epoch; README.md ("make demo") has the gains and the seeds.
PROFILES = {
    "quick": DemoProfile("quick", max_catalog_items=150, train_queries=500, sessions_per_query=4,
                         test_queries=None, max_evals=1, num_epochs=1, validation_pool_size=150),
    "full": DemoProfile("full", max_catalog_items=300, train_queries=1000, sessions_per_query=5,
                        test_queries=None, max_evals=1, num_epochs=1, validation_pool_size=300),
}


def create_demo_plugin(settings: Any = None, **overrides: Any) -> Any:
    """The demo's fine-tuning method: ``default_text``, recipe and all, with the budget of the demo's profile.

    Only the budget differs (trials, epochs, validation pool size) and the seed (the demo's --seed): the loss,
    batch size, learning rate, negatives and every other fixed parameter are default_text's, so the demo shows
    what the shipped method does and follows it when its recipe changes. Registered as the ``demo_text`` entry
    point; the worker reads the profile from EMBEDDING_STUDIO_DEMO_PROFILE, which the demo sets. It is also the
    smallest example of a method plugin (see docs/plugins.md).
    """
    from embedding_studio.finetuning.plugins.default_text import create_plugin

    profile = PROFILES.get(os.environ.get(PROFILE_ENV, "full"), PROFILES["full"])
    seed = int(os.environ.get(SEED_ENV, "0"))
    default = create_plugin(settings)
    fields: dict[str, Any] = {
        "name": DEMO_METHOD,
        "max_evals": profile.max_evals,
        "num_epochs": profile.num_epochs,
        "validation_pool_size": profile.validation_pool_size,
        # The demo's --seed (EMBEDDING_STUDIO_DEMO_SEED) also seeds the session split, the validation pool and the
        # training order and initialisation, so one seed always gives the same model.
        "split_seed": seed,
        "validation_pool_seed": seed,
        "fixed_params": {**default.fixed_params, "seed": seed},
    }
    fields.update(overrides)
    return create_plugin(settings, **fields)


@dataclass
class DemoOptions:
    quick: bool = False
    dataset: str = DEFAULT_DATASET  # a name in data/ or the package's demo_data, or a BEIR folder's path
    data_dir: Path | None = None
    port: int | None = None
    reuse: bool = False
    seed: int = 0
    keep_serving: bool = False


@dataclass
class DemoResult:
    task_id: str
    batch_id: int
    before: dict[str, float]
    after: dict[str, float]
    report_path: Path
    data_dir: Path
    mlflow_uri: str
    api_url: str
    blue_model_id: str
    sessions: int
    clicks: int
    kept_untrained_weights: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    deployed: bool = True  # False: the deployment gate kept blue (the fine-tuned model did not beat it)
    deployment_reason: str | None = None
    # The NDCG@10 change (after − before) with its 95% paired bootstrap interval over the held-out queries.
    ndcg_change: BootstrapInterval | None = None
    held_out_queries: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "batch_id": self.batch_id,
            "before": self.before,
            "after": self.after,
            "report": str(self.report_path),
            "data_dir": str(self.data_dir),
            "mlflow_uri": self.mlflow_uri,
            "blue_model_id": self.blue_model_id,
            "sessions": self.sessions,
            "clicks": self.clicks,
            "kept_untrained_weights": self.kept_untrained_weights,
            "deployed": self.deployed,
            "deployment_reason": self.deployment_reason,
            "held_out_queries": self.held_out_queries,
            "ndcg@10_change": None if self.ndcg_change is None else interval_summary(self.ndcg_change),
            "timings_s": self.timings,
        }


def interval_summary(interval: BootstrapInterval) -> dict[str, float]:
    """A bootstrap interval as JSON: the mean change and the bounds of its confidence interval."""
    return {
        "mean": interval.mean_difference,
        "low": interval.low,
        "high": interval.high,
        "confidence": interval.confidence,
        "samples": interval.samples,
    }



# ------------------------------------------------------------------------------------------- data


def _datasets_in(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(child.name for child in folder.iterdir() if (child / "corpus.jsonl").is_file())


def resolve_dataset(name_or_path: str) -> Path:
    """A dataset by name (``nfcorpus`` in the repository's data/, msmarco and dbpedia in the package) or any
    BEIR-layout folder by path."""
    if "/" not in name_or_path:
        for folder in (REPO_DATA_DIR, DEMO_DATA_DIR):
            if (folder / name_or_path / "corpus.jsonl").is_file():
                return folder / name_or_path
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    names = sorted({*_datasets_in(REPO_DATA_DIR), *_datasets_in(DEMO_DATA_DIR)})
    hint = ""
    if name_or_path == DEFAULT_DATASET:
        hint = (f" ({DEFAULT_DATASET} comes with the repository checkout, in data/{DEFAULT_DATASET}, not with an "
                "installed package: run the demo from a checkout or pass --data PATH)")
    raise DatasetError(
        f"no dataset {name_or_path!r}{hint}: use one of {', '.join(names)} or --data with the path of a BEIR folder"
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


# ----------------------------------------------------------------------------------------- services


def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def stop_stale_postgres(pgdata: Path, timeout_s: float = 30.0) -> None:
    """Stop a server a previous demo left running in ``pgdata`` before its files are removed."""
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.is_file():
        return
    import psutil

    try:
        pid = int(pid_file.read_text().splitlines()[0])
        process = psutil.Process(pid)
        if "postgres" not in process.name():
            return
        process.send_signal(signal.SIGINT)  # PostgreSQL's "fast" shutdown
        process.wait(timeout_s)
    except (ValueError, IndexError, psutil.NoSuchProcess, psutil.TimeoutExpired):
        return


def _die_with_parent() -> None:
    """A demo killed outright (SIGKILL, OOM) must not leave its API and worker running (Linux only)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


@contextmanager
def _terminate_gracefully() -> Iterator[None]:
    """SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the servers the demo started are stopped."""

    def raise_interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, raise_interrupt)
    except ValueError:  # not the main thread: leave signal handling alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class DemoServices:
    """PostgreSQL (embedded), the API and a worker, all in one data directory; stopped together."""

    def __init__(self, data_dir: Path, port: int, profile: DemoProfile, catalog_path: Path, seed: int = 0) -> None:
        self.data_dir = data_dir
        self.seed = seed
        self.port = port
        self.profile = profile
        self.catalog_path = catalog_path
        self.logs_dir = data_dir / "logs"
        self.api_url = f"http://127.0.0.1:{port}"
        self._server: Any = None
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._log_handles: list[TextIO] = []
        self.environment: dict[str, str] = {}

    @property
    def mlflow_uri(self) -> str:
        return f"sqlite:///{(self.data_dir / 'mlflow.db').as_posix()}"

    def start_database(self) -> str:
        from embedding_studio.db.embedded import open_embedded_server
        from embedding_studio.db.engine import normalize_database_url

        pgdata = self.data_dir / "pgdata"
        try:
            self._server = open_embedded_server(pgdata, cleanup_mode="stop")
        except Exception as error:  # the wheel raises plain exceptions with the postgres log inside
            raise UserFacingError(f"could not start the embedded PostgreSQL in {pgdata}: {error}") from error
        url = normalize_database_url(self._server.get_uri())
        self.environment = {
            "DATABASE_URL": url,
            "EMBEDDING_STUDIO_DATA_DIR": str(self.data_dir),
            "EMBEDDING_STUDIO_CATALOG_LOADER": "jsonl_catalog",
            "EMBEDDING_STUDIO_CATALOG_LOADER_OPTIONS": json.dumps({"path": str(self.catalog_path)}),
            "EMBEDDING_STUDIO_API_KEYS": "[]",
            PROFILE_ENV: self.profile.name,
            SEED_ENV: str(self.seed),
            "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        # This process reads the same settings (the tracker for the report) as the API and the worker.
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        os.environ.pop("EMBEDDING_STUDIO_MLFLOW_TRACKING_URI", None)
        os.environ.update(self.environment)
        from embedding_studio.config import reset_settings
        from embedding_studio.db import dispose_engine, upgrade_database

        reset_settings()
        dispose_engine()
        upgrade_database()  # once here, so the API and the worker start on a migrated schema
        return url

    def _child_environment(self) -> dict[str, str]:
        environment = {key: value for key, value in os.environ.items()
                       if key not in ("MLFLOW_TRACKING_URI", "EMBEDDING_STUDIO_MLFLOW_TRACKING_URI")}
        environment.update(self.environment)
        return environment

    def _spawn(self, name: str, arguments: Sequence[str]) -> subprocess.Popen[bytes]:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log = (self.logs_dir / f"{name}.log").open("w", encoding="utf-8")
        self._log_handles.append(log)
        process = subprocess.Popen(
            [sys.executable, "-m", "embedding_studio.cli.main", *arguments],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self._child_environment(),
            start_new_session=True,  # Ctrl-C in the terminal reaches the demo, which stops its children itself
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self._processes[name] = process
        return process

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.logs_dir / f"{name}.log"
        if not path.is_file():
            return ""
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    def check_alive(self) -> None:
        for name, process in self._processes.items():
            if process.poll() is not None:
                raise UserFacingError(
                    f"the demo's {name} process stopped (exit code {process.returncode}); its log "
                    f"{self.logs_dir / (name + '.log')} ends with:\n{self.log_tail(name)}"
                )

    def start_api(self, timeout_s: float = 120.0) -> None:
        self._spawn("api", ["serve", "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise UserFacingError(f"the API did not answer on {self.api_url} within {timeout_s:.0f} s; "
                              f"see {self.logs_dir / 'api.log'}")

    def start_worker(self) -> None:
        self._spawn("worker", ["worker"])

    def stop(self) -> None:
        for process in self._processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in self._processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self._processes.clear()
        for handle in self._log_handles:
            handle.close()
        self._log_handles.clear()
        from embedding_studio.db import dispose_engine

        dispose_engine()
        if self._server is not None:
            self._server.cleanup()
            self._server = None


# ------------------------------------------------------------------------------------------ the API


class DemoApi:
    """The HTTP calls the demo makes, through the Python client where it has them."""

    def __init__(self, base_url: str) -> None:
        from embedding_studio.client import EmbeddingStudioClient

        self.http = httpx.Client(base_url=base_url, timeout=60.0)
        self.client = EmbeddingStudioClient(base_url, http_client=self.http)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, path, json=body)
        if not response.is_success:
            raise UserFacingError(f"{method} {path} answered {response.status_code}: {response.text[:500]}")
        return response.json()

    def search(self, query: str, limit: int, user_id: str) -> dict[str, Any]:
        return self._call("POST", "/api/v1/search", {"query": query, "limit": limit, "user_id": user_id})

    def create_reindex_task(self, body: dict[str, Any]) -> str:
        return str(self._call("POST", "/api/v1/reindex/tasks", body)["id"])

    def create_fine_tuning_task(self, body: dict[str, Any]) -> str:
        return str(self._call("POST", "/api/v1/fine-tuning/tasks", body)["id"])

    def get_task(self, kind: str, task_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/{kind}/tasks/{task_id}")

    def models(self) -> dict[str, Any]:
        return self._call("GET", "/api/v1/models")

    def close(self) -> None:
        self.client.close()


# -------------------------------------------------------------------------------------------- steps


FINAL_STATUSES = {"done", "failed", "canceled", "refused"}


def follow_task(
    api: DemoApi,
    services: DemoServices,
    kind: str,
    task_id: str,
    update: Callable[[float, str], None],
    timeout_s: float = 1800.0,
) -> dict[str, Any]:
    """Poll a task until it ends; a failed task or a dead worker becomes one clear error."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        task = api.get_task(kind, task_id)
        update(float(task.get("progress") or 0.0), task.get("progress_message") or task["status"])
        if task["status"] == "done":
            return task
        if task["status"] in FINAL_STATUSES:
            raise UserFacingError(
                f"{kind} task {task_id} ended {task['status']}: {task.get('error') or 'no reason given'}. "
                f"Worker log: {services.logs_dir / 'worker.log'}"
            )
        services.check_alive()
        time.sleep(0.5)
    raise UserFacingError(f"{kind} task {task_id} did not finish within {timeout_s:.0f} s")


def measure(api: DemoApi, catalog: BeirDataset, query_ids: Sequence[str]) -> RetrievalEvaluation:
    """Held-out quality as users get it: the search endpoint's top 100, scored against the judgments.

    A few searches at a time, as the simulated users search: a few hundred held-out queries one after another
    would leave the API idle between requests for a tenth of the quick profile's wall time."""

    def ranking(query_id: str) -> list[str]:
        answer = api.search(catalog.queries[query_id], EVALUATION_DEPTH, EVALUATION_USER)
        return [result["item_id"] for result in answer["results"]]

    with ThreadPoolExecutor(max_workers=4) as pool:
        rankings = dict(zip(query_ids, pool.map(ranking, query_ids), strict=True))
    return evaluate_rankings(rankings, catalog, query_ids)


def play_sessions(
    api: DemoApi,
    catalog: BeirDataset,
    query_ids: Sequence[str],
    sessions_per_query: int,
    seed: int,
    advance: Callable[[], None],
) -> tuple[int, int]:
    """Users search through the API and click what the click model draws; returns (sessions, clicks).

    Clicks follow the training judgments (``BeirDataset.training_judgments``): on a dataset with its own split,
    the test judgments the figures are scored against never shape a click."""
    click_model = PositionBasedClickModel(max_grade=max(1, catalog.max_grade), seed=seed)
    plans = [(query_id, number) for query_id in query_ids for number in range(sessions_per_query)]
    random.Random(seed).shuffle(plans)  # interleave queries, as real traffic does

    def one_session(plan: tuple[str, int]) -> list[str]:
        query_id, number = plan
        answer = api.search(catalog.queries[query_id], SHOWN_RESULTS, f"demo-user-{number}")
        shown = [result["item_id"] for result in answer["results"]]
        return [answer["session_id"], *shown]

    clicks = 0
    with ThreadPoolExecutor(max_workers=4) as pool:
        searches = list(pool.map(one_session, plans))
        # Clicks are drawn in one thread, in plan order, so a seed always gives the same clickstream.
        click_plans = []
        for (query_id, _), (session_id, *shown) in zip(plans, searches, strict=True):
            clicked = click_model.simulate(shown, catalog.training_judgments(query_id))
            if clicked:
                click_plans.append((session_id, clicked))
            clicks += len(clicked)

        def post_clicks(plan: tuple[str, list[str]]) -> None:
            session_id, clicked = plan
            api.client.add_events(
                session_id,
                [{"event_id": f"{session_id}:click:{item_id}", "item_id": item_id, "event_type": "click"}
                 for item_id in clicked],
            )

        for _ in pool.map(post_clicks, click_plans):
            pass
        for _ in plans:
            advance()
    return len(plans), clicks


@contextmanager
def _step(progress: Progress, description: str, total: float | None = 100.0) -> Iterator[Any]:
    step = progress.add_task(description, total=total)
    started = time.monotonic()
    yield step
    progress.update(step, completed=total if total is not None else 1, total=total or 1)
    progress.update(step, description=f"{description} [dim]({time.monotonic() - started:.0f} s)[/dim]")
    if not progress.console.is_terminal:  # CI logs get one line per step instead of a live display
        progress.console.print(f"done: {description} ({time.monotonic() - started:.0f} s)")


def run_demo(options: DemoOptions, console: Console | None = None) -> DemoResult:
    """Run the whole loop; returns the before/after figures and where everything was written."""
    from embedding_studio.cli.serve import ensure_port_is_free
    from embedding_studio.config import get_settings
    from embedding_studio.reporting.collect import compare_evaluations

    console = console or Console()
    profile = PROFILES["quick" if options.quick else "full"]
    started = time.monotonic()
    timings: dict[str, float] = {}

    # Preflight: everything a newcomer can get wrong fails here, before any server starts.
    dataset = load_beir_dataset(resolve_dataset(options.dataset))
    data_dir = options.data_dir or (get_settings().data_dir / "demo")
    data_dir = ensure_writable_directory(Path(data_dir).expanduser().resolve())
    port = options.port if options.port is not None else free_port()
    ensure_port_is_free("127.0.0.1", port)
    base_model = _check_base_model()
    if os.environ.get("DATABASE_URL") or os.environ.get("MLFLOW_TRACKING_URI"):
        console.print("[yellow]The demo uses its own embedded PostgreSQL and MLflow store in the data directory; "
                       "DATABASE_URL / MLFLOW_TRACKING_URI are left alone.[/yellow]")

    if not options.reuse:
        stop_stale_postgres(data_dir / "pgdata")
        for child in ("pgdata", "mlflow.db", "mlartifacts", "model-cache", "reports", "logs", "catalog"):
            target = data_dir / child
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()

    catalog = demo_catalog(dataset, profile, options.seed)
    split = demo_split(catalog, profile, options.seed)
    catalog_path = write_catalog(catalog, data_dir / "catalog" / "corpus.jsonl")
    held_out_source = "its own test queries" if catalog.has_train_split else "a random share of its queries"
    console.print(
        f"[bold]Embedding Studio demo[/bold] ({profile.name}): {catalog.name}, {len(catalog.corpus):,} items, "
        f"{len(split.train)} training queries, {len(split.test)} held-out queries ({held_out_source}), "
        f"base model {base_model}\ndata directory: {data_dir}"
    )

    services = DemoServices(data_dir, port, profile, catalog_path, options.seed)
    api: DemoApi | None = None
    stack = ExitStack()
    stack.enter_context(_terminate_gracefully())
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
               TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            with _step(progress, "starting PostgreSQL, the API and a worker", total=3) as step:
                services.start_database()
                progress.advance(step)
                services.start_worker()
                services.start_api()
                progress.advance(step, 2)
                api = DemoApi(services.api_url)
            timings["start"] = time.monotonic() - started

            mark = time.monotonic()
            with _step(progress, f"indexing {len(catalog.corpus):,} items with {base_model}") as step:
                task_id = api.create_reindex_task({
                    "dest_model_id": base_model,
                    "deploy_as_blue": True,
                    "loader": {"name": "jsonl_catalog", "options": {"path": str(catalog_path)}},
                })
                follow_task(api, services, "reindex", task_id,
                            lambda fraction, _: progress.update(step, completed=100 * fraction))
            timings["index"] = time.monotonic() - mark

            mark = time.monotonic()
            with _step(progress, f"searching {len(split.test)} held-out queries (before)", total=1):
                before = measure(api, catalog, split.test)
                api.client.release_batch()  # evaluation searches are never trained on
            timings["measure_before"] = time.monotonic() - mark

            mark = time.monotonic()
            planned = len(split.train) * profile.sessions_per_query
            with _step(progress, f"users search and click: {planned} sessions", total=planned) as step:
                sessions, clicks = play_sessions(api, catalog, split.train, profile.sessions_per_query,
                                                 options.seed, lambda: progress.advance(step))
                batch_id = int(api.client.release_batch().released_batch_id)
            timings["sessions"] = time.monotonic() - mark

            mark = time.monotonic()
            with _step(progress, "fine-tuning on the clicks") as step:
                fine_tuning_id = api.create_fine_tuning_task(
                    {"batch_id": batch_id, "method": DEMO_METHOD, "deploy_as_blue": True}
                )
                fine_tuning = follow_task(
                    api, services, "fine-tuning", fine_tuning_id,
                    lambda fraction, message: progress.update(
                        step, completed=100 * fraction, description=f"fine-tuning on the clicks: {message}"
                    ),
                )
                progress.update(step, description="fine-tuning on the clicks")
            timings["fine_tune"] = time.monotonic() - mark

            mark = time.monotonic()
            result = fine_tuning.get("result") or {}
            best_run_id = fine_tuning.get("best_run_id") or ""
            kept_untrained = best_run_kept_untrained_weights(result.get("experiment_id"), best_run_id)
            deployed, deployment_reason = deployment_outcome(result)
            blue_model_id = best_run_id
            if not deployed:
                # The gate kept blue: no reindex, search is unchanged, so "after" is what users get now: before.
                blue_model_id = str(api.models().get("blue_model_id") or base_model)
                progress.console.print(f"[bold yellow]{escape(deployment_reason or 'not deployed')}[/bold yellow]: "
                                       f"search keeps answering from {blue_model_id}")
                after = before
            else:
                reindex_id = result.get("reindex_task_id")
                if not reindex_id:
                    raise UserFacingError(f"fine-tuning task {fine_tuning_id} finished without a reindex task")
                with _step(progress, "re-indexing with the fine-tuned model, then the blue flip") as step:
                    follow_task(api, services, "reindex", str(reindex_id),
                                lambda fraction, _: progress.update(step, completed=100 * fraction))
                    blue = api.models().get("blue_model_id")
                    if blue != best_run_id:
                        raise UserFacingError(
                            f"search answers from {blue!r}, not the fine-tuned model {best_run_id!r}"
                        )
                timings["reindex"] = time.monotonic() - mark

                mark = time.monotonic()
                with _step(progress, f"searching {len(split.test)} held-out queries (after)", total=1):
                    after = measure(api, catalog, split.test)
                timings["measure_after"] = time.monotonic() - mark

            with _step(progress, "writing the report", total=1):
                held_out = compare_evaluations(before, after, catalog, bootstrap_seed=options.seed)
                report_path = _write_demo_report(
                    catalog, held_out, fine_tuning, base_model, batch_id, sessions, clicks, split, data_dir,
                    profile, kept_untrained,
                )
        timings["total"] = time.monotonic() - started
        demo = DemoResult(
            task_id=fine_tuning_id, batch_id=batch_id, before=before.metrics, after=after.metrics,
            report_path=report_path, data_dir=data_dir, mlflow_uri=services.mlflow_uri, api_url=services.api_url,
            blue_model_id=blue_model_id, sessions=sessions, clicks=clicks, kept_untrained_weights=kept_untrained,
            timings=timings, deployed=deployed, deployment_reason=deployment_reason,
            ndcg_change=held_out.ndcg_change, held_out_queries=held_out.query_count,
        )
        (data_dir / "demo-summary.json").write_text(json.dumps(demo.summary(), indent=1), encoding="utf-8")
        print_outcome(console, demo, options.keep_serving)
        if options.keep_serving:
            _serve_until_interrupted(console, services)
        return demo
    finally:
        if api is not None:
            api.close()
        services.stop()
        stack.close()


def _check_base_model() -> str:
    """The base model must load without a hub: a missing path or an absent GPU fails here, in one line."""
    from embedding_studio.config import get_settings
    from embedding_studio.models.device import resolve_device
    from embedding_studio.models.errors import ModelNotFoundError
    from embedding_studio.models.loading import packaged_model_path

    settings = get_settings()
    resolve_device(settings.device)
    name = settings.base_model
    if packaged_model_path(name) is None:
        directory = Path(name).expanduser()
        if not ((directory / "modules.json").is_file() or (directory / "embedding_studio.json").is_file()):
            raise ModelNotFoundError(
                f"no embedding model at {name!r} (EMBEDDING_STUDIO_BASE_MODEL)"
                + ("" if directory.exists() else ": that path does not exist")
            )
    return name


def kept_untrained(selection_history: Sequence[tuple[int, float]]) -> bool:
    """Whether training left the untrained weights in place.

    The fine-tuner keeps the weights of the validation with the highest val_ndcg_at_10, the baseline
    validation (step 0, before any training step) included; the baseline staying the best means the
    "fine-tuned" model is the base model under a new name."""
    if not selection_history:
        return False
    baseline = [value for step, value in selection_history if step == 0]
    trained = [value for step, value in selection_history if step > 0]
    return bool(baseline) and (not trained or max(trained) <= baseline[0])


def deployment_outcome(fine_tuning_result: dict[str, Any]) -> tuple[bool, str | None]:
    """Whether the deployment gate sent the fine-tuned model out (``result.deployment``), and its reason.

    A result without a verdict (a server from before the gate) was always deployed."""
    deployment = fine_tuning_result.get("deployment")
    if not isinstance(deployment, dict):
        return True, None
    return bool(deployment.get("deployed", True)), deployment.get("reason")


def best_run_kept_untrained_weights(experiment_id: Any, best_run_id: str) -> bool:
    """Reads the best run's val_ndcg_at_10 history from the tracker (see :func:`kept_untrained`)."""
    if not experiment_id or not best_run_id:
        return False
    from embedding_studio.tracking import ExperimentsManager

    return kept_untrained(ExperimentsManager().get_metric_history(best_run_id, "val_ndcg_at_10"))


def _write_demo_report(
    catalog: BeirDataset,
    held_out: HeldOutComparison,
    fine_tuning: dict[str, Any],
    base_model: str,
    batch_id: int,
    sessions: int,
    clicks: int,
    split: QuerySplit,
    data_dir: Path,
    profile: DemoProfile,
    kept_untrained: bool,
) -> Path:
    from embedding_studio.reporting import DeploymentOutcome, ReportData, write_report
    from embedding_studio.reporting.collect import collect_trials
    from embedding_studio.tracking import ExperimentsManager

    result = fine_tuning.get("result") or {}
    experiment_id = result.get("experiment_id")
    best_run_id = fine_tuning.get("best_run_id")
    trials = collect_trials(ExperimentsManager(), str(experiment_id), best_run_id) if experiment_id else []
    details_note = (
        {"model kept": "the untrained weights: no validation after training beat the base model's val NDCG@10"}
        if kept_untrained else {}
    )
    data = ReportData(
        title=f"Fine-tuning task {fine_tuning['id']}: {catalog.name} demo",
        task_id=str(fine_tuning["id"]),
        experiment_id=str(experiment_id) if experiment_id else None,
        best_run_id=best_run_id,
        details={
            "dataset": f"{catalog.name} ({len(catalog.corpus):,} items)",
            "clickstream": f"batch {batch_id}: {sessions} sessions, {clicks} clicks on {len(split.train)} "
                           "training queries",
            "held-out queries": (f"{len(split.test)}: the dataset's own test queries" if catalog.has_train_split
                                 else f"{len(split.test)}: a random share of the queries, never searched by users"),
            "base model": base_model,
            "profile": f"{profile.name}: {profile.max_evals} trial(s) of {DEMO_METHOD} (default_text's recipe), "
                       f"{profile.num_epochs} epoch(s)",
            **details_note,
        },
        trials=trials,
        held_out=held_out,
        deployment=DeploymentOutcome.of_task_result(result),
    )
    return write_report(data, data_dir / "reports" / f"task-{fine_tuning['id']}.html")


def print_outcome(console: Console, demo: DemoResult, keep_serving: bool) -> None:
    queries = f" ({demo.held_out_queries})" if demo.held_out_queries else ""
    table = Table(title=f"Held-out queries{queries}: search before and after fine-tuning on clicks")
    table.add_column("metric")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    table.add_column("change", justify="right")
    interval = demo.ndcg_change
    if interval is not None:
        table.add_column(f"{interval.confidence:.0%} interval", justify="right")
    for key, label in (("ndcg@10", "NDCG@10"), ("mrr@10", "MRR@10"), ("recall@100", "Recall@100")):
        change = demo.after[key] - demo.before[key]
        colour = "green" if change > 0 else "red" if change < 0 else "white"
        row = [label, f"{demo.before[key]:.4f}", f"{demo.after[key]:.4f}", f"[{colour}]{change:+.4f}[/{colour}]"]
        if interval is not None:
            row.append(escape(f"[{interval.low:+.4f}, {interval.high:+.4f}]") if key == "ndcg@10" else "")
        table.add_row(*row)
    console.print(table)
    if interval is not None:
        verdict = (
            "above zero: the gain is not explained by which queries were asked" if interval.low > 0.0
            else "below zero: search got worse on these queries" if interval.high < 0.0
            else "includes zero: these queries cannot tell the change from noise"
        )
        console.print(escape(
            f"NDCG@10 change {interval.mean_difference:+.4f}, {interval.confidence:.0%} interval "
            f"[{interval.low:+.4f}, {interval.high:+.4f}] (paired bootstrap over the held-out queries): {verdict}."
        ))
    if demo.kept_untrained_weights and demo.deployed:
        console.print(
            "[bold yellow]Training did not beat the untrained model on the validation sessions (its val NDCG@10 "
            f"never rose above the base model's), so model {demo.blue_model_id} carries the base model's weights "
            "unchanged: the figures after are the base model's.[/bold yellow] More sessions per query, another "
            "--seed or the full profile give the optimizer more to learn from."
        )
    if not demo.deployed:
        console.print(
            f"[bold yellow]The fine-tuned model was {escape(demo.deployment_reason or 'not deployed')}."
            f"[/bold yellow] Search still answers from {demo.blue_model_id}, so the figures after are unchanged. "
            "More sessions per query, another --seed or the full profile give training more to learn from."
        )
    console.print(f"done in {demo.timings.get('total', 0):.0f} s; fine-tuning task {demo.task_id}, "
                  f"search now answers from model {demo.blue_model_id}")
    console.print("\n[bold]Where to look next[/bold]")
    console.print(f"  report:      {demo.report_path}")
    console.print(f"  experiments: mlflow ui --backend-store-uri {demo.mlflow_uri}")
    if keep_serving:
        console.print(f"  API docs:    {demo.api_url}/docs")
    else:
        console.print(f"  API docs:    EMBEDDING_STUDIO_DATA_DIR={demo.data_dir} embedding-studio serve, then "
                      "http://127.0.0.1:5000/docs (or run the demo with --keep-serving)")
    console.print(f"  report again: EMBEDDING_STUDIO_DATA_DIR={demo.data_dir} embedding-studio report {demo.task_id}")


def _serve_until_interrupted(console: Console, services: DemoServices) -> None:
    console.print(f"\nThe API keeps serving on {services.api_url} (docs at {services.api_url}/docs); Ctrl-C stops it.")
    try:
        while True:
            services.check_alive()
            time.sleep(1.0)
    except KeyboardInterrupt:
        console.print("stopping")
