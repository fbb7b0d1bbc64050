"""A large catalog's reindex embedded by every reindex worker: the owning job and its shard helpers.

One worker embedding a catalog of millions of items takes hours; the embedding is what parallelises. The job that
owns a reindex task (``workers.reindex_worker`` → ``reindex.build_collection``) starts the new collection as always,
then, for a catalog of at least ``EMBEDDING_STUDIO_REINDEX_SHARD_THRESHOLD`` items, lists the source's item ids
(sorted, so a slice is the same on every worker), cuts them into shards of ``shard_size`` ids, records one row per
shard in ``reindex_shards`` (migration 0010) and queues helper jobs (:data:`SHARDS_JOB_NAME`) on the reindex queue.
The owner and every helper claim shards one at a time (``FOR UPDATE SKIP LOCKED``) until none is left: each reads
its slice from the source (a collection's parts, or the loader's items by id with the API's upserts on top; for an
image model the loader's pictures, ``tasks.image_index.image_reader``), embeds it with the destination model, and
writes it into the new collection in one COPY transaction that first deletes the slice's items (a shard written
again is idempotent per item) and marks the shard done in the same commit, only while its claim still holds. The
owner waits until every shard is done, then builds the HNSW index once, replays the item changes logged meanwhile
and flips blue when asked (``reindex.build_collection``), as the single-job path does; smaller catalogs keep that
path.

A worker holding a shard writes a heartbeat every ``shard_heartbeat_s``. A shard whose heartbeat is older than
``shard_stale_after_s`` (its worker was killed, its machine lost) is claimed again by whoever asks next, the owner
included, which asks while it waits, so the task never hangs on a dead helper; the dead claim's late write, if
any, is refused. A shard whose worker raised is put back for another try. After ``shard_attempts`` tries the
shard fails, and the task with it, naming the shard's last error. A helper's dead procrastinate job is closed by
the stalled-job check (``runner``); the owner's death is the task's, retried once as every reindex is, and the
retried build starts over under a new build id.

Progress is the owner's to write (helpers write only their shard's row): "shards 3/8 done (worker-a 2, worker-b 1),
2 running; 12,000 of 40,000 items embedded". The result adds ``shards``, ``shard_workers`` and ``retried_shards``.

The owner works on the ``VectorStore`` its reindex was handed, a helper job on the ``TaskRepository`` and
``VectorStore`` the worker's start-up registered it with (``runner.build_worker_app``, both on the worker's one
``Database``); the ``reindex_shards`` rows are read and written through :class:`ShardTable` on that store's database
(its SQL in ``tasks.reindex_queries``), and the helper jobs are queued and dropped on it too.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from embedding_studio import vectordb
from embedding_studio.db import Database
from embedding_studio.tasks import reindex_queries as queries
from embedding_studio.tasks.errors import TaskCanceledError
from embedding_studio.tasks.params import ReindexTaskParams
from embedding_studio.tasks.reindex import ShardReader, _CopyWriter, item_embedder, shard_reader_of
from embedding_studio.tasks.repository import TaskRepository
from embedding_studio.tasks.types import QUEUE_OF_KIND, TaskKind, TaskStatus
from embedding_studio.vectordb import VectorStore

logger = logging.getLogger(__name__)

SHARDS_JOB_NAME = "embedding_studio.reindex_shards_worker"
SHARDS_QUEUE = QUEUE_OF_KIND[TaskKind.reindex]

#: the destination model on a slice's inputs (texts, or an image model's pictures): one vector each
Embed = Callable[[list[Any]], np.ndarray]


class ReindexShardSettings(BaseSettings):
    """When and how a reindex is split between workers (env ``EMBEDDING_STUDIO_REINDEX_*``)."""

    model_config = SettingsConfigDict(env_prefix="EMBEDDING_STUDIO_REINDEX_", extra="ignore")

    shard_threshold: int = Field(
        default=20_000, ge=0, description="Catalogs with at least this many items are embedded by shards; 0: never."
    )
    shard_size: int = Field(default=5_000, ge=1, description="Item ids per shard.")
    shard_helpers: int = Field(
        default=16, ge=0, description="Most helper jobs queued per reindex (one per worker that may help)."
    )
    shard_heartbeat_s: float = Field(default=5.0, gt=0, description="How often a shard's worker says it is alive.")
    shard_stale_after_s: float = Field(
        default=60.0, gt=0, description="A shard whose worker was silent this long is claimed again by another."
    )
    shard_attempts: int = Field(default=3, ge=1, description="Tries of one shard before the reindex fails.")
    shard_poll_s: float = Field(default=0.5, gt=0, description="How often the owner looks at the shards it waits on.")


class ShardFailedError(RuntimeError):
    """A shard failed on every try: the reindex fails, naming it and its last error."""


class ShardClaimLost(Exception):
    """This worker's claim on a shard was taken over (it was silent too long): its write is not committed."""


