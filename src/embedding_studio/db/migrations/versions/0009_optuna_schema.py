"""a schema of its own for Optuna's tables

Revision ID: 0009_optuna_schema
Revises: 0008_collection_item_display

The trials of one fine-tuning task are shared by every worker through an Optuna study in the project's
PostgreSQL (``finetuning.shared_search``). Optuna creates its tables itself and versions them with Alembic in
a table named ``alembic_version``: in ``public`` that is the project's own, whose revision Optuna would take
for an incompatible schema of its own. Its connections set ``search_path`` to this schema instead, so its
tables and its ``alembic_version`` stay apart from the product's. Created here, with the other DDL, so a
worker never needs the right to create schemas.
"""

from alembic import op

revision = "0009_optuna_schema"
down_revision = "0008_collection_item_display"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS optuna")


def downgrade() -> None:
    op.execute("DROP SCHEMA IF EXISTS optuna CASCADE")
