"""The migrated database is exactly what the contracts derive (one fact in one place)."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine

from etl.contracts import available_datasets
from etl.store import db, files
from etl.store.schema import all_tables, compared_on, record_table, source_file
from tests.store_fixtures import postgres_schema


def _diff(engine: Engine, metadata: sa.MetaData) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={"compare_type": True, "include_object": compared_on(conn.dialect.name)},
        )
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
        record_table(dataset)
        .insert()
        .values(
            version=1,
            state="active",
            valid_from=datetime(2026, 11, 21),
            source_file_id=file_id,
            source_row=2,
        )
    )


@pytest.mark.parametrize("dataset", available_datasets())
def test_a_file_that_versions_cite_can_be_neither_deleted_nor_renumbered(
    engine: Engine, dataset: str
) -> None:
    """SQLite keeps the record tables' foreign key to `source_file`; PostgreSQL has a trigger
    per record table instead (0005), which also refuses to empty `source_file`."""
    with db.transaction(engine) as conn:
        cited, uncited = _file(conn, "a", dataset), _file(conn, "b", dataset)
        _version(conn, dataset, cited)
    changes: list[Any] = [
        sa.delete(source_file).where(source_file.c.id == cited),
        sa.update(source_file).where(source_file.c.id == cited).values(id=cited + 100),
    ]
    if engine.dialect.name == "postgresql":
        changes.append(sa.text("TRUNCATE source_file CASCADE"))
    for change in changes:
        with pytest.raises(sa.exc.IntegrityError), db.transaction(engine) as conn:
            conn.execute(change)
    with db.transaction(engine) as conn:
        conn.execute(sa.update(source_file).where(source_file.c.id == cited).values(size=2))
        conn.execute(sa.delete(source_file).where(source_file.c.id == uncited))
        left = conn.execute(sa.select(source_file.c.id)).scalars().all()
    assert left == [cited]


@pytest.mark.postgres
def test_a_delete_waiting_for_a_load_fails_once_the_load_has_committed() -> None:
    """PostgreSQL: a load holds its file's row (`files.lock_for_load`) while it writes versions;
    a concurrent DELETE of the file waits for it and then finds the versions (READ COMMITTED:
    the guard's query runs with a snapshot taken after the wait)."""
    with postgres_schema() as url:
        _delete_during_load(db.make_engine(url))


def _delete_during_load(engine: Engine) -> None:
    try:
        db.upgrade(engine)
        with db.transaction(engine) as conn:
            file_id = _file(conn, "d", "penalty")
        outcome: list[BaseException | None] = []

        def delete() -> None:
            try:
                with db.transaction(engine) as conn:
                    conn.execute(sa.delete(source_file).where(source_file.c.id == file_id))
                outcome.append(None)
            except BaseException as exc:  # noqa: BLE001 -- inspected below
                outcome.append(exc)

        deleting = threading.Thread(target=delete)
        load = engine.connect()
        try:  # however it ends, the load lets the delete go on
            load.begin()
            files.lock_for_load(load, file_id)
            deleting.start()
            deleting.join(timeout=1.0)
            waited = deleting.is_alive()
            _version(load, "penalty", file_id)
            load.commit()
        finally:
            load.close()
        deleting.join(timeout=30)
        assert waited, "the delete did not wait for the load's lock"
        assert len(outcome) == 1 and isinstance(outcome[0], sa.exc.IntegrityError), outcome
        with db.transaction(engine) as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(source_file)).scalar() == 1
    finally:
        engine.dispose()


def test_0005_keeps_the_stores_rows_both_ways(store_url: str) -> None:
    """0005 and its downgrade leave what the record tables hold as it was."""
    engine = db.make_engine(store_url)
    try:
        db.upgrade(engine, "0004")
        with db.transaction(engine) as conn:
            file_id = _file(conn, "c", "penalty")
            _version(conn, "penalty", file_id)
        for move in (db.upgrade, _downgrade_to_0004, db.upgrade):
            move(engine)
            with db.transaction(engine) as conn:
                rows = conn.execute(sa.select(record_table("penalty"))).mappings().all()
            assert [(r["source_file_id"], r["source_row"]) for r in rows] == [(file_id, 2)]
        assert _diff(engine, all_tables()) == []
    finally:
        engine.dispose()


def _downgrade_to_0004(engine: Engine) -> None:
    from alembic import command

    with db.transaction(engine) as conn:
        command.downgrade(db.alembic_config(conn), "0004")
