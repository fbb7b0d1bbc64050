"""vectordb: embedding models, collections, the blue pointer and the item change log

Revision ID: 0003_vectordb
Revises: 0002_tasks

Collection tables themselves (one per model) are created at run time by the vector store, since
their vector dimension depends on the model.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003_vectordb"
down_revision = "0002_tasks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table(
        "embedding_models",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("model_uri", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("dim > 0", name="ck_embedding_model_dim"),
    )
    op.create_table(
        "collections",
        sa.Column("model_id", sa.Text, sa.ForeignKey("embedding_models.id"), primary_key=True),
        sa.Column("table_name", sa.Text, nullable=False, unique=True),
        sa.Column("state", sa.Text, nullable=False, server_default="building"),
        sa.Column("item_count", sa.BigInteger, nullable=False, server_default="0"),
        # Changes to items with a higher sequence number than this were logged after the collection's
        # snapshot of its source was taken: the reindex replays them before it hands the collection over.
        sa.Column("change_seq_start", sa.BigInteger, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("state in ('building', 'ready', 'blue', 'retired')", name="ck_collection_state"),
    )
    # The blue pointer: exactly one row; previous_blue_model_id makes rollback one flip back.
    op.create_table(
        "deployment",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("blue_model_id", sa.Text, sa.ForeignKey("embedding_models.id"), nullable=True),
        sa.Column("previous_blue_model_id", sa.Text, sa.ForeignKey("embedding_models.id"), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("id = 1", name="ck_single_deployment_row"),
    )
    op.execute("INSERT INTO deployment (id) VALUES (1)")
    # Every upsert or delete of items, in commit order of their sequence numbers, so a collection being
    # rebuilt from a snapshot can catch up with what changed while it was built.
    op.create_table(
        "item_changes",
        sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("item_id", sa.Text, nullable=False),
        sa.Column("operation", sa.Text, nullable=False),
        sa.Column("content", sa.Text, nullable=True),
        sa.Column("payload", postgresql.JSONB, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("operation in ('upsert', 'delete')", name="ck_item_change_operation"),
    )


def downgrade() -> None:
    op.drop_table("item_changes")
    op.drop_table("deployment")
    op.drop_table("collections")
    op.drop_table("embedding_models")
