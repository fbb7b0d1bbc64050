"""Clickstream ingest throughput: a real server, a load generator in another process, loopback HTTP.

What it does, all in one run so the figures are comparable:
1. starts an embedded PostgreSQL in a temp data dir and the API in a uvicorn subprocess on 127.0.0.1;
2. a load generator process posts realistic sessions (10 shown results, 0-3 clicks) for a bounded time
   over the single-session path (POST session, then POST its events when it has clicks) and then the
   bulk path (POST /bulk with many sessions and their events);
3. with the server idle, inserts the same kind of rows with plain psycopg ``executemany`` (one
   transaction per chunk of the bulk size), the ceiling that the bulk path is compared with.

Prints sessions/s, events/s, p50/p99 request latency per path, the ceiling and the ratio, and the machine.

Run: .venv/bin/python benchmarks/clickstream_ingest.py [--seconds 12] [--clients 8] [--bulk-size 500]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _serving import free_port, wait_for_health  # benchmarks/_serving.py

ITEMS_IN_CATALOG = 50_000
RESULTS_PER_SESSION = 10


@dataclass
class PhaseReport:
    name: str
    seconds: float
    sessions: int = 0
    events: int = 0
    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    load_generator_cpu_seconds: float = 0.0
    server_cpu_seconds: float = 0.0
    database_cpu_seconds: float = 0.0

    @property
    def cpu_ms_per_session(self) -> float:
        """CPU of server + database per stored session: what contention on a shared machine cannot inflate."""
        if not self.sessions:
            return float("nan")
        return (self.server_cpu_seconds + self.database_cpu_seconds) * 1000 / self.sessions

    @property
    def sessions_per_second(self) -> float:
        return self.sessions / self.seconds if self.seconds else 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def percentile(self, share: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def make_session(rng: random.Random, prefix: str) -> dict[str, Any]:
    """A search as a shop would log it: 10 results, clicks mostly near the top, often none."""
    session_id = f"{prefix}-{uuid.uuid4().hex}"
    results = [f"item-{number}" for number in rng.sample(range(ITEMS_IN_CATALOG), RESULTS_PER_SESSION)]
    click_count = rng.choices([0, 1, 2, 3], weights=[35, 40, 17, 8])[0]
    clicked = sorted(rng.sample(range(RESULTS_PER_SESSION), click_count))
    return {
        "session_id": session_id,
        "query": f"query {rng.randrange(5000)}",
        "results": results,
        "user_id": f"user-{rng.randrange(10_000)}",
        "events": [
            {"event_id": f"{session_id}-c{rank}", "item_id": results[rank], "event_type": "click"} for rank in clicked
        ],
    }


# ------------------------------------------------------------------------------------------ load generator


def _post(connection: http.client.HTTPConnection, path: str, body: dict[str, Any]) -> tuple[int, float]:
    payload = json.dumps(body).encode()
    started = time.perf_counter()
    connection.request("POST", path, body=payload, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    return response.status, (time.perf_counter() - started) * 1000


def _single_session_client(port: int, deadline: float, seed: int, report: PhaseReport, lock: threading.Lock) -> None:
    rng = random.Random(seed)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    sessions = events = requests = errors = 0
    latencies: list[float] = []
    while time.perf_counter() < deadline:
        session = make_session(rng, f"single{seed}")
        events_body = {"events": session.pop("events")}
        status, latency = _post(connection, "/api/v1/clickstream/sessions", session)
        requests += 1
        latencies.append(latency)
        if status != 201:
            errors += 1
            continue
        if events_body["events"]:
            events_path = f"/api/v1/clickstream/sessions/{session['session_id']}/events"
            status, latency = _post(connection, events_path, events_body)
            requests += 1
            latencies.append(latency)
            if status != 201:
                errors += 1
                continue
            events += len(events_body["events"])
        sessions += 1
    connection.close()
    with lock:
        report.sessions += sessions
        report.events += events
        report.requests += requests
        report.errors += errors
        report.latencies_ms.extend(latencies)


def _bulk_client(
    port: int, deadline: float, seed: int, bulk_size: int, report: PhaseReport, lock: threading.Lock
) -> None:
    rng = random.Random(seed)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while time.perf_counter() < deadline:
        sessions = [make_session(rng, f"bulk{seed}") for _ in range(bulk_size)]
        status, latency = _post(connection, "/api/v1/clickstream/bulk", {"sessions": sessions})
        with lock:
            report.requests += 1
            report.latencies_ms.append(latency)
            if status != 200:
                report.errors += 1
                continue
        with lock:
            report.sessions += bulk_size
            report.events += sum(len(session["events"]) for session in sessions)
    connection.close()


def run_phase(kind: str, port: int, seconds: float, clients: int, bulk_size: int) -> dict[str, Any]:
    """Runs in the load-generator process; returns the phase report as a plain dict."""
    report = PhaseReport(name=kind, seconds=seconds)
    lock = threading.Lock()
    started = time.perf_counter()
    deadline = started + seconds
    if kind == "single":
        threads = [
            threading.Thread(target=_single_session_client, args=(port, deadline, seed, report, lock))
            for seed in range(clients)
        ]
    else:
        threads = [
            threading.Thread(target=_bulk_client, args=(port, deadline, 1000 + seed, bulk_size, report, lock))
            for seed in range(clients)
        ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report.seconds = time.perf_counter() - started
    times = os.times()
    report.load_generator_cpu_seconds = times.user + times.system
    return report.__dict__


def _load_generator_main(connection: Any, kind: str, port: int, seconds: float, clients: int, bulk_size: int) -> None:
    connection.send(run_phase(kind, port, seconds, clients, bulk_size))
    connection.close()


def run_load_generator(kind: str, port: int, seconds: float, clients: int, bulk_size: int) -> PhaseReport:
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe()
    process = context.Process(
        target=_load_generator_main, args=(child_end, kind, port, seconds, clients, bulk_size), daemon=True
    )
    process.start()
    data = parent_end.recv()
    process.join()
    return PhaseReport(**data)


# ----------------------------------------------------------------------------------------------- ceiling


def measure_executemany_ceiling(database_url: str, sessions: int, bulk_size: int) -> PhaseReport:
    """Plain psycopg, same rows, same chunking: what PostgreSQL takes with no HTTP, JSON or validation."""
    import psycopg
    from psycopg.types.json import Jsonb

    rng = random.Random(7)
    records = [make_session(rng, "ceiling") for _ in range(sessions)]
    with psycopg.connect(database_url) as connection:
        batch_id = connection.execute("SELECT id FROM clickstream_batches WHERE status = 'collecting'").fetchone()[0]
        connection.commit()
        started = time.perf_counter()
        for start in range(0, len(records), bulk_size):
            chunk = records[start : start + bulk_size]
            with connection.transaction(), connection.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO clickstream_sessions (session_id, batch_id, query, results, user_id) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (session_id) DO NOTHING",
                    [
                        (record["session_id"], batch_id, Jsonb(record["query"]), record["results"], record["user_id"])
                        for record in chunk
                    ],
                )
                cursor.executemany(
                    "INSERT INTO clickstream_events (event_id, session_id, item_id, event_type) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING",
                    [
                        (event["event_id"], record["session_id"], event["item_id"], event["event_type"])
                        for record in chunk
                        for event in record["events"]
                    ],
                )
        elapsed = time.perf_counter() - started
    return PhaseReport(
        name="psycopg executemany",
        seconds=elapsed,
        sessions=len(records),
        events=sum(len(record["events"]) for record in records),
    )


# ---------------------------------------------------------------------------------------------- plumbing


def process_cpu_seconds(pid: int, include_children: bool = False) -> float:
    """utime + stime from /proc (Linux); with children: live children and reaped ones (cutime/cstime)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    total = (int(fields[11]) + int(fields[12])) / ticks
    if include_children:
        total += (int(fields[13]) + int(fields[14])) / ticks
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        total += sum(process_cpu_seconds(int(child)) for child in children)
    return total


