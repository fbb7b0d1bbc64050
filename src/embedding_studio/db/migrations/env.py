from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    from embedding_studio.db.engine import get_engine

    connection = get_engine().connect()

context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
with context.begin_transaction():
    # One upgrade at a time even when the API and several workers start together.
    connection.exec_driver_sql("select pg_advisory_xact_lock(727274)")
    context.run_migrations()
