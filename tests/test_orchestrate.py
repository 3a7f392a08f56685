"""etl/orchestrate.py: what each DAG task does, called directly (no Airflow here).

Store cases run on SQLite and PostgreSQL (the `store_url` fixture).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from etl import orchestrate
from etl.errors import ConfigError, CreditpipeError
from etl.store import db
from etl.store.schema import record_table, source_file
from tests.conftest import AS_OF
from tests.fixtures.build import org_row, patent_row
from tests.store_fixtures import at

SHANGHAI = ZoneInfo("Asia/Shanghai")
NO = "沪静市监案处字〔2026〕第{:04d}号"
Put = Callable[..., Path]


# --- business dates ------------------------------------------------------------------------------


def shanghai(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def test_a_requested_date_wins() -> None:
    assert orchestrate.business_date(requested="2026-10-01") == date(2026, 10, 1)
    assert orchestrate.business_date(
        requested=date(2026, 10, 1), run_after=shanghai("2026-11-21 10:00")
    ) == date(2026, 10, 1)


def test_the_daily_run_publishes_the_day_that_has_ended() -> None:
    # The 00:00 run on the 22nd (Shanghai) covers [21st 00:00, 22nd 00:00): the 21st.
    start, end = shanghai("2026-11-21 00:00"), shanghai("2026-11-22 00:00")
    assert orchestrate.business_date(interval_start=start, interval_end=end) == date(2026, 11, 21)
    # The same interval in UTC (as Airflow stores it) gives the same Shanghai date.
    assert orchestrate.business_date(
        interval_start=start.astimezone(UTC), interval_end=end.astimezone(UTC)
    ) == date(2026, 11, 21)


def test_other_runs_work_for_the_shanghai_date_of_their_moment() -> None:
    # The 15-minute intake: a zero-length interval at 23:45 Shanghai = 15:45 UTC.
    moment = shanghai("2026-11-21 23:45").astimezone(UTC)
    assert orchestrate.business_date(interval_start=moment, interval_end=moment) == date(
        2026, 11, 21
    )
    # Asset-triggered and manual runs have no interval: their run_after.
    late = datetime(2026, 11, 21, 16, 30, tzinfo=UTC)  # 00:30 on the 22nd in Shanghai
    assert orchestrate.business_date(run_after=late) == date(2026, 11, 22)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        orchestrate.business_date(run_after=datetime(2026, 11, 21, 10, 0))


def test_report_months() -> None:
    assert orchestrate.previous_month(date(2026, 12, 1)) == date(2026, 11, 1)
    assert orchestrate.previous_month(date(2026, 1, 31)) == date(2025, 12, 1)
    assert orchestrate.report_month(None, date(2026, 3, 1)) == date(2026, 2, 1)
    assert orchestrate.report_month("2026-10", date(2026, 3, 1)) == date(2026, 10, 1)


# --- configuration -------------------------------------------------------------------------------


def test_connection_url_from_an_airflow_postgres_connection() -> None:
    url = orchestrate.connection_url(
        "postgres", host="db", port=5432, login="cp", password="p@ss/word", schema="creditpipe"
    )
    assert url == "postgresql+psycopg://cp:p%40ss%2Fword@db:5432/creditpipe"
    assert sa.make_url(url).password == "p@ss/word"
    assert orchestrate.connection_url("sqlite", host="/data/store.db") == "sqlite:////data/store.db"
    with pytest.raises(ConfigError):
        orchestrate.connection_url("mysql", host="db")


# --- intake --------------------------------------------------------------------------------------


def outcome(status: str, **counts: int) -> dict[str, Any]:
    return {"status": status, "path": "o/d/f.csv", **counts}


def test_summary_says_whether_records_changed() -> None:
    unchanged = outcome("loaded", rows_read=3, accepted=3, unchanged=3)
    rejected = outcome("loaded", rows_read=2, rejected=2)
    duplicate = outcome("duplicate")
    assert orchestrate.summarise_intake([])["store_changed"] is False
    assert orchestrate.summarise_intake([unchanged, rejected, duplicate, None]) == {
        "rows_read": 5,
        "accepted": 3,
        "rejected": 2,
        "inserted": 0,
        "corrected": 0,
        "unchanged": 3,
        "withdrawn": 0,
        "files": 3,
        "by_status": {"duplicate": 1, "loaded": 2},
        "store_changed": False,
        "receipts": [],
    }
    for change in ("inserted", "corrected", "withdrawn"):
        summary = orchestrate.summarise_intake([outcome("loaded", **{change: 1})])
        assert summary["store_changed"] is True


def test_a_failed_file_fails_its_task_and_nothing_else_does() -> None:
    for status in ("loaded", "unreadable", "duplicate", "refused", "vanished"):
        orchestrate.raise_for_failure(outcome(status))
    with pytest.raises(CreditpipeError) as failed:
        orchestrate.raise_for_failure(outcome("failed") | {"code": "E_INTERNAL", "message": "x"})
    assert failed.value.code == "E_INTERNAL"


def test_pending_drops_lists_its_dataset_and_reports_refusals(
    store_url: str, drop: Put, _isolated_home: Path
) -> None:
    drop([org_row(NO.format(1))], name="a.csv")
    drop([patent_row(1)], name="p.csv", office="sh-ipa", dataset="abnormal_patent")
    drop([org_row(NO.format(2))], name="not-allowed.csv", office="sh-ipa", dataset="penalty")
    drop([org_row(NO.format(3))], name="~$lock.csv")  # an editor's lock file: left alone
    stray = _isolated_home / "inbox" / "nobody" / "penalty" / "x.csv"
    stray.parent.mkdir(parents=True)
    stray.write_text("x", encoding="utf-8")

    assert orchestrate.pending_drops("penalty") == ["jingan-amr/penalty/a.csv"]
    assert orchestrate.pending_drops("abnormal_patent") == ["sh-ipa/abnormal_patent/p.csv"]
    receipt = _isolated_home / "outbox" / "sh-ipa" / "not-allowed.csv.receipt.json"
    assert json.loads(receipt.read_text(encoding="utf-8"))["status"] == "refused"
    # The store was brought up to date before any file is processed in parallel.
    engine = db.make_engine(store_url)
    assert db.current_revision(engine) == db.head_revision()
    engine.dispose()
    with pytest.raises(ConfigError):
        orchestrate.pending_drops("no_such_dataset")


def test_process_one_loads_a_file_and_a_rerun_is_harmless(
    store_url: str, drop: Put, _isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at(monkeypatch, "2026-11-21 10:00:00")
    drop([org_row(NO.format(1)), org_row(NO.format(2), 统一社会信用代码="bad")], name="a.csv")
    relpath = "jingan-amr/penalty/a.csv"

    first = orchestrate.process_one(relpath, AS_OF)

    assert first["status"] == "loaded"
    assert (first["rows_read"], first["accepted"], first["rejected"]) == (2, 1, 1)
    assert first["inserted"] == 1
    assert Path(first["receipt"]).is_file()
    assert json.dumps(first)  # an XCom: JSON-serialisable
    outbox = sorted(p.name for p in (_isolated_home / "outbox" / "jingan-amr").iterdir())

    again = orchestrate.process_one(relpath, AS_OF)  # a cleared and rerun task

    assert again["status"] == "vanished"
    assert sorted(p.name for p in (_isolated_home / "outbox" / "jingan-amr").iterdir()) == outbox
    engine = db.make_engine(store_url)
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(source_file)) == 1
        assert conn.scalar(sa.select(sa.func.count()).select_from(record_table("penalty"))) == 1
    engine.dispose()


def test_process_one_never_leaves_the_inbox(store_url: str, _isolated_home: Path) -> None:
    for relpath in ("../outbox/x.csv", "jingan-amr/penalty/../../x", "jingan-amr/x.csv"):
        assert orchestrate.process_one(relpath, AS_OF)["status"] == "refused"


def test_a_file_that_fails_is_reported_failed_and_stays(
    store_url: str, drop: Put, _isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = drop([org_row(NO.format(1))], name="a.csv")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("etl.run._load", broken)
    result = orchestrate.process_one("jingan-amr/penalty/a.csv", AS_OF)

    assert result["status"] == "failed" and "disk on fire" in result["message"]
    assert path.is_file()  # retried by the next attempt or run
    with pytest.raises(CreditpipeError):
        orchestrate.raise_for_failure(result)


# --- publication and reports ---------------------------------------------------------------------


def test_publish_day_evaluates_flags_then_publishes_and_a_rerun_is_unchanged(
    store_url: str, drop: Put, _isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at(monkeypatch, "2026-11-21 10:00:00")
    drop([org_row(NO.format(1), 处罚决定日期="2026-11-02")], name="a.csv")
    orchestrate.process_one("jingan-amr/penalty/a.csv", AS_OF)

    first = orchestrate.publish_day(AS_OF)

    assert first["as_of"] == "2026-11-21"
    assert first["flags"]["as_of"] == "2026-11-21"
    by_dataset = {d["dataset"]: d for d in first["datasets"]}
    assert set(by_dataset) == {"penalty", "abnormal_patent", "serious_dishonesty"}
    assert by_dataset["penalty"]["result"] == "published"
    assert by_dataset["penalty"]["rows"] == 1
    manifest = Path(by_dataset["penalty"]["manifest"])
    assert manifest == _isolated_home / "publish" / "penalty" / "2026-11-21" / "manifest.json"
    assert manifest.is_file()
    event = orchestrate.publication_event(first, "penalty")
    assert event is not None and event["manifest"] == str(manifest) and event["rows"] == 1

    again = orchestrate.publish_day(AS_OF)

    assert {d["result"] for d in again["datasets"]} == {"unchanged"}
    assert orchestrate.publication_event(again, "penalty") is None  # no event for a rerun
    with pytest.raises(CreditpipeError):
        orchestrate.publication_event(again, "no_such_dataset")


def test_monthly_report_for_a_month_as_of_its_last_day(
    store_url: str, drop: Put, _isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at(monkeypatch, "2026-10-25 10:00:00")
    rows = [patent_row(1), patent_row(2, status="已撤回"), patent_row(3, 通知日期="2026-09-30")]
    drop(rows, name="p.csv", office="sh-ipa", dataset="abnormal_patent")
    orchestrate.process_one("sh-ipa/abnormal_patent/p.csv", date(2026, 10, 25))

    report = orchestrate.monthly_report(date(2026, 10, 1))

    assert (report["from"], report["to"], report["as_of"]) == (
        "2026-10-01",
        "2026-10-31",
        "2026-10-31",
    )
    assert report["city"]["notified"] == 2  # the September notice is outside the month
    assert report["city"]["withdrawn"] == 1
    for key in ("csv", "json", "html"):
        assert Path(report[key]).parent == _isolated_home / "reports"
        assert Path(report[key]).is_file()
    assert orchestrate.monthly_report(date(2026, 10, 17))["city"] == report["city"]
