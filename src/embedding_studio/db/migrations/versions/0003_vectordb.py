"""vectordb: embedding models, collections and the blue pointer

Revision ID: 0003_vectordb
Revises: 0002_tasks
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_vectordb"
down_revision = "0002_tasks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "embedding_models",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("model_uri", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "collections",
        sa.Column("model_id", sa.Text, sa.ForeignKey("embedding_models.id"), primary_key=True),
        sa.Column("table_name", sa.Text, nullable=False, unique=True),
        sa.Column("state", sa.Text, nullable=False, server_default="building"),
        sa.Column("item_count", sa.BigInteger, nullable=False, server_default="0"),
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


def downgrade() -> None:
    op.drop_table("deployment")
    op.drop_table("collections")
    op.drop_table("embedding_models")
