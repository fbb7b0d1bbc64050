"""tasks: fine-tuning, reindex and upsert tasks

Revision ID: 0002_tasks
Revises: 0001_clickstream

This revision holds the product's task table; the procrastinate queue schema that runs the tasks
is applied by ``0004_procrastinate``.
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
        # A processing task cannot be stopped from outside its worker; the worker polls this flag.
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind in ('fine_tuning', 'reindex', 'upsert')", name="ck_task_kind"),
        sa.CheckConstraint(
            "status in ('pending', 'processing', 'done', 'failed', 'canceled', 'refused')",
            name="ck_task_status",
        ),
        sa.CheckConstraint("progress >= 0 and progress <= 1", name="ck_task_progress"),
    )
    op.create_index("ix_tasks_kind_status", "tasks", ["kind", "status"])
    op.create_index("ix_tasks_created_at", "tasks", ["created_at"])
    op.create_index("ix_tasks_parent_id", "tasks", ["parent_id"])


def downgrade() -> None:
    op.drop_table("tasks")
