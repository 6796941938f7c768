"""Alembic's entry for every store: run on the connection `Database.migrate` hands over (never its own), with
the store's own version table, so the registry's and the job table's schemas are versioned independently."""

from alembic import context

config = context.config
context.configure(
    connection=config.attributes["connection"],
    version_table=config.attributes["version_table"],
    render_as_batch=True,  # SQLite alters tables by copy-and-rename; harmless on PostgreSQL
)
with context.begin_transaction():
    context.run_migrations()
