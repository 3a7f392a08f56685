"""The migrated database is exactly what the contracts derive (one fact in one place)."""

from __future__ import annotations

from datetime import datetime

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine

from etl.contracts import available_datasets
from etl.store import db, files
from etl.store.schema import all_tables, record_table, source_file


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


def _file(conn: sa.Connection, sha: str, dataset: str) -> int:
    return files.register(
        conn, sha256=sha * 64, office_id="jingan-amr", dataset=dataset, name=f"{sha}.csv",
        size=1, archive_path=f"archive/{sha}",
    ).id  # fmt: skip


def _version(conn: sa.Connection, dataset: str, file_id: int) -> None:
    conn.execute(
        record_table(dataset).insert().values(
            version=1, state="active", valid_from=datetime(2026, 11, 21), source_file_id=file_id,
            source_row=2,
        )  # fmt: skip
    )


@pytest.mark.parametrize("dataset", available_datasets())
def test_a_file_that_versions_cite_can_be_neither_deleted_nor_renumbered(
    engine: Engine, dataset: str
) -> None:
    """The record tables have no foreign key to `source_file` (a load checks its file once,
    0005); a trigger per record table keeps what the key kept."""
    with db.transaction(engine) as conn:
        cited, uncited = _file(conn, "a", dataset), _file(conn, "b", dataset)
        _version(conn, dataset, cited)
    for change in (
        sa.delete(source_file).where(source_file.c.id == cited),
        sa.update(source_file).where(source_file.c.id == cited).values(id=cited + 100),
    ):
        with pytest.raises(sa.exc.DatabaseError, match="不能删除或改号"), db.transaction(
            engine
        ) as conn:
            conn.execute(change)
    with db.transaction(engine) as conn:
        conn.execute(sa.update(source_file).where(source_file.c.id == cited).values(size=2))
        conn.execute(sa.delete(source_file).where(source_file.c.id == uncited))
        left = conn.execute(sa.select(source_file.c.id)).scalars().all()
    assert left == [cited]


def test_dropping_the_record_tables_foreign_key_keeps_their_rows(store_url: str) -> None:
    """0005 copies SQLite's record tables (batch mode): what they held is still there."""
    engine = db.make_engine(store_url)
    try:
        db.upgrade(engine, "0004")
        with db.transaction(engine) as conn:
            file_id = _file(conn, "c", "penalty")
            _version(conn, "penalty", file_id)
        db.upgrade(engine)
        assert _diff(engine, all_tables()) == []
        with db.transaction(engine) as conn:
            rows = conn.execute(sa.select(record_table("penalty"))).mappings().all()
        assert [(r["source_file_id"], r["source_row"]) for r in rows] == [(file_id, 2)]
    finally:
        engine.dispose()
