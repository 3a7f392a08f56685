"""Connecting to the store and bringing its schema up to date.

SQLite (the embedded default) gets real transactions, DDL included (the driver would otherwise
commit before a CREATE), write-ahead logging, foreign keys, and a long busy timeout so that
parallel workers queue instead of failing. PostgreSQL needs nothing special.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url

from etl import settings
from etl.errors import StoreError

SQLITE_BUSY_SECONDS = 300
SQLITE_PAGE_SIZE = 65_536  # see _sqlite_connect
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def make_engine(url: str | None = None) -> Engine:
    """An engine for `url` (default: `settings.db_url()`); checks nothing until first use."""
    url = url or settings.db_url()
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError:
        raise StoreError(f"CREDITPIPE_DB_URL 不是有效的数据库地址：{url}") from None
    if parsed.get_backend_name() == "sqlite":
        if sqlite_file(parsed):
            Path(str(parsed.database)).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_SECONDS})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if parsed.get_backend_name() != "postgresql":
        raise StoreError(
            f"不支持的数据库 {parsed.get_backend_name()}：请使用 sqlite:/// 或 postgresql+psycopg://"
        )
    return sa.create_engine(parsed, pool_pre_ping=True)


def sqlite_file(url: URL) -> bool:
    """A SQLite store in a file (not in memory: that lives only as long as its connection)."""
    return url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see _sqlite_begin)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    # 64 KiB pages (SQLite's largest) instead of 4 KiB, for a new store and for this
    # connection's temporary database (the load's staging tables). A load writes every page
    # through its own pwrite (two per WAL frame), spills and reads back pages beyond the small
    # page cache, and frees every staging page on DROP; sixteen times fewer pages made a
    # 1,000,000-row insert's merge -33 % CPU and its commit -60 %, the resend's merge -30 %, and
    # the process's system time -55 % (bench, interleaved). It only takes effect before the
    # first table (so before WAL, which fixes the page size): an existing store keeps its own
    # until a VACUUM outside WAL. Durability is unchanged: same journal, same sync points.
    cursor.execute(f"PRAGMA page_size = {SQLITE_PAGE_SIZE}")
    cursor.execute(f"PRAGMA temp.page_size = {SQLITE_PAGE_SIZE}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # IMMEDIATE takes the write lock up front: two writers queue on the busy timeout rather
    # than deadlock when both try to upgrade a read lock. A reading connection (`reading`)
    # begins DEFERRED: under WAL it reads a snapshot and never blocks the writers.
    if conn.get_execution_options().get(READ_ONLY):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


READ_ONLY = "creditpipe_read_only"


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A read-only connection that sees one consistent snapshot for all its statements
    (SQLite: a deferred transaction under WAL; PostgreSQL: REPEATABLE READ, READ ONLY), so a
    publication reads every dataset as of the same moment and blocks no loader."""
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            else:
                conn.execution_options(**{READ_ONLY: True})
            yield conn
    except sa.exc.OperationalError as exc:
        if exc.connection_invalidated or "connect" in str(exc.orig).lower():
            raise StoreError(f"无法连接数据库 {describe(engine)}：{exc.orig}") from None
        raise


def describe(engine: Engine) -> str:
    """The URL with any password hidden, for messages."""
    return engine.url.render_as_string(hide_password=True)


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """`engine.begin()`, with connection failures turned into a StoreError."""
    try:
        with engine.begin() as conn:
            yield conn
    except sa.exc.OperationalError as exc:
        if exc.connection_invalidated or "connect" in str(exc.orig).lower():
            raise StoreError(f"无法连接数据库 {describe(engine)}：{exc.orig}") from None
        raise


def alembic_config(connection: Connection | None = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the migrations up to `revision` (idempotent)."""
    from alembic import command

    with transaction(engine) as conn:
        command.upgrade(alembic_config(conn), revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None when it has never been migrated)."""
    from alembic.runtime.migration import MigrationContext

    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except sa.exc.OperationalError as exc:
        raise StoreError(f"无法连接数据库 {describe(engine)}：{exc.orig}") from None


def head_revision() -> str | None:
    """The newest revision shipped with this code."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
