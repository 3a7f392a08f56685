"""PostgreSQL: record tables check their source file once per load, not once per row.

The foreign key from `<dataset>_version.source_file_id` to `source_file` checked every new
version on its own: a trigger per row looking up its file (`SELECT 1 … FOR KEY SHARE`), ~40 % of
the merge's INSERT of 1,000,000 new rows (EXPLAIN ANALYZE, interleaved: 17.0–19.7 s with it,
9.4–12.6 s without). Every version a load writes carries one value, the file the load holds
locked (`etl.run._load` and `FileLoad.merge` → `files.lock_for_load`), so that one look-up is
the whole check.

What the key did for `source_file` is kept by a trigger per record table: a file that versions
cite can be neither deleted nor renumbered, and `source_file` cannot be truncated while the
record table holds rows. The trigger's query runs after the row is locked and with a fresh
snapshot (the function is VOLATILE), so a READ COMMITTED delete waits for a load holding the
file and then fails; the record table is named with the trigger's own schema, never through
the caller's `search_path`.

SQLite keeps its key (the schema declares it for SQLite only): there it cost ~0.3 s of a
1,000,000-row load, and SQLite could only drop it by copying the tables.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLES = ["penalty_version", "abnormal_patent_version"]


def guard_name(table: str) -> str:
    """The trigger and its function that keep `table`'s source files (PostgreSQL)."""
    return f"tr_source_file_keep_{table}"


def _key(table: str) -> str:
    return f"fk_{table}_source_file_id_source_file"


def create_guard(table: str) -> None:
    name = guard_name(table)
    op.execute(
        f"""
        CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql VOLATILE AS $$
        DECLARE
            cited boolean := false;
        BEGIN
            IF TG_OP = 'TRUNCATE' THEN
                EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.%I)', TG_TABLE_SCHEMA, '{table}')
                INTO cited;
            ELSIF TG_OP = 'DELETE' OR NEW.id IS DISTINCT FROM OLD.id THEN
                EXECUTE format(
                    'SELECT EXISTS (SELECT 1 FROM %I.%I WHERE source_file_id = $1)',
                    TG_TABLE_SCHEMA, '{table}'
                ) INTO cited USING OLD.id;
            END IF;
            IF cited THEN
                RAISE EXCEPTION 'source_file 仍被 {table}.source_file_id 引用，不能删除、改号或清空'
                    USING ERRCODE = 'foreign_key_violation';
            END IF;
            IF TG_OP = 'DELETE' THEN
                RETURN OLD;
            END IF;
            RETURN NEW;
        END
        $$
        """
    )
    op.execute(
        f"CREATE TRIGGER {name} BEFORE DELETE OR UPDATE OF id ON source_file "
        f"FOR EACH ROW EXECUTE FUNCTION {name}()"
    )
    op.execute(
        f"CREATE TRIGGER {name}_truncate BEFORE TRUNCATE ON source_file "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
    )


def drop_guard(table: str) -> None:
    name = guard_name(table)
    op.execute(f"DROP TRIGGER {name}_truncate ON source_file")
    op.execute(f"DROP TRIGGER {name} ON source_file")
    op.execute(f"DROP FUNCTION {name}()")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.drop_constraint(_key(table), table, type_="foreignkey")
        create_guard(table)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        drop_guard(table)
        op.create_foreign_key(_key(table), table, "source_file", ["source_file_id"], ["id"])
