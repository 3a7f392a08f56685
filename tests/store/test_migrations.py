"""The migrated database is exactly what the contracts derive (one fact in one place)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine

from etl.store import db
from etl.store.schema import all_tables, record_table


def _diff(engine: Engine, metadata: sa.MetaData) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def test_migrations_match_the_contract_derived_tables(engine: Engine) -> None:
    assert _diff(engine, all_tables()) == []
    assert db.current_revision(engine) == db.head_revision()


def test_the_comparison_notices_a_contract_change(engine: Engine) -> None:
    derived = sa.MetaData()
    for table in all_tables().tables.values():
        table.to_metadata(derived)
    penalty = derived.tables[record_table("penalty").name]
    penalty.append_column(sa.Column("new_field_without_migration", sa.Text))
    diff = _diff(engine, derived)
    assert any("new_field_without_migration" in str(d) for d in diff)


def test_upgrade_is_idempotent(engine: Engine) -> None:
    db.upgrade(engine)
    db.upgrade(engine)
    assert db.current_revision(engine) == db.head_revision()
