"""Alembic environment: runs on the connection `etl.store.db.upgrade` hands over.

Run by hand (`alembic -c alembic.ini upgrade head`) it connects to `CREDITPIPE_DB_URL`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from etl.store.db import make_engine
from etl.store.schema import all_tables, compared_on

target_metadata = all_tables()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
        compare_type=True,
        include_object=compared_on(connection.dialect.name),
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    with make_engine().begin() as conn:
        _run(conn)
