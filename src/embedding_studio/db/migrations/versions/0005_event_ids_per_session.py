"""clickstream: event ids are unique within their session, not across all sessions

Revision ID: 0005_event_ids_per_session
Revises: 0004_procrastinate

Clients number events per session (the README's own example posts ``"e1"`` in every session); with
one global key the second session's ``e1`` was answered 201 and silently not stored. The key becomes
``(session_id, event_id)``. Every stored row keeps its place: ids unique across all sessions are
unique within each, so no row is rewritten. The old ``(session_id)`` index is covered by the new
key's leading column and goes.
"""

from alembic import op

revision = "0005_event_ids_per_session"
down_revision = "0004_procrastinate"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE clickstream_events DROP CONSTRAINT clickstream_events_pkey")
    op.execute(
        "ALTER TABLE clickstream_events ADD CONSTRAINT clickstream_events_pkey PRIMARY KEY (session_id, event_id)"
    )
    op.execute("DROP INDEX IF EXISTS ix_events_session_id")


def downgrade() -> None:
    # The old key cannot hold two sessions' "e1": refuse rather than drop clicks to fit it.
    shared = (
        op.get_bind()
        .exec_driver_sql(
            "SELECT event_id, count(*) FROM clickstream_events GROUP BY event_id HAVING count(*) > 1 "
            "ORDER BY event_id LIMIT 1"
        )
        .fetchone()
    )
    if shared is not None:
        raise RuntimeError(
            f"cannot downgrade below 0005_event_ids_per_session: event id {shared[0]!r} is used by {shared[1]} "
            "sessions, and the old schema keys events by event id alone; delete or rename those events first"
        )
    op.execute("ALTER TABLE clickstream_events DROP CONSTRAINT clickstream_events_pkey")
    op.execute("ALTER TABLE clickstream_events ADD CONSTRAINT clickstream_events_pkey PRIMARY KEY (event_id)")
    op.execute("CREATE INDEX ix_events_session_id ON clickstream_events (session_id)")
