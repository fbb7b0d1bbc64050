"""Every SQL statement on the task table, by name (psycopg's ``%(name)s`` parameters).

``TaskRepository`` runs these and nothing else, so the task table's SQL can be read in one place. A statement
that answers tasks returns ``TASK_COLUMNS``, the columns ``Task.from_row`` reads.
"""

from __future__ import annotations

TASK_COLUMNS = (
    "id, kind, status, params, parent_id, best_run_id, best_model_url, error, progress, progress_message, "
    "result, idempotency_key, job_id, cancel_requested, attempts, created_at, updated_at, started_at, finished_at"
)

#: With an idempotency key already used, nothing is inserted and no row comes back.
INSERT_TASK = f"""
INSERT INTO tasks (id, kind, status, params, parent_id, idempotency_key, error, finished_at)
VALUES (%(id)s, %(kind)s, %(status)s, %(params)s::jsonb, %(parent_id)s, %(key)s, %(error)s,
        CASE WHEN %(final)s THEN now() END)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING {TASK_COLUMNS}
"""

SELECT_TASK = f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = %(id)s"

SELECT_TASKS_BY_IDEMPOTENCY_KEY = f"SELECT {TASK_COLUMNS} FROM tasks WHERE idempotency_key = %(key)s"

#: The exact id first, then the newest; eleven, so a caller can tell "ten shown" from "more".
SELECT_TASKS_BY_ID_PREFIX = """
SELECT id, kind, status, created_at FROM tasks WHERE id = %(id)s OR id LIKE %(pattern)s
ORDER BY (id = %(id)s) DESC, created_at DESC LIMIT 11
"""

#: Each id with its neighbours in byte order (the ids it shares the longest prefix with): two index lookups each.
SELECT_ID_NEIGHBOURS = """
SELECT shown.id,
       (SELECT max(other.id COLLATE "C") FROM tasks other WHERE other.id COLLATE "C" < shown.id COLLATE "C"),
       (SELECT min(other.id COLLATE "C") FROM tasks other WHERE other.id COLLATE "C" > shown.id COLLATE "C")
FROM unnest(%(ids)s::text[]) AS shown(id)
"""

SELECT_BEST_RUN_IDS_LIKE = "SELECT DISTINCT best_run_id FROM tasks WHERE best_run_id LIKE %(pattern)s ORDER BY 1"

SELECT_FINE_TUNING_TASK_OF_RUN = f"""
SELECT {TASK_COLUMNS} FROM tasks WHERE kind = 'fine_tuning' AND best_run_id = %(run_id)s
ORDER BY created_at DESC LIMIT 1
"""

#: ``kind`` and ``statuses`` NULL: any.
SELECT_TASKS_PAGE = f"""
SELECT {TASK_COLUMNS} FROM tasks
WHERE (%(kind)s::text IS NULL OR kind = %(kind)s)
  AND (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
ORDER BY created_at DESC, id LIMIT %(limit)s OFFSET %(offset)s
"""

COUNT_TASKS_BY_STATUS = "SELECT status, count(*) FROM tasks GROUP BY status"

SET_JOB_ID = f"UPDATE tasks SET job_id = %(job_id)s, updated_at = now() WHERE id = %(id)s RETURNING {TASK_COLUMNS}"

#: pending → processing; no row when the task is not pending any more.
START_TASK = f"""
UPDATE tasks SET status = 'processing', started_at = now(), attempts = attempts + 1, progress = 0,
                 progress_message = 'started', error = NULL, updated_at = now()
WHERE id = %(id)s AND status = 'pending'
RETURNING {TASK_COLUMNS}
"""

SET_PROGRESS = f"""
UPDATE tasks SET progress = %(progress)s, progress_message = coalesce(%(message)s, progress_message),
                 updated_at = now()
WHERE id = %(id)s AND status = 'processing'
RETURNING {TASK_COLUMNS}
"""

#: To a final status, only from one of ``only_from``; the values given replace the stored ones, NULL keeps them.
FINISH_TASK = f"""
UPDATE tasks SET status = %(status)s, error = %(error)s, finished_at = now(),
                 best_run_id = coalesce(%(best_run_id)s, best_run_id),
                 best_model_url = coalesce(%(best_model_url)s, best_model_url),
                 result = coalesce(%(result)s::jsonb, result),
                 progress_message = coalesce(%(message)s, progress_message),
                 progress = CASE WHEN %(status)s = 'done' THEN 1 ELSE progress END,
                 updated_at = now()
WHERE id = %(id)s AND status = ANY(%(only_from)s::text[])
RETURNING {TASK_COLUMNS}
"""

REQUEUE_TASK = f"""
UPDATE tasks SET status = 'pending', progress_message = %(reason)s, updated_at = now()
WHERE id = %(id)s AND status = 'processing'
RETURNING {TASK_COLUMNS}
"""

FLAG_CANCEL = f"""
UPDATE tasks SET cancel_requested = true, updated_at = now()
WHERE id = %(id)s AND status = 'processing'
RETURNING {TASK_COLUMNS}
"""

#: No row: the task is gone, which a worker treats as canceled.
SELECT_CANCEL_REQUESTED = "SELECT cancel_requested OR status = 'canceled' FROM tasks WHERE id = %(id)s"

SELECT_ACTIVE_REINDEX_TASKS = f"""
SELECT {TASK_COLUMNS} FROM tasks
WHERE kind = 'reindex' AND status IN ('pending', 'processing') AND params->>'dest_model_id' = %(dest)s
  AND (%(exclude)s::text IS NULL OR id <> %(exclude)s)
ORDER BY created_at
"""

SELECT_CHILD_TASKS = f"SELECT {TASK_COLUMNS} FROM tasks WHERE parent_id = %(parent)s ORDER BY created_at"

#: Recorded a while ago and never queued (the sending process died in between).
SELECT_UNSENT_PENDING_TASKS = f"""
SELECT {TASK_COLUMNS} FROM tasks
WHERE status = 'pending' AND job_id IS NULL AND created_at < now() - make_interval(secs => %(seconds)s)
ORDER BY created_at
"""

SELECT_DONE_FINE_TUNING_OF_MODEL = f"""
SELECT {TASK_COLUMNS} FROM tasks
WHERE kind = 'fine_tuning' AND status = 'done' AND best_run_id = %(model)s
ORDER BY finished_at DESC LIMIT 1
"""

#: Every pending task's waiting or running job, ordered as a worker picks: running first, priority, then age.
SELECT_QUEUED_JOBS = """
SELECT j.id, j.queue_name, j.status::text AS status, j.priority, t.id AS task_id, t.kind
FROM procrastinate_jobs j JOIN tasks t ON t.job_id = j.id
WHERE j.status IN ('todo', 'doing') ORDER BY j.status = 'doing' DESC, j.priority DESC, j.id
"""

QUEUE_DEPTH = "SELECT queue_name, status::text, count(*) FROM procrastinate_jobs GROUP BY 1, 2 ORDER BY 1, 2"
