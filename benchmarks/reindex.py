"""Reindex throughput against bare encoding, and search latency over loopback HTTP.

1. Reindex: items/s for re-embedding and writing N short texts (sentences of the demo corpus) into a
   new collection (embed + COPY + HNSW index + flip), against the same model's bare ``encode_items``
   throughput on the same texts and device, in the same run. Target on GPU: ratio >= 70%.
2. Search: p50/p99 latency and queries/s of ``POST /api/v1/search`` on 127.0.0.1, served by
   ``embedding-studio serve`` in its own process as deployed, with a collection of ``--search-items``
   items. Their vectors are random unit vectors (said in the output) so the index builds fast on CPU;
   every query is still encoded by the real model.
   Target: p99 < 50 ms.

Runs on an embedded PostgreSQL in a temporary directory.

    .venv/bin/python benchmarks/reindex.py --items 5000 --search-items 100000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def machine() -> str:
    from _common import cpu_model  # benchmarks/_common.py; imported here as it brings in torch

    cpu = cpu_model()
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}"


def demo_sentences(count: int) -> list[str]:
    corpus = REPO / "data/msmarco/corpus.jsonl"
    sentences: list[str] = []
    with corpus.open(encoding="utf-8") as handle:
        for line in handle:
            text = json.loads(line).get("text", "")
            sentences.extend(part.strip() for part in text.split(". ") if len(part.split()) >= 4)
    if not sentences:
        raise SystemExit(f"no sentences in {corpus}")
    # Short texts, distinct ids; sentences repeat when N exceeds the corpus (the encode cost does not change).
    return [sentences[index % len(sentences)] for index in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=5000, help="texts reindexed (100000 for the full figure)")
    parser.add_argument("--search-items", type=int, default=100_000, help="collection size for the search test")
    parser.add_argument("--queries", type=int, default=300, help="search requests measured")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--batch-size", type=int, default=256)
    arguments = parser.parse_args()

    from embedding_studio.db.embedded import open_embedded_server
    from embedding_studio.db.engine import normalize_database_url

    data_dir = Path(tempfile.mkdtemp(prefix="es-bench-"))
    server = open_embedded_server(data_dir / "pgdata", cleanup_mode="stop")  # as the engine would, with its settings
    os.environ["EMBEDDING_STUDIO_DATA_DIR"] = str(data_dir)
    os.environ["DATABASE_URL"] = normalize_database_url(server.get_uri())  # the API process below uses it too
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        run(arguments, data_dir)
    finally:
        from embedding_studio.db import dispose_engine

        dispose_engine()  # closes the default database's pools too
        server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


def run(arguments: argparse.Namespace, data_dir: Path) -> None:
    from embedding_studio import vectordb
    from embedding_studio.db import default_database, upgrade_database
    from embedding_studio.serving import resolve_model
    from embedding_studio.tasks import LoaderSpec, ReindexTaskParams, run_reindex
    from embedding_studio.tasks.reindex import encode_batch_size

    print(f"machine: {machine()}")
    upgrade_database()
    store = vectordb.VectorStore(default_database())  # the benchmark's one store, handed to what it runs
    model = resolve_model(arguments.model)
    texts = demo_sentences(arguments.items)
    catalog = data_dir / "catalog.jsonl"
    with catalog.open("w", encoding="utf-8") as handle:
        for index, text in enumerate(texts):
            handle.write(json.dumps({"_id": f"doc-{index}", "title": "", "text": text}) + "\n")

    forward_batch = encode_batch_size(model, arguments.batch_size)  # what the reindex uses on this device
    model.encode_items(texts[: forward_batch * 2], batch_size=forward_batch)  # warm-up
    started = time.perf_counter()
    for start in range(0, len(texts), arguments.batch_size):  # the reindex's read batches, encoded alike
        model.encode_items(texts[start : start + arguments.batch_size], batch_size=forward_batch)
    bare_seconds = time.perf_counter() - started
    bare_rate = len(texts) / bare_seconds

    result = run_reindex(
        ReindexTaskParams(
            dest_model_id=arguments.model,
            deploy_as_blue=True,
            batch_size=arguments.batch_size,
            loader=LoaderSpec(name="jsonl_catalog", options={"path": str(catalog)}),
        ),
        model=model,
        store=store,
    )
    reindex_rate = result.part_count / result.seconds
    print(f"reindex of {len(texts)} short demo-corpus texts with {arguments.model} on {model.device}:")
    print(f"  bare encode_items:      {bare_rate:8.1f} items/s ({bare_seconds:.1f}s)")
    print(f"  reindex (embed+COPY+HNSW+flip): {reindex_rate:8.1f} items/s ({result.seconds:.1f}s)")
    print(f"  ratio reindex / bare encode: {reindex_rate / bare_rate:.0%} (target >= 70% on GPU)")
    print("  reindex phases: " + ", ".join(f"{phase} {value:.1f}s" for phase, value in result.phase_seconds.items()))
    embed_rate = result.part_count / result.phase_seconds["embed_and_write"]
    print(f"  embed+write alone: {embed_rate:8.1f} items/s = {embed_rate / bare_rate:.0%} of bare encode")

    # Search: a collection of random unit vectors, served by the real model saved to a directory (a model id
    # may be a model directory), so the API process loads it as it would any deployed model.
    collection_size = arguments.search_items
    generator = np.random.default_rng(0)
    search_model_id = str(data_dir / "served-model")
    model.save(search_model_id)
    store.register_model(search_model_id, int(model.dim), source="benchmark")
    collection = store.start_collection(search_model_id)
    started = time.perf_counter()

    def random_parts():  # noqa: ANN202
        for start in range(0, collection_size, 10_000):
            vectors = generator.standard_normal((min(10_000, collection_size - start), int(model.dim))).astype(
                np.float32
            )
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            for offset, vector in enumerate(vectors):
                index = start + offset
                yield vectordb.ItemPart(f"r{index}", 0, texts[index % len(texts)], vector, {"n": index})

    store.copy_parts(collection.table_name, random_parts())
    store.build_index(collection.table_name)
    store.finish_collection(search_model_id, lambda batch: model.encode_items(batch), 0, deploy_as_blue=True)
    print(
        f"search collection: {collection_size} items of random unit vectors (index built in "
        f"{time.perf_counter() - started:.0f}s); queries encoded by {arguments.model}"
    )
    queries = [texts[(index * 37) % len(texts)][:80] for index in range(arguments.queries)]
    measure_search_over_http(queries)


def measure_search_over_http(queries: list[str]) -> None:
    """`embedding-studio serve` in its own process, as deployed; this process is the client."""
    import httpx
    from _serving import free_port, wait_for_health  # benchmarks/_serving.py

    from embedding_studio.config import get_settings

    port = free_port()
    environment = {**os.environ, "EMBEDDING_STUDIO_API_KEYS": "[]", "TOKENIZERS_PARALLELISM": "false"}
    api = subprocess.Popen(
        [sys.executable, "-m", "embedding_studio.cli.main", "serve", "--port", str(port), "--log-level", "warning"],
        env=environment,
    )
    try:
        wait_for_health(port, api)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            for query in queries[:30]:  # loads the model, warms the index pages
                client.post("/api/v1/search", json={"query": query}).raise_for_status()
            latencies: list[float] = []
            wall = time.perf_counter()
            for query in queries:
                started = time.perf_counter()
                client.post("/api/v1/search", json={"query": query, "limit": 10}).raise_for_status()
                latencies.append((time.perf_counter() - started) * 1000)
            wall = time.perf_counter() - wall
            health: list[float] = []
            for _ in range(100):
                started = time.perf_counter()
                client.get("/health").raise_for_status()
                health.append((time.perf_counter() - started) * 1000)
    finally:
        api.terminate()
        api.wait(30)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    threads = get_settings().search_cpu_threads
    print(
        f"search over loopback HTTP (`serve` in its own process, {threads or 'default'} torch thread(s)), "
        f"{len(latencies)} sequential queries, limit 10, session recorded each time:"
    )
    print(
        f"  p50 {statistics.median(latencies):.1f} ms, p90 {latencies[int(len(latencies) * 0.9)]:.1f} ms, "
        f"p99 {p99:.1f} ms (target < 50 ms), {len(latencies) / wall:.1f} queries/s; "
        f"GET /health p50 {statistics.median(health):.1f} ms (the HTTP floor)"
    )


if __name__ == "__main__":
    sys.exit(main())
