"""Store fixtures: every store test runs on SQLite and on PostgreSQL.

PostgreSQL comes from CREDITPIPE_TEST_DB_URL (`make test` sets it and starts the server). Each
test gets its own schema, dropped afterwards. When the variable is set but the server cannot be
reached the tests fail, never skip: a PostgreSQL test that silently skips is a defect.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.run import FileOutcome, RunSummary, run_inbox
from etl.store import db, files
from tests.fixtures.build import HEADER, PATENT_HEADER, to_csv

PG_ENV = "CREDITPIPE_TEST_DB_URL"


def _postgres_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.fail(
            f"{PG_ENV} is not set: store tests must also run on PostgreSQL "
            "(make test sets it, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)"
        )
    return url


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A URL of a fresh PostgreSQL schema, dropped afterwards."""
    base = sa.make_url(_postgres_url())
    schema = f"cp_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A fresh, empty store; CREDITPIPE_DB_URL points at it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        monkeypatch.setenv("CREDITPIPE_DB_URL", url)
        yield url
        return
    with postgres_schema() as url:
        monkeypatch.setenv("CREDITPIPE_DB_URL", url)
        yield url


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    engine = db.make_engine(store_url)
    db.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def drop(_isolated_home: Path) -> Callable[..., Path]:
    """Put a CSV of `rows` into the inbox as `office/dataset/name`; returns its path."""

    def put(
        rows: list[dict[str, str]],
        name: str = "drop.csv",
        office: str = "jingan-amr",
        dataset: str = "penalty",
        encoding: str = "utf-8",
    ) -> Path:
        folder = _isolated_home / "inbox" / office / dataset
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        header = PATENT_HEADER if dataset == "abnormal_patent" else HEADER
        extra = [k for row in rows for k in row if k not in header]  # e.g. 工商注册号
        path.write_bytes(to_csv(rows, header + list(dict.fromkeys(extra))).encode(encoding))
        return path

    return put


@pytest.fixture
def run(engine: Engine, _isolated_home: Path) -> Callable[..., RunSummary]:
    """`run_inbox` on the test's home and store."""

    def go(as_of: date = date(2026, 11, 21), publish: bool = False) -> RunSummary:
        # Publication has its own tests (tests/publish); most store tests need not pay for it.
        return run_inbox(as_of=as_of, home=_isolated_home, engine=engine, publish=publish)

    return go


def at(monkeypatch: pytest.MonkeyPatch, shanghai: str) -> None:
    """Make the store believe files arrive (and decisions are taken) at `shanghai` local time."""
    moment = datetime.fromisoformat(shanghai + "+08:00")
    naive_utc = moment.astimezone(UTC).replace(tzinfo=None)
    monkeypatch.setattr(files, "utcnow", lambda: naive_utc)


def only(summary: RunSummary) -> FileOutcome:
    assert len(summary.files) == 1, summary.to_json()
    return summary.files[0]