@dataclass(frozen=True)
class Shard:
    build_id: str
    shard: int
    item_ids: list[str]
    claim: str
    attempts: int


@dataclass(frozen=True)
class ShardState:
    """The shards of one build as the table holds them now."""

    total: int
    done: int
    running: int
    items: int
    parts: int
    skipped: int
    #: shards done per worker
    workers: dict[str, int] = field(default_factory=dict)
    retried: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)

    def describe(self, total_items: int) -> str:
        by_worker = ", ".join(f"{name} {count}" for name, count in sorted(self.workers.items()))
        return (
            f"shards {self.done}/{self.total} done"
            + (f" ({by_worker})" if by_worker else "")
            + (f", {self.running} running" if self.running else "")
            + f"; {self.items:,} of {total_items:,} items embedded"
        )


@dataclass(frozen=True)
class ShardedBuild:
    """What the shards wrote, for ``ReindexResult``."""

    shards: int
    parts: int
    skipped: int
    workers: dict[str, int]
    retried: int


def cut_into_shards(item_ids: list[str], size: int) -> list[list[str]]:
    """Sorted ids cut into consecutive slices of ``size`` (the last one shorter)."""
    ordered = sorted(item_ids)
    return [ordered[start : start + size] for start in range(0, len(ordered), size)]


def worker_name() -> str:
    from embedding_studio.tasks.trials import worker_name as name_of_this_worker

    return name_of_this_worker()


# ------------------------------------------------------------------------------------------- the table


