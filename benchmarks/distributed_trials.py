"""One fine-tuning task's trials on 1 and on 2 workers: the wall time of the same search, and the ratio.

Everything is the product's: an embedded PostgreSQL in a temp dir, the quality benchmark's simulated clickstream
(``_common.simulate_clickstream``) stored as a released batch, the catalog as a ``jsonl_catalog`` file, and for each
worker count a fresh fine-tuning task (``max_evals = --trials``, its own MLflow store so it searches rather than
reusing an earlier iteration's parameters) run by that many real ``embedding-studio worker --queues fine_tuning``
processes, each on ``--threads`` torch threads (``OMP_NUM_THREADS``). Pruning is off (``EMBEDDING_STUDIO_HPO_PRUNER=
none``) so every trial trains its whole ``--epochs``: the searches differ only in the learning rates and layers TPE
draws. The clock starts when the task is created (the workers are already up and idle) and stops when it is done, so
it includes the owner's data preparation, each helper's own, the trials, and choosing the best model.

Prints, per worker count: wall seconds and trials per worker; then the ratio 2 workers / 1 worker (target <= 0.6 on
CPU, issue 15 item 2) and the machine. On a 2-core machine give each worker one thread (the default).

    .venv/bin/python benchmarks/distributed_trials.py                                     # the issue's figure (CPU)
    .venv/bin/python benchmarks/distributed_trials.py --model /tmp/es-bench/tiny-model --max-corpus 200 \\
        --sessions-per-query 2 --trials 2 --epochs 1                                       # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import _common
from _workers import registered_workers, start_workers, stop_workers, wait_until

if TYPE_CHECKING:
    from embedding_studio.db import Database


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common.add_clickstream_arguments(parser)
    parser.add_argument("--trials", type=int, default=4, help="max_evals of the task (default 4)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per trial (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker process (default 1)")
    parser.add_argument("--workers", default="1,2", help="worker counts to time, in order (default 1,2)")
    parser.add_argument("--timeout", type=float, default=7200.0, help="seconds one task may take")
    return parser.parse_args()


def store_clickstream(database: Database, clickstream: _common.SimulatedClickstream) -> int:
    """The simulated sessions as one released batch (the demo users' clicks, as the API would have stored them)."""
    from embedding_studio.clickstream.dao import ClickstreamRepository

    repository = ClickstreamRepository(database)
    for session in [*clickstream.train_inputs, *clickstream.validation_inputs]:
        repository.add_session(session_id=session.session_id, query=session.query, results=list(session.results))
        events = [{"event_id": f"click-{index}", "item_id": item} for index, item in enumerate(session.events)]
        if events:
            repository.add_events(session.session_id, events)
    return int(repository.release_batch().released_batch_id)


def write_catalog(clickstream: _common.SimulatedClickstream, path: Path) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for item_id in clickstream.dataset.corpus:
            handle.write(json.dumps({"_id": item_id, "text": clickstream.dataset.item_text(item_id)}) + "\n")
    return path


def time_task(
    database: Database, count: int, args: argparse.Namespace, batch_id: int, catalog: Path, root: Path, log: Path
) -> tuple[float, dict[str, int]]:
    from embedding_studio.config import reset_settings
    from embedding_studio.tasks import FineTuningTaskParams, TaskRepository
    from embedding_studio.tasks.service import TaskService

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / f'mlflow-{count}.db'}"  # a first iteration: a search
    reset_settings()
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    workers = start_workers(count, env, log, f"bench{count}w", "fine_tuning")
    try:
        wait_until(lambda: registered_workers(database) >= count, 300, f"{count} workers to start", log)
        started = time.perf_counter()
        tasks = TaskRepository(database)
        task, _ = TaskService(tasks).create_fine_tuning_task(
            FineTuningTaskParams(
                batch_id=batch_id,
                embedding_model_id=args.model,
                method_options={
                    "max_evals": args.trials,
                    "num_epochs": args.epochs,
                    "base_model": args.model,
                    "loader": {"name": "jsonl_catalog", "options": {"path": str(catalog)}},
                },
            )
        )
        wait_until(lambda: tasks.get_task(task.id).status.is_final, args.timeout, f"task {task.id}", log)
        elapsed = time.perf_counter() - started
    finally:
        stop_workers(workers)
        wait_until(lambda: registered_workers(database) == 0, 120, "workers to stop", log)
    done = tasks.get_task(task.id)
    if done.status.value != "done":
        raise SystemExit(f"task {task.id} ended {done.status.value}: {done.error}\n{log.read_text()[-3000:]}")
    return elapsed, dict((done.result or {}).get("trial_workers") or {})


def main() -> None:
    args = parse_args()
    counts = [int(value) for value in args.workers.split(",") if value.strip()]
    os.environ["EMBEDDING_STUDIO_DEVICE"] = "cpu"
    os.environ["EMBEDDING_STUDIO_HPO_PRUNER"] = "none"
    device = _common.resolve("cpu")
    with tempfile.TemporaryDirectory(prefix="es-bench-distributed-") as directory:
        root = Path(directory)
        from embedding_studio.config import reset_settings
        from embedding_studio.db import default_database, dispose_engine, upgrade_database
        from embedding_studio.db.embedded import open_embedded_server
        from embedding_studio.db.engine import normalize_database_url

        server = open_embedded_server(root / "pg", cleanup_mode="stop")
        try:
            os.environ["DATABASE_URL"] = normalize_database_url(server.get_uri())
            os.environ["EMBEDDING_STUDIO_DATA_DIR"] = str(root)
            reset_settings()
            dispose_engine()
            upgrade_database()
            database = default_database()  # the benchmark's one Database, handed to what it runs
            clickstream = _common.simulate_clickstream(args, device)
            batch_id = store_clickstream(database, clickstream)
            catalog = write_catalog(clickstream, root / "corpus.jsonl")
            log = root / "workers.log"
            print(
                f"{len(clickstream.train_inputs) + len(clickstream.validation_inputs)} sessions, "
                f"{len(clickstream.dataset.corpus)} items, model {args.model}, {args.trials} trials x {args.epochs} "
                f"epoch(s), {args.threads} torch thread(s) per worker"
            )
            timings: dict[int, float] = {}
            for count in counts:
                elapsed, per_worker = time_task(database, count, args, batch_id, catalog, root, log)
                timings[count] = elapsed
                shown = ", ".join(f"{name}: {trials}" for name, trials in sorted(per_worker.items()))
                print(f"{count} worker(s): {elapsed:8.1f} s  trials per worker: {shown}")
            dispose_engine()
        finally:
            server.cleanup()
    if 1 in timings and 2 in timings:
        ratio = timings[2] / timings[1]
        print(f"ratio 2 workers / 1 worker: {ratio:.2f}x (target <= 0.6x)")
    print(f"machine: {_common.cpu_model()}, {os.cpu_count()} cores, {platform.platform()}, device cpu")


if __name__ == "__main__":
    main()
