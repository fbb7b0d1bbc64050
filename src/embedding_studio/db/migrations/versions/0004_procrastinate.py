"""procrastinate: the job queue's own schema, in the same database as the task table

Revision ID: 0004_procrastinate
Revises: 0003_vectordb

The schema comes from the installed procrastinate (``SchemaManager.get_schema()``); it is applied
only when the queue tables are absent, so a database where procrastinate was set up by hand keeps it.
"""

from alembic import op

revision = "0004_procrastinate"
down_revision = "0003_vectordb"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from procrastinate.schema import SchemaManager

    bind = op.get_bind()
    exists = bind.exec_driver_sql("select to_regclass('procrastinate_jobs') is not null").scalar()
    if exists:
        return
    # The raw psycopg connection runs the multi-statement script without parameter parsing ('%' in it).
    driver_connection = bind.connection.driver_connection
    driver_connection.execute(SchemaManager.get_schema())


def downgrade() -> None:
    # The queue may hold jobs of other applications sharing the database: leave it in place.
    pass
