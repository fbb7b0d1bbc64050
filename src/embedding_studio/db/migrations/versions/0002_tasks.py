"""tasks: fine-tuning, reindex and upsert tasks

Revision ID: 0002_tasks
Revises: 0001_clickstream

The procrastinate queue schema is applied by the tasks package (see its own migration step),
this revision holds the product's task table.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002_tasks"
down_revision = "0001_clickstream"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("params", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("parent_id", sa.Text, sa.ForeignKey("tasks.id"), nullable=True),
        sa.Column("best_run_id", sa.Text, nullable=True),
        sa.Column("best_model_url", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("progress", sa.Float, nullable=False, server_default="0"),
        sa.Column("progress_message", sa.Text, nullable=True),
        sa.Column("result", postgresql.JSONB, nullable=True),
        sa.Column("idempotency_key", sa.Text, nullable=True, unique=True),
        sa.Column("job_id", sa.BigInteger, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind in ('fine_tuning', 'reindex', 'upsert')", name="ck_task_kind"),
        sa.CheckConstraint(
            "status in ('pending', 'processing', 'done', 'failed', 'canceled', 'refused')",
            name="ck_task_status",
        ),
    )
    op.create_index("ix_tasks_kind_status", "tasks", ["kind", "status"])


def downgrade() -> None:
    op.drop_table("tasks")