def postmaster_pid(pg_data_dir: Path) -> int | None:
    try:
        return int((pg_data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


def machine_description() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = "none used (CPU-only benchmark)"
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return f"{cpu}, {os.cpu_count()} cores, load average before the run {load}; GPU: {gpu}"


def print_phase(report: PhaseReport) -> None:
    latency = (
        f"p50 {report.percentile(0.50):7.1f} ms   p99 {report.percentile(0.99):7.1f} ms"
        if report.latencies_ms
        else "(no HTTP)"
    )
    print(
        f"{report.name:22s} {report.sessions_per_second:9.0f} sessions/s {report.events_per_second:9.0f} events/s   "
        f"{latency}   ({report.sessions} sessions, {report.requests} requests, {report.errors} errors, "
        f"{report.seconds:.1f} s)"
    )
    if report.latencies_ms:
        print(
            f"{'':22s} CPU: server {report.server_cpu_seconds:.1f} s, PostgreSQL {report.database_cpu_seconds:.1f} s, "
            f"load generator {report.load_generator_cpu_seconds:.1f} s -> {report.cpu_ms_per_session:.2f} ms of "
            "server + database CPU per session"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=12.0, help="Duration of each HTTP phase.")
    parser.add_argument("--clients", type=int, default=8, help="Concurrent connections, single-session path.")
    parser.add_argument("--bulk-clients", type=int, default=2, help="Concurrent connections, bulk path.")
    parser.add_argument("--bulk-size", type=int, default=500, help="Sessions per bulk request.")
    parser.add_argument("--server-workers", type=int, default=1, help="uvicorn worker processes.")
    arguments = parser.parse_args()

    from embedding_studio.db.embedded import open_embedded_server

    print("machine:", machine_description())
    data_dir = Path(tempfile.mkdtemp(prefix="es-bench-ingest-"))
    server = None
    api: subprocess.Popen[bytes] | None = None
    try:
        server = open_embedded_server(data_dir / "pg", cleanup_mode="stop")
        libpq_url = server.get_uri()
        port = free_port()
        environment = {
            **os.environ,
            "DATABASE_URL": libpq_url,
            "EMBEDDING_STUDIO_DATA_DIR": str(data_dir),
            "EMBEDDING_STUDIO_API_KEYS": "[]",
        }
        api = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "embedding_studio.api.app:create_app",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
             "--workers", str(arguments.server_workers)],
            env=environment,
        )  # fmt: skip
        wait_for_health(port, api)
        print(
            f"server: uvicorn with {arguments.server_workers} worker process(es) on 127.0.0.1:{port}, "
            f"embedded PostgreSQL in {data_dir}"
        )

        database_pid = postmaster_pid(data_dir / "pg")

        def measured(kind: str, clients: int) -> PhaseReport:
            server_before = process_cpu_seconds(api.pid, include_children=True)
            database_before = process_cpu_seconds(database_pid, include_children=True) if database_pid else 0.0
            report = run_load_generator(kind, port, arguments.seconds, clients, arguments.bulk_size)
            report.server_cpu_seconds = process_cpu_seconds(api.pid, include_children=True) - server_before
            if database_pid:
                report.database_cpu_seconds = process_cpu_seconds(database_pid, include_children=True) - database_before
            return report

        single = measured("single", arguments.clients)
        single.name = "single-session HTTP"
        bulk = measured("bulk", arguments.bulk_clients)
        bulk.name = f"bulk HTTP ({arguments.bulk_size}/req)"
        api.terminate()
        api.wait(timeout=30)
        api = None
        ceiling_sessions = max(bulk.sessions, 5 * arguments.bulk_size)
        ceiling = measure_executemany_ceiling(libpq_url, ceiling_sessions, arguments.bulk_size)

        print()
        for report in (single, bulk, ceiling):
            print_phase(report)
        print()
        ratio = bulk.sessions_per_second / ceiling.sessions_per_second if ceiling.sessions_per_second else 0.0
        print(f"bulk / executemany ceiling: {ratio:.0%} (target >= 50%)")
        print(
            f"single-session: {single.sessions_per_second:.0f} sessions/s (target >= 500), "
            f"p99 {single.percentile(0.99):.1f} ms (target < 50 ms)"
        )
        cores = os.cpu_count() or 1
        print(
            f"if server + database had all {cores} cores: single-session at most "
            f"{cores * 1000 / single.cpu_ms_per_session:.0f} sessions/s, bulk at most "
            f"{cores * 1000 / bulk.cpu_ms_per_session:.0f} sessions/s (CPU bound; load average now "
            f"{os.getloadavg()[0]:.1f})"
        )
    finally:
        if api is not None:
            api.terminate()
            api.wait(timeout=30)
        if server is not None:
            server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
