"""items: collections remember how items became text; upserted items are kept as catalog items

Revision ID: 0007_item_text_upserted_items
Revises: 0006_session_rank_offset

Three changes, one reason: an item must be embedded the same way in training, reindex and upserts, and
an item upserted through the API must stay part of the catalog.

* ``collections.item_text``: the ``ItemText`` options (fields, template, separator, words per part) the
  collection was built with, so an upsert into it is cut as its other items were. NULL is the default
  ``ItemText``, which is what every collection built before this revision used (every text field
  joined, 200 words per part).
* ``item_changes.data`` replaces ``content``: the upserted item itself (a JSON string or object), not a
  text already cut for one collection, since each collection cuts it with its own ``item_text``.
  Logged texts become JSON strings.
* ``upserted_items``: the current state of every item upserted or deleted through the API (a delete is
  a row with ``deleted``), read on top of the catalog loader by fine-tuning and by a reindex from the
  loader, which used to drop them. The change log cannot serve: it is pruned after each build.
  Collections hold no item data, only parts, so items upserted before this revision are not recovered.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007_item_text_upserted_items"
down_revision = "0006_session_rank_offset"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("collections", sa.Column("item_text", postgresql.JSONB, nullable=True))
    op.add_column("item_changes", sa.Column("data", postgresql.JSONB, nullable=True))
    op.execute("UPDATE item_changes SET data = to_jsonb(content) WHERE content IS NOT NULL")
    op.drop_column("item_changes", "content")
    op.create_check_constraint(
        "ck_item_change_upsert_has_data", "item_changes", "operation = 'delete' OR data IS NOT NULL"
    )
    op.create_table(
        "upserted_items",
        sa.Column("item_id", sa.Text, primary_key=True),
        sa.Column("data", postgresql.JSONB, nullable=True),
        sa.Column("payload", postgresql.JSONB, nullable=True),
        sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("deleted OR data IS NOT NULL", name="ck_upserted_item_has_data"),
    )


def downgrade() -> None:
    op.drop_table("upserted_items")
    op.drop_constraint("ck_item_change_upsert_has_data", "item_changes")
    op.add_column("item_changes", sa.Column("content", sa.Text, nullable=True))
    # A logged object has no single text any more: its string fields joined, as the old reindex did.
    op.execute(
        """
        UPDATE item_changes SET content = CASE jsonb_typeof(data)
            WHEN 'string' THEN data #>> '{}'
            ELSE (SELECT string_agg(value, '. ') FROM jsonb_each_text(data) WHERE value <> '')
        END
        WHERE data IS NOT NULL
        """
    )
    op.drop_column("item_changes", "data")
    op.drop_column("collections", "item_text")
