"""Shared fixtures: a clean CREDITPIPE_HOME per test and helpers to write real-shaped files."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest

from etl.check import CheckResult, check_file
from etl.offices import Office, load_offices
from tests.fixtures.build import HEADER, to_csv

pytest_plugins = ["tests.store_fixtures"]  # store fixtures (SQLite and PostgreSQL) everywhere

FIXTURES = Path(__file__).parent / "fixtures"
AS_OF = dt.date(2026, 11, 21)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("CREDITPIPE_HOME", str(home))
    monkeypatch.delenv("CREDITPIPE_OFFICES", raising=False)
    monkeypatch.delenv("CREDITPIPE_SCHEMAS", raising=False)
    monkeypatch.delenv("CREDITPIPE_DB_URL", raising=False)
    monkeypatch.delenv("CREDITPIPE_CHUNK_ROWS", raising=False)
    return home


@pytest.fixture(autouse=True)
def _clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs at noon of AS_OF in Shanghai. The tests ask for the state at the end of
    AS_OF, and the store stamps each received file with the wall clock: from 16:00 UTC on
    2026-11-21 (midnight in Shanghai) files arriving "now" were received after AS_OF, outside
    every as-of read. A test that needs another moment sets it (`tests.store_fixtures.at`)."""
    from etl import settings
    from etl.store import files

    noon = dt.datetime(AS_OF.year, AS_OF.month, AS_OF.day, 4, 0)  # 12:00 Shanghai, naive UTC
    monkeypatch.setattr(files, "utcnow", lambda: noon)
    monkeypatch.setattr(settings, "today_shanghai", lambda: AS_OF)


@pytest.fixture
def jingan() -> Office:
    office = load_offices().get("jingan-amr")
    assert office is not None
    return office


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[..., Path]:
    """Write rows (dicts keyed by Chinese header) as a CSV file and return its path."""
    counter = iter(range(10_000))

    def write(
        rows: list[dict[str, str]],
        header: list[str] = HEADER,
        encoding: str = "utf-8",
        title: str | None = None,
        name: str | None = None,
    ) -> Path:
        path = tmp_path / (name or f"drop{next(counter)}.csv")
        path.write_bytes(to_csv(rows, header, title).encode(encoding))
        return path

    return write


@pytest.fixture
def check() -> Callable[..., CheckResult]:
    """check_file with the tests' fixed business date."""

    def run(path: Path, **kwargs: object) -> CheckResult:
        kwargs.setdefault("as_of", AS_OF)
        return check_file(path, **kwargs)  # type: ignore[arg-type]

    return run