class ShardTable:
    """The ``reindex_shards`` table on the database it is handed; its SQL is ``tasks.reindex_queries``."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def record(self, task_id: str, build_id: str, owner: str, slices: list[list[str]]) -> None:
        """One row per shard of a new build; rows of the task's earlier builds (a retried task) and of builds whose
        task is no longer running are dropped."""
        with self._database.transaction() as connection, connection.cursor() as cursor:
            cursor.execute(queries.DELETE_STALE_SHARDS, {"task_id": task_id})
            cursor.executemany(
                queries.INSERT_SHARD,
                [
                    {"build_id": build_id, "shard": index, "task_id": task_id, "owner": owner, "item_ids": item_ids}
                    for index, item_ids in enumerate(slices)
                ],
            )

    def delete(self, build_id: str) -> None:
        with self._database.connection() as connection:
            connection.execute(queries.DELETE_BUILD_SHARDS, {"build_id": build_id})

    def claim(self, build_id: str, worker: str, settings: ReindexShardSettings) -> Shard | None:
        """The next shard to embed: one nobody took, else one whose worker went silent; None when none is left to
        take. A silent shard already tried ``shard_attempts`` times is failed instead of claimed again."""
        token = uuid.uuid4().hex
        limits = {
            "build_id": build_id,
            "attempts": settings.shard_attempts,
            "stale": settings.shard_stale_after_s,
        }
        with self._database.transaction() as connection:
            connection.execute(queries.FAIL_SILENT_LAST_TRIES, limits)
            row = connection.execute(queries.CLAIM_SHARD, {**limits, "worker": worker, "token": token}).fetchone()
        if row is None:
            return None
        if row[2] > 1:
            logger.warning("shard %d of build %s: try %d on %s (%s)", row[0], build_id, row[2], worker, row[3])
        return Shard(build_id=build_id, shard=row[0], item_ids=list(row[1]), claim=token, attempts=row[2])

    def heartbeat(self, shard: Shard, items: int) -> bool:
        """Say the shard's worker is alive; False when the claim was taken over."""
        with self._database.connection() as connection:
            cursor = connection.execute(queries.HEARTBEAT, {"items": items, **_claim_of(shard)})
            return cursor.rowcount == 1

    def release(self, shard: Shard, error: str, settings: ReindexShardSettings) -> None:
        """Put a shard whose worker raised back for another try, or fail it after its last one."""
        with self._database.connection() as connection:
            connection.execute(
                queries.RELEASE_SHARD, {"attempts": settings.shard_attempts, "error": error, **_claim_of(shard)}
            )

    @staticmethod
    def mark_done(connection: Any, shard: Shard, items: int, parts: int, skipped: list[str], seconds: float) -> None:
        """Mark the shard done on ``connection``, in the transaction that wrote it (``ShardClaimLost`` when the
        claim no longer holds, which rolls the write back)."""
        cursor = connection.execute(
            queries.MARK_SHARD_DONE,
            {"items": items, "parts": parts, "skipped": skipped, "seconds": seconds, **_claim_of(shard)},
        )
        if cursor.rowcount != 1:
            raise ShardClaimLost(f"shard {shard.shard} was claimed again while this worker embedded it")

    def state(self, build_id: str) -> ShardState:
        with self._database.connection() as connection:
            rows = connection.execute(queries.SELECT_BUILD_SHARDS, {"build_id": build_id}).fetchall()
        workers: dict[str, int] = {}
        for row in rows:
            if row[1] == "done":
                workers[row[2]] = workers.get(row[2], 0) + 1
        return ShardState(
            total=len(rows),
            done=sum(1 for row in rows if row[1] == "done"),
            running=sum(1 for row in rows if row[1] == "doing"),
            items=sum(int(row[4]) for row in rows if row[1] in ("done", "doing")),
            parts=sum(int(row[5]) for row in rows if row[1] == "done"),
            skipped=sum(int(row[6] or 0) for row in rows if row[1] == "done"),
            workers=workers,
            retried=sum(int(row[3]) - 1 for row in rows if row[1] == "done"),
            failed=[(int(row[0]), str(row[7])) for row in rows if row[1] == "failed"],
        )

    def build_is_open(self, build_id: str) -> bool:
        with self._database.connection() as connection:
            return connection.execute(queries.BUILD_HAS_SHARDS, {"build_id": build_id}).fetchone() is not None


def _claim_of(shard: Shard) -> dict[str, Any]:
    return {"build_id": shard.build_id, "shard": shard.shard, "claim": shard.claim}


# ------------------------------------------------------------------------------------------ one shard


