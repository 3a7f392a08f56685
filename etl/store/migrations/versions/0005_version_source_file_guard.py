"""Record tables check their source file once per load, not once per row.

The foreign key from `<dataset>_version.source_file_id` to `source_file` checked every new
version on its own: on PostgreSQL a trigger per row looking up its file (`SELECT 1 … FOR KEY
SHARE`), ~40 % of the merge's INSERT of 1,000,000 new rows (EXPLAIN ANALYZE, interleaved:
17.0–19.7 s with it, 9.4–12.6 s without); on SQLite ~0.3 s of the same load. Every version a
load writes carries one value, the file the load holds locked (`FileLoad.merge` →
`files.lock_for_load`), so that one look-up is the whole check.

What the key also did is kept by a trigger per record table on `source_file`: a file that
versions cite can be neither deleted nor renumbered. On PostgreSQL the trigger's query runs
after the row is locked and with a fresh snapshot, so a load holding the row makes the DELETE
wait, and then fail once the load has committed.

SQLite cannot drop a constraint: the record tables are copied (batch mode), once.

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
    """The trigger (and, on PostgreSQL, its function) that keeps `table`'s source files."""
    return f"tr_source_file_keep_{table}"


def _message(table: str) -> str:
    return f"source_file 仍被 {table}.source_file_id 引用，不能删除或改号"


def create_guard(table: str) -> None:
    """The trigger on `source_file` that refuses to orphan a version of `table`."""
    name, text = guard_name(table), _message(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
            CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF (TG_OP = 'DELETE' OR NEW.id IS DISTINCT FROM OLD.id) AND EXISTS (
                    SELECT 1 FROM {table} WHERE source_file_id = OLD.id
                ) THEN
                    RAISE EXCEPTION '{text}' USING ERRCODE = 'foreign_key_violation';
                END IF;
                RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
            END
            $$
            """
        )
        op.execute(
            f"CREATE TRIGGER {name} BEFORE DELETE OR UPDATE OF id ON source_file "
            f"FOR EACH ROW EXECUTE FUNCTION {name}()"
        )
        return
    for event, changed in (("DELETE", ""), ("UPDATE OF id", "NEW.id IS NOT OLD.id AND ")):
        suffix = "" if event == "DELETE" else "_id"
        op.execute(
            f"CREATE TRIGGER {name}{suffix} BEFORE {event} ON source_file "
            f"WHEN {changed}EXISTS (SELECT 1 FROM {table} WHERE source_file_id = OLD.id) "
            f"BEGIN SELECT RAISE(ABORT, '{text}'); END"
        )


def drop_guard(table: str) -> None:
    name = guard_name(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER {name} ON source_file")
        op.execute(f"DROP FUNCTION {name}()")
        return
    op.execute(f"DROP TRIGGER {name}")
    op.execute(f"DROP TRIGGER {name}_id")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"fk_{table}_source_file_id_source_file", type_="foreignkey")
        create_guard(table)


def downgrade() -> None:
    for table in TABLES:
        drop_guard(table)
        with op.batch_alter_table(table) as batch:
            batch.create_foreign_key(
                f"fk_{table}_source_file_id_source_file", "source_file", ["source_file_id"], ["id"]
            )
