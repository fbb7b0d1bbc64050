"""clickstream: a session knows the rank of its first shown result (``rank_offset``)

Revision ID: 0006_session_rank_offset
Revises: 0005_event_ids_per_session

Position bias is estimated from the ranks results were shown at. A second page of search results
(``offset`` 10) was stored as ranks 1..n, so its clicks counted as clicks on the top of the list and
skewed the propensities. ``rank_offset`` is how many results came before the first shown one: result
``i`` (1-based) of the session was shown at rank ``rank_offset + i``.

Sessions recorded by ``POST /search`` kept their offset in the payload (``{"model_id", "offset"}``);
those offsets are copied into the column (the payload stays as it was), so earlier pages are ranked
right too. Sessions from elsewhere were sent without an offset and keep 0, which is what they meant.
"""

from alembic import op

revision = "0006_session_rank_offset"
down_revision = "0005_event_ids_per_session"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE clickstream_sessions ADD COLUMN rank_offset integer NOT NULL DEFAULT 0 "
        "CONSTRAINT ck_session_rank_offset CHECK (rank_offset >= 0)"
    )
    # Exactly the payload search wrote ({"model_id": ..., "offset": n}), so a client's own "offset"
    # key, meaning who knows what, is left alone.
    op.execute(
        """
        UPDATE clickstream_sessions
        SET rank_offset = (payload->>'offset')::integer
        WHERE jsonb_typeof(payload) = 'object'
          AND payload ?& array['model_id', 'offset']
          AND (SELECT count(*) FROM jsonb_object_keys(payload)) = 2
          AND jsonb_typeof(payload->'offset') = 'number'
          AND payload->>'offset' ~ '^[0-9]{1,9}$'
        """
    )


def downgrade() -> None:
    # Put the offsets of search sessions back where the old code read them from, then drop the column.
    op.execute(
        """
        UPDATE clickstream_sessions
        SET payload = payload || jsonb_build_object('offset', rank_offset)
        WHERE rank_offset > 0 AND jsonb_typeof(payload) = 'object' AND payload ? 'model_id'
          AND NOT payload ? 'offset'
        """
    )
    op.execute("ALTER TABLE clickstream_sessions DROP COLUMN rank_offset")