def run_shard(
    store: VectorStore,
    shard: Shard,
    reader: ShardReader,
    table_name: str,
    embed: Embed,
    batch_size: int,
    settings: ReindexShardSettings,
    should_stop: Callable[[], bool],
    on_batch: Callable[[], None] = lambda: None,
    pause_s: float = 0.0,
) -> None:
    """Embed a claimed shard's items and write them into ``store``; the write and the shard's ``done`` commit
    together, and only while the claim holds (``ShardClaimLost`` otherwise)."""
    table = ShardTable(store.database)
    started = time.perf_counter()
    counts = {"items": 0, "parts": 0}
    skipped: list[str] = []
    lost = threading.Event()
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(settings.shard_heartbeat_s):
            try:
                if not table.heartbeat(shard, counts["items"]):
                    lost.set()
                    return
            except Exception:  # a missed beat is not fatal; the next one tries again
                logger.warning("heartbeat of shard %d failed", shard.shard, exc_info=True)

    def mark_done(connection: Any) -> None:
        ShardTable.mark_done(
            connection, shard, counts["items"], counts["parts"], skipped, time.perf_counter() - started
        )

    beater = threading.Thread(target=beat, name=f"shard-{shard.shard}-heartbeat", daemon=True)
    beater.start()
    writer = _CopyWriter(store, table_name, replace_items=shard.item_ids, before_commit=mark_done)
    try:
        for start in range(0, len(shard.item_ids), batch_size):
            if should_stop():
                raise TaskCanceledError("canceled during the reindex")
            if lost.is_set():
                raise ShardClaimLost(f"shard {shard.shard} was claimed again while this worker embedded it")
            ids = shard.item_ids[start : start + batch_size]
            read = reader.read(ids)
            skipped.extend(read.skipped)
            if read.parts:
                vectors = embed(read.inputs)
                writer.put(
                    [
                        vectordb.ItemPart(part.item_id, part.part, part.content, vectors[index], part.payload)
                        for index, part in enumerate(read.parts)
                    ]
                )
            counts["items"] += len(ids)
            counts["parts"] += len(read.parts)
            on_batch()
            if pause_s:
                time.sleep(pause_s)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        stop.set()
        beater.join(timeout=5)


def _describe(error: BaseException) -> str:
    message = str(error).strip()
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


# ---------------------------------------------------------------------------------------------- owner


def send_shard_jobs(database: Database, task_id: str, build_id: str, source: dict[str, Any], count: int) -> list[int]:
    """Queue ``count`` helper jobs of the build on ``database``'s reindex queue (one per worker that may help at
    most)."""
    from embedding_studio.tasks.queue import get_sending_app

    if count <= 0:
        return []
    deferrer = get_sending_app(database).configure_task(SHARDS_JOB_NAME, queue=SHARDS_QUEUE)
    return [int(deferrer.defer(task_id=task_id, build_id=build_id, source=source)) for _ in range(count)]


def build_by_shards(
    store: VectorStore,
    task_id: str,
    params: ReindexTaskParams,
    reader: ShardReader,
    collection: vectordb.Collection,
    embed: Embed,
    progress: Callable[[float, str], None],
    should_stop: Callable[[], bool],
) -> ShardedBuild | None:
    """Embed a large source into the building ``collection`` of ``store`` by shards on every reindex worker; None
    (nothing done) when the source is below the threshold, which the single-job path then reads."""
    settings = ReindexShardSettings()
    if settings.shard_threshold <= 0:
        return None
    item_ids = reader.item_ids()
    if len(item_ids) < settings.shard_threshold:
        return None
    slices = cut_into_shards(item_ids, settings.shard_size)
    if len(slices) < 2:
        return None
    build_id = uuid.uuid4().hex
    me = worker_name()
    table = ShardTable(store.database)
    table.record(task_id, build_id, me, slices)
    job_ids: list[int] = []
    try:
        job_ids = send_shard_jobs(
            store.database, task_id, build_id, reader.describe, min(len(slices) - 1, settings.shard_helpers)
        )
        total = len(item_ids)
        progress(
            0.02,
            f"{total:,} items in {len(slices)} shards of up to {settings.shard_size:,}; "
            f"{len(job_ids)} helper jobs queued on the {SHARDS_QUEUE} queue",
        )
        last_report = [0.0]

        def report(force: bool = False) -> None:
            if not force and time.monotonic() - last_report[0] < 1.0:
                return
            last_report[0] = time.monotonic()
            state = table.state(build_id)
            progress(0.02 + 0.88 * min(state.items / total, 1.0), state.describe(total))

        while True:
            if should_stop():
                raise TaskCanceledError("canceled during the reindex")
            shard = table.claim(build_id, me, settings)
            if shard is not None:
                try:
                    run_shard(
                        store,
                        shard,
                        reader,
                        collection.table_name,
                        embed,
                        max(1, params.batch_size),
                        settings,
                        should_stop,
                        on_batch=report,
                        pause_s=params.pause_between_batches_s,
                    )
                except ShardClaimLost as error:
                    logger.warning("%s", error)
                except TaskCanceledError:
                    table.release(shard, "canceled", settings)
                    raise
                except Exception as error:  # another try, here or elsewhere; the last failure fails the build
                    logger.exception("shard %d of task %s failed on %s", shard.shard, task_id, me)
                    table.release(shard, _describe(error), settings)
                continue
            state = table.state(build_id)
            if state.failed:
                number, error = state.failed[0]
                raise ShardFailedError(
                    f"shard {number} of {state.total} failed {settings.shard_attempts} times: {error}"
                )
            if state.done == state.total:
                break
            report()
            time.sleep(settings.shard_poll_s)
        report(force=True)
        return ShardedBuild(
            shards=state.total, parts=state.parts, skipped=state.skipped, workers=state.workers, retried=state.retried
        )
    finally:
        from embedding_studio.tasks.queue import cancel_job

        for job_id in job_ids:  # helper jobs no worker took: nothing is left for them
            cancel_job(job_id, store.database)
        table.delete(build_id)


