"""PostgreSQL loads COPY the check's rows in a thread of their own (`FileLoad._behind`).

What must hold: a COPY that fails fails that file only, with nothing loaded; a check that fails
in the caller's thread, or a load interrupted while it waits for the COPYs (Ctrl-C, Airflow's
execution_timeout), stops them before the transaction rolls back (no COPY under way or started
after it); no thread is left either way; the next run loads the file whole.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

import etl.check as checking
from etl.run import FileOutcome, RunSummary, run_inbox
from etl.store import db, load
from etl.store.schema import record_table, source_file
from tests.fixtures.build import HEADER, org_row, to_csv
from tests.interrupts import Interrupted, interrupted_after
from tests.store_fixtures import postgres_schema

pytestmark = pytest.mark.postgres

NO = "沪静市监案处字〔2026〕第{:04d}号"
DAY = date(2026, 11, 21)
ROWS = 12


@pytest.fixture
def pg_engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("CREDITPIPE_CHUNK_ROWS", "2")  # six chunks, six COPYs of staged rows
    with postgres_schema() as url:
        engine = db.make_engine(url)
        db.upgrade(engine)
        yield engine
        engine.dispose()


def _drop(home: Path) -> None:
    folder = home / "inbox" / "jingan-amr" / "penalty"
    folder.mkdir(parents=True, exist_ok=True)
    rows = [org_row(NO.format(i)) for i in range(1, ROWS + 1)]
    (folder / "a.csv").write_text(to_csv(rows, HEADER), "utf-8")


def _run(home: Path, engine: Engine) -> RunSummary:
    return run_inbox(as_of=DAY, home=home, engine=engine, publish=False)


def _run_noting_rollbacks(
    engine: Engine,
    home: Path,
    events: list[str],
    monkeypatch: pytest.MonkeyPatch,
    patches: list[tuple[object, str, object]],
) -> FileOutcome:
    """The outcome of running a drop with `patches` in place, each rollback noted in `events`."""

    def rolled_back(conn: sa.Connection) -> None:
        events.append("rollback")

    _drop(home)
    event.listen(engine, "rollback", rolled_back)
    try:
        with monkeypatch.context() as patched:
            for target, name, value in patches:
                patched.setattr(target, name, value)
            return _run(home, engine).files[0]
    finally:
        event.remove(engine, "rollback", rolled_back)


def _copy_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("creditpipe-copy-")]


def _stored(engine: Engine) -> tuple[int, list[str]]:
    with engine.connect() as conn:
        versions = conn.execute(sa.select(sa.func.count()).select_from(record_table("penalty")))
        status = conn.execute(sa.select(source_file.c.status)).scalars().all()
        return int(versions.scalar_one()), list(status)


def test_a_failed_copy_fails_that_file_only_and_the_next_run_loads_it(
    pg_engine: Engine, _isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real, threads = load.bulk_insert, []

    def copy(conn: sa.Connection, table: sa.Table, frame: pd.DataFrame) -> None:
        threads.append(threading.current_thread().name)
        if table.name == "stage_penalty" and len(threads) == 3:
            raise OSError("connection to server lost")
        real(conn, table, frame)

    _drop(_isolated_home)
    with monkeypatch.context() as patched:
        patched.setattr(load, "bulk_insert", copy)
        failed = _run(_isolated_home, pg_engine).files[0]
    assert (failed.status, failed.code) == ("failed", "E_INTERNAL")
    assert "connection to server lost" in (failed.message or "")
    assert threads[:3] == ["creditpipe-copy-penalty"] * 3  # behind the check, not in it
    assert not _copy_threads()
    assert _stored(pg_engine) == (0, ["failed"])
    again = _run(_isolated_home, pg_engine).files[0]
    assert (again.status, again.inserted) == ("loaded", ROWS)
    assert not _copy_threads()


def test_a_failed_check_stops_the_copies_before_the_rollback(
    pg_engine: Engine, _isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_copy, real_validate = load.bulk_insert, checking.validate_chunk
    chunks = []

    def slow_copy(conn: sa.Connection, table: sa.Table, frame: pd.DataFrame) -> None:
        events.append("copy start")
        time.sleep(0.2)  # the check runs ahead: a COPY is under way when it fails
        real_copy(conn, table, frame)
        events.append("copy end")

    def validate(*args: object, **kwargs: object) -> object:
        chunks.append(1)
        if len(chunks) == 4:
            events.append("check failed")
            raise RuntimeError("the check broke on the fourth chunk")
        return real_validate(*args, **kwargs)  # type: ignore[arg-type]

    failed = _run_noting_rollbacks(
        pg_engine, _isolated_home, events, monkeypatch,
        [(load, "bulk_insert", slow_copy), (checking, "validate_chunk", validate)],
    )  # fmt: skip
    assert (failed.status, failed.code) == ("failed", "E_INTERNAL")
    first_rollback = events.index("rollback")
    before = events[:first_rollback]
    assert "check failed" in before
    # Every COPY that started ended before the rollback; none started after it.
    assert before.count("copy start") == before.count("copy end") >= 1
    assert "copy start" not in events[first_rollback:]
    assert not _copy_threads()
    assert _stored(pg_engine) == (0, ["failed"])
    again = _run(_isolated_home, pg_engine).files[0]
    assert (again.status, again.inserted) == ("loaded", ROWS)


def test_a_load_interrupted_while_settling_stops_the_copies_before_the_rollback(
    pg_engine: Engine, _isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_copy, real_settle = load.bulk_insert, load.FileLoad.settle
    settling = threading.Event()

    def slow_copy(conn: sa.Connection, table: sa.Table, frame: pd.DataFrame) -> None:
        events.append("copy start")
        if table.name == "stage_penalty" and frame["source_row"].max() == ROWS:
            # The last chunk but one (the last holds the last record, spreadsheet row ROWS + 1):
            # the check ends with this COPY under way and the last one waiting behind it.
            assert settling.wait(10)
            time.sleep(0.3)
        real_copy(conn, table, frame)
        events.append("copy end")

    def settle(self: load.FileLoad) -> None:
        settling.set()
        try:
            with interrupted_after(0.1):  # while settle waits for the COPYs
                real_settle(self)
        except Interrupted:
            events.append("interrupted")
            raise

    failed = _run_noting_rollbacks(
        pg_engine, _isolated_home, events, monkeypatch,
        [(load, "bulk_insert", slow_copy), (load.FileLoad, "settle", settle)],
    )  # fmt: skip
    assert (failed.status, failed.code) == ("failed", "E_INTERNAL")
    interrupted, first_rollback = events.index("interrupted"), events.index("rollback")
    assert interrupted < first_rollback
    # The COPY under way when the interrupt came ended before the rollback; the one waiting
    # behind it never started.
    assert events[interrupted:first_rollback].count("copy end") == 1
    assert "copy start" not in events[interrupted:]
    assert not _copy_threads()
    assert _stored(pg_engine) == (0, ["failed"])
    again = _run(_isolated_home, pg_engine).files[0]
    assert (again.status, again.inserted) == ("loaded", ROWS)
