"""clickstream: batches, sessions, events

Revision ID: 0001_clickstream
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001_clickstream"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table(
        "clickstream_batches",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("status", sa.Text, nullable=False, server_default="collecting"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status in ('collecting', 'released')", name="ck_batch_status"),
    )
    # At most one batch collects at a time: new sessions always know where they go.
    op.create_index(
        "uq_one_collecting_batch",
        "clickstream_batches",
        ["status"],
        unique=True,
        postgresql_where=sa.text("status = 'collecting'"),
    )
    op.execute("INSERT INTO clickstream_batches (status) VALUES ('collecting')")
    op.create_table(
        "clickstream_sessions",
        sa.Column("session_id", sa.Text, primary_key=True),
        sa.Column("batch_id", sa.BigInteger, sa.ForeignKey("clickstream_batches.id"), nullable=False),
        sa.Column("query", postgresql.JSONB, nullable=False),
        sa.Column("results", postgresql.ARRAY(sa.Text), nullable=False),
        sa.Column("user_id", sa.Text, nullable=True),
        sa.Column("is_irrelevant", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("payload", postgresql.JSONB, nullable=True),
    )
    op.create_index("ix_sessions_batch_id", "clickstream_sessions", ["batch_id", "session_id"])
    op.create_table(
        "clickstream_events",
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column(
            "session_id",
            sa.Text,
            sa.ForeignKey("clickstream_sessions.session_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("item_id", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False, server_default="click"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("payload", postgresql.JSONB, nullable=True),
    )
    op.create_index("ix_events_session_id", "clickstream_events", ["session_id"])


def downgrade() -> None:
    op.drop_table("clickstream_events")
    op.drop_table("clickstream_sessions")
    op.drop_table("clickstream_batches")
