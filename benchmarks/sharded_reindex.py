"""A sharded reindex on 1 and on 2 real workers: items/s of the same catalog, the ratio, and bare encode beside it.

Everything is the product's: an embedded PostgreSQL in a temp dir, the catalog as a ``jsonl_catalog`` file of
``--items`` short texts (sentences of the msmarco slice, as ``reindex.py`` uses), and for each worker count a reindex
task into a fresh collection run by that many real ``embedding-studio worker --queues reindex`` processes, each on
``--threads`` torch threads. The shard threshold is lowered to 1, so 1 worker and 2 workers run the same sharded
path (``tasks.shards``; shards of ``--shard-size`` items) and differ only in who embeds. The workers are up and idle
when the clock starts (the task is created) and it stops when the task is done: listing the ids, each worker loading
the model for its first shard, embedding, COPY, the HNSW index once, catch-up and the flip. Bare ``encode_items`` of
the same texts in this process, on the same threads and device, is the reference (``--bare-items`` of them).

    .venv/bin/python benchmarks/sharded_reindex.py --items 40000      # the CPU figure (2 cores: 1 thread each)
    .venv/bin/python benchmarks/sharded_reindex.py --device cuda --items 200000 --threads 4 --workers 1
    .venv/bin/python benchmarks/sharded_reindex.py --model /tmp/tiny --items 600 --shard-size 200   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from embedding_studio.db import Database

BENCHMARKS = Path(__file__).resolve().parent
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _workers import registered_workers, start_workers, stop_workers, wait_until  # noqa: E402
from reindex import demo_sentences, machine  # noqa: E402  (benchmarks/reindex.py)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=40_000, help="short texts in the catalog (default 40,000)")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--workers", default="1,2", help="worker counts to time, in order (default 1,2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker process (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (every worker on the one GPU)")
    parser.add_argument("--batch-size", type=int, default=256, help="the task's batch_size (items per read)")
    parser.add_argument("--shard-size", type=int, default=5_000, help="items per shard (default 5,000)")
    parser.add_argument("--bare-items", type=int, default=10_000, help="texts of the bare encode reference")
    parser.add_argument("--timeout", type=float, default=7200.0, help="seconds one reindex may take")
    return parser.parse_args()


def bare_encode_rate(args: argparse.Namespace, texts: list[str]) -> float:
    """Items/s of ``encode_items`` alone in this process, read batch by read batch as the reindex encodes."""
    import torch

    from embedding_studio.models import load_embedding_model
    from embedding_studio.tasks.reindex import encode_batch_size

    torch.set_num_threads(args.threads)
    model = load_embedding_model(args.model, device=args.device)
    forward = encode_batch_size(model, args.batch_size)
    sample = texts[: args.bare_items]
    model.encode_items(sample[: forward * 2], batch_size=forward)  # warm-up
    started = time.perf_counter()
    for start in range(0, len(sample), args.batch_size):
        model.encode_items(sample[start : start + args.batch_size], batch_size=forward)
    rate = len(sample) / (time.perf_counter() - started)
    del model
    from embedding_studio.models import release_memory

    release_memory()
    return rate


def time_reindex(
    database: Database, count: int, args: argparse.Namespace, catalog: Path, log: Path
) -> tuple[float, dict]:  # type: ignore[type-arg]
    from embedding_studio.tasks import LoaderSpec, ReindexTaskParams, TaskRepository
    from embedding_studio.tasks.service import TaskService

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    workers = start_workers(count, env, log, f"bench{count}w", "reindex")
    try:
        wait_until(lambda: registered_workers(database) >= count, 300, f"{count} workers to start", log)
        started = time.perf_counter()
        tasks = TaskRepository(database)
        task = TaskService(tasks).create_reindex_task(
            ReindexTaskParams(
                dest_model_id=args.model,
                batch_size=args.batch_size,
                loader=LoaderSpec(name="jsonl_catalog", options={"path": str(catalog)}),
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
    return elapsed, dict(done.result or {})


def main() -> None:
    args = parse_args()
    counts = [int(value) for value in args.workers.split(",") if value.strip()]
    os.environ["EMBEDDING_STUDIO_DEVICE"] = args.device
    os.environ["EMBEDDING_STUDIO_REINDEX_SHARD_THRESHOLD"] = "1"  # 1 and 2 workers run the same sharded path
    os.environ["EMBEDDING_STUDIO_REINDEX_SHARD_SIZE"] = str(args.shard_size)
    texts = demo_sentences(args.items)
    with tempfile.TemporaryDirectory(prefix="es-bench-sharded-") as directory:
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
            catalog = root / "corpus.jsonl"
            with catalog.open("w", encoding="utf-8") as handle:
                for index, text in enumerate(texts):
                    handle.write(json.dumps({"_id": f"doc-{index:07d}", "text": text}) + "\n")
            bare = bare_encode_rate(args, texts)
            print(
                f"{len(texts):,} short texts, model {args.model} on {args.device}, shards of {args.shard_size:,}, "
                f"batch_size {args.batch_size}, {args.threads} torch thread(s) per worker"
            )
            measured = min(args.bare_items, len(texts))
            print(f"bare encode_items in one process: {bare:10.1f} items/s ({measured:,} texts)")
            log = root / "workers.log"
            rates: dict[int, float] = {}
            for count in counts:
                elapsed, result = time_reindex(database, count, args, catalog, log)
                rates[count] = len(texts) / elapsed
                per_worker = ", ".join(f"{name}: {shards}" for name, shards in sorted(result["shard_workers"].items()))
                phases = ", ".join(f"{phase} {value:.1f}s" for phase, value in result["phase_seconds"].items())
                print(
                    f"{count} worker(s): {rates[count]:10.1f} items/s ({elapsed:.1f}s wall, "
                    f"{rates[count] / bare:.0%} of bare encode); shards per worker: {per_worker}; owner's phases: "
                    f"{phases}"
                )
            dispose_engine()
        finally:
            server.cleanup()
    if 1 in rates and 2 in rates:
        print(f"ratio 2 workers / 1 worker: {rates[2] / rates[1]:.2f}x items/s")
    print(f"machine: {machine()}")


if __name__ == "__main__":
    main()
