"""reindex shards: a large catalog's reindex split into slices that every reindex worker embeds

Revision ID: 0010_reindex_shards
Revises: 0009_optuna_schema

A reindex of a large catalog lists the catalog's item ids (sorted, so a slice is deterministic), cuts them into
shards, and records one row per shard here (``tasks.shards``). The job that owns the task and helper jobs on the
reindex queue claim shards with ``FOR UPDATE SKIP LOCKED``; a claim carries a token and a heartbeat, so a shard
whose worker died (heartbeat silent) is claimed again by another worker, and a late write of the dead claim is
refused. Rows belong to one build (``build_id``: a retried task builds again under a new id) and are deleted
when the build ends. Not a procrastinate job per shard: the shard table is what the owner waits on, and it
survives any worker.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010_reindex_shards"
down_revision = "0009_optuna_schema"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reindex_shards",
        sa.Column("build_id", sa.Text, primary_key=True),
        sa.Column("shard", sa.Integer, primary_key=True),
        sa.Column("task_id", sa.Text, nullable=False),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("item_ids", postgresql.ARRAY(sa.Text), nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="todo"),
        sa.Column("worker", sa.Text, nullable=True),
        sa.Column("claim", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("items_embedded", sa.Integer, nullable=False, server_default="0"),
        sa.Column("parts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("skipped", postgresql.ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("seconds", sa.Float, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.CheckConstraint("status IN ('todo', 'doing', 'done', 'failed')", name="ck_reindex_shard_status"),
    )
    op.create_index("ix_reindex_shards_task_id", "reindex_shards", ["task_id"])


def downgrade() -> None:
    op.drop_index("ix_reindex_shards_task_id", table_name="reindex_shards")
    op.drop_table("reindex_shards")