# ---------------------------------------------------------------------------------------------- helper


def _helping_is_over(tasks: TaskRepository, task_id: str) -> bool:
    task = tasks.find_task(task_id)
    return task is None or task.status is not TaskStatus.processing or task.cancel_requested


def reindex_shards_worker(
    tasks: TaskRepository, store: VectorStore, task_id: str, build_id: str, source: dict[str, Any]
) -> None:
    """A helper job: embed shards of the task's build until none is left to take, the task ended, or it was canceled.

    A shard that raises is put back for another try and ends this job (failed): a worker that cannot embed should
    not take every shard in turn. ``tasks`` and ``store`` are the worker's (``runner.build_worker_app`` registers
    the job with them bound, as procrastinate passes only the job's own arguments)."""
    table = ShardTable(store.database)
    task = tasks.find_task(task_id)
    if task is None or task.kind is not TaskKind.reindex or task.status is not TaskStatus.processing:
        logger.info("shard job of task %s skipped: the task is not a running reindex", task_id)
        return
    if not table.build_is_open(build_id):
        logger.info("shard job of task %s skipped: its build is over", task_id)
        return
    params = ReindexTaskParams.model_validate(task.params)
    collection = store.get_collection(params.dest_model_id)
    if collection is None or collection.state != "building":
        return
    from embedding_studio.serving.models import resolve_model

    settings = ReindexShardSettings()
    model = resolve_model(params.dest_model_id)
    embed = item_embedder(model, params.batch_size)
    reader = shard_reader_of(store, source, collection.item_text, collection.item_display)
    me = worker_name()
    done = 0
    try:
        while (shard := table.claim(build_id, me, settings)) is not None:
            try:
                run_shard(
                    store,
                    shard,
                    reader,
                    collection.table_name,
                    embed,
                    max(1, params.batch_size),
                    settings,
                    lambda: _helping_is_over(tasks, task_id),
                    pause_s=params.pause_between_batches_s,
                )
            except ShardClaimLost as error:
                logger.warning("%s", error)
                continue
            except TaskCanceledError:
                table.release(shard, "the task ended", settings)
                return
            except BaseException as error:
                table.release(shard, _describe(error), settings)
                raise
            done += 1
    finally:
        reader.close()
        from embedding_studio.models import release_memory

        release_memory()
    logger.info("shard job of task %s: %d shard(s) embedded on %s", task_id, done, me)
