"""What the Airflow DAGs call: one plain, typed function per task (no Airflow here).

The DAG files in `dags/` only wire these together; each task is a few lines around one call, so
everything a task does can be run and tested without Airflow (tests/test_orchestrate.py). Every
value a task hands to the next one is small and JSON-serialisable (an XCom): inbox paths as
`office/dataset/file` text, outcomes and summaries as dicts; data itself never travels by XCom.

Every function takes an optional `db_url` (the store; default `CREDITPIPE_DB_URL`, see
etl/settings.py) so that a DAG can resolve an Airflow Connection inside the task and pass it
on, without changing the process's environment.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import url as sa_url

from etl import settings
from etl.contracts import available_datasets
from etl.errors import ConfigError, CreditpipeError
from etl.intake.inbox import (
    Ignored,
    Refusal,
    display_name,
    inbox_dir,
    list_inbox,
    resolve_drop,
)
from etl.offices import load_offices
from etl.run import COUNTS, VANISHED, FileOutcome, process_drop, refuse
from etl.store import db
from etl.store.schema import FAILED, LOADED

log = logging.getLogger("creditpipe.orchestrate")

# Columns of a file outcome that mean the store's records changed (publication must follow).
CHANGES = ("inserted", "corrected", "withdrawn")
PUBLISHED = "published"  # a publication's result when a new folder was committed


# --- intake ------------------------------------------------------------------------------------


def pending_drops(dataset: str, home: Path | None = None, db_url: str | None = None) -> list[str]:
    """The drops waiting in the inbox for `dataset`, as `office/dataset/file`, oldest first.

    Brings the store's schema up to date first (once, before the files are processed in
    parallel). Refused entries of this dataset are reported here, as `creditpipe run` does: a
    receipt in outbox/<office>/ and a warning, on every run until someone moves them. Entries
    that belong to no known dataset (a stray file at the top of an office's folder, an unknown
    office or dataset name) are reported by every intake, so pausing one DAG never hides them.
    """
    datasets = available_datasets()
    if dataset not in datasets:
        raise ConfigError(f"没有数据集 {dataset} 的数据契约（已有：{'、'.join(datasets)}）")
    home = home or settings.home()
    engine = db.make_engine(db_url)
    try:
        db.upgrade(engine)
    finally:
        engine.dispose()
    listing = list_inbox(home, load_offices(), datasets)
    for refusal in listing.refusals:
        if refusal.dataset == dataset or refusal.dataset not in datasets:
            refuse(refusal, home)
    for ignored in listing.ignored:
        if ignored.path.parent.name == dataset:
            log.info("跳过临时文件 %s：%s", display_name(str(ignored.path)), ignored.reason)
    return [drop.relpath for drop in listing.drops if drop.dataset == dataset]


def process_one(
    relpath: str, as_of: date, home: Path | None = None, db_url: str | None = None
) -> dict[str, Any]:
    """Archive, check, load and acknowledge one drop (`office/dataset/file`); the outcome.

    The path arrives as text from another task, so it is validated again (`resolve_drop`):
    nothing outside the inbox can be named. A drop that is no longer there was processed by
    an earlier attempt of this task (a cleared and rerun task) or by another worker: it is
    reported `vanished` and nothing happens, which is what makes a rerun harmless.
    """
    home = home or settings.home()
    registry = load_offices()
    found = resolve_drop(home, relpath, registry, available_datasets())
    if isinstance(found, Refusal):
        if found.path == inbox_dir(home) / relpath and not _lexists(found.path):
            office, dataset, name = relpath.split("/")
            return FileOutcome(office, dataset, display_name(name), display_name(relpath),
                               VANISHED).to_json()  # fmt: skip
        return refuse(found, home).to_json()
    if isinstance(found, Ignored):  # renamed to a temporary name since it was listed
        office, dataset, name = relpath.split("/")
        return FileOutcome(office, dataset, display_name(name), display_name(relpath), VANISHED,
                           message=found.reason).to_json()  # fmt: skip
    engine = db.make_engine(db_url)
    try:
        db.upgrade(engine)  # a no-op at head; needed when only this task is rerun after an upgrade
        outcome = process_drop(found, engine=engine, home=home, as_of=as_of, registry=registry)
    finally:
        engine.dispose()
    log.info(
        "%s：%s，读取 %d 行，接收 %d，拒绝 %d；入库 新增 %d 更正 %d 未变 %d 撤销 %d",
        outcome.path, outcome.status, outcome.rows_read, outcome.accepted, outcome.rejected,
        outcome.inserted, outcome.corrected, outcome.unchanged, outcome.withdrawn,
    )  # fmt: skip
    return outcome.to_json()


def raise_for_failure(outcome: Mapping[str, Any]) -> None:
    """Fail the task of a file whose processing failed (rolled back, left in the inbox).

    A file that was read and rejected, refused or repeated is a result, not a failure: its
    receipt says why. A failure is an error of ours or of the infrastructure, worth a retry.
    """
    if outcome.get("status") == FAILED:
        raise CreditpipeError(
            f"{outcome.get('path')} 处理失败，已回滚并留在收件箱等待重试：{outcome.get('message')}",
            code=str(outcome.get("code") or "E_INTERNAL"),
        )


def summarise_intake(outcomes: Iterable[Mapping[str, Any] | None]) -> dict[str, Any]:
    """Totals over the file outcomes of one intake run, and whether the store changed.

    `store_changed` is what decides the store asset event: only new, corrected or withdrawn
    record versions change what a publication contains; a batch of rejected rows, a duplicate
    drop or a resend of identical rows does not.
    """
    files = [dict(o) for o in outcomes if o]
    totals: dict[str, Any] = {k: sum(int(f.get(k) or 0) for f in files) for k in COUNTS}
    totals["files"] = len(files)
    statuses: dict[str, int] = {}
    for f in files:
        statuses[str(f.get("status"))] = statuses.get(str(f.get("status")), 0) + 1
    totals["by_status"] = dict(sorted(statuses.items()))
    totals["store_changed"] = any(
        f.get("status") == LOADED and sum(int(f.get(k) or 0) for k in CHANGES) > 0 for f in files
    )
    totals["receipts"] = sorted(str(f["receipt"]) for f in files if f.get("receipt"))
    return totals


# --- publication and reports -------------------------------------------------------------------


def publish_day(as_of: date, db_url: str | None = None) -> dict[str, Any]:
    """Evaluate the serious-dishonesty rules as of the date, then publish every dataset.

    Flags first: the `serious_dishonesty` extract is read from the flag registry.
    Returns the publication summary (`etl.publish.PublishSummary.to_json()`) with the flag
    evaluation's counts under `flags`.
    """
    from etl.flags import evaluate_flags
    from etl.memory import release_memory
    from etl.publish import publish

    engine = db.make_engine(db_url)
    try:
        db.upgrade(engine)
        flags = evaluate_flags(engine, as_of)
        release_memory()  # the publication's peak on its own (etl/memory.py)
        summary = publish(engine, as_of, evaluation=flags.evaluation)
    finally:
        engine.dispose()
    out: dict[str, Any] = dict(summary.to_json())
    out["flags"] = flags.to_json()
    for item in out.get("datasets", []):
        log.info("%s %s：%s（%s 行）%s", item.get("dataset"), as_of, item.get("result"),
                 item.get("rows"), item.get("manifest"))  # fmt: skip
    return out


def publication_event(summary: Mapping[str, Any], dataset: str) -> dict[str, Any] | None:
    """The asset event's extra for `dataset` from `publish_day`'s summary, or None when no new
    folder was committed (`unchanged`: a rerun found exactly these files already there)."""
    for item in summary.get("datasets", []):
        if item.get("dataset") == dataset:
            if item.get("result") != PUBLISHED:
                return None
            return {
                "as_of": summary.get("as_of"),
                "manifest": item.get("manifest"),
                "folder": item.get("folder"),
                "rows": item.get("rows"),
                "delta": item.get("delta"),
            }
    raise CreditpipeError(f"发布结果中没有数据集 {dataset}", code="E_PUBLISH")


def previous_month(day: date) -> date:
    """The first day of the calendar month before `day`'s month."""
    return (day.replace(day=1) - timedelta(days=1)).replace(day=1)


def report_month(requested: str | None, run_date: date) -> date:
    """The first day of the month a report run covers: `requested` (`YYYY-MM`), else the month
    before the run's date."""
    if requested:
        return date.fromisoformat(f"{requested}-01")
    return previous_month(run_date)


def monthly_report(
    month_start: date, out_dir: Path | None = None, db_url: str | None = None
) -> dict[str, Any]:
    """The withdrawal-rate report for the calendar month of `month_start`.

    The state is taken as of the month's last day, so the report of a month is the same
    whenever it is (re)run; it is written to `out_dir` (default `$CREDITPIPE_HOME/reports/`) as
    CSV, JSON and HTML.
    """
    from etl.reports.withdrawal import withdrawal_rate, write_report

    first = month_start.replace(day=1)
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    engine = db.make_engine(db_url)
    try:
        db.upgrade(engine)
        with engine.connect() as conn:
            report = withdrawal_rate(conn, first, last, last)
    finally:
        engine.dispose()
    paths = write_report(report, out_dir or settings.home() / "reports")
    body = report.to_json()
    return {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "as_of": last.isoformat(),
        "city": body["rows"][-1],
        "csv": str(paths.csv),
        "json": str(paths.json),
        "html": str(paths.html),
    }


# --- dates and configuration -------------------------------------------------------------------


def business_date(
    *,
    requested: str | date | None = None,
    interval_start: datetime | None = None,
    interval_end: datetime | None = None,
    run_after: datetime | None = None,
) -> date:
    """The Asia/Shanghai business date a DAG run works for.

    1. A date asked for explicitly (the run's `as_of` parameter) wins: reruns and backfills
       by hand.
    2. A run with a real data interval (the daily publication: midnight to midnight) works for
       the day that interval covers, i.e. the Shanghai date of its start. The run that starts
       at 00:00 on the 22nd publishes the 21st, once that day is over.
    3. Anything else (the 15-minute intake, an asset-triggered or manual run) works for the
       Shanghai date of the moment it is for: today.
    """
    if requested:
        return requested if isinstance(requested, date) else date.fromisoformat(str(requested))
    if interval_start is not None and interval_end is not None and interval_end > interval_start:
        return _shanghai(interval_start).date()
    moment = interval_end or run_after
    return _shanghai(moment).date() if moment is not None else settings.today_shanghai()


def _shanghai(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: Airflow's dates are timezone-aware")
    return moment.astimezone(settings.SHANGHAI)


def connection_url(
    conn_type: str,
    *,
    host: str | None = None,
    port: int | None = None,
    login: str | None = None,
    password: str | None = None,
    schema: str | None = None,
) -> str:
    """The store's SQLAlchemy URL from the parts of an Airflow Connection.

    Airflow's PostgreSQL connection type is `postgres` and keeps the database name in `schema`;
    SQLAlchemy wants a dialect with its driver (`postgresql+psycopg`) and a database. A
    `sqlite` connection keeps the file path in `host`.
    """
    kind = conn_type.lower()
    if kind in ("postgres", "postgresql"):
        url = sa_url.URL.create(
            "postgresql+psycopg",
            username=login or None,
            password=password or None,
            host=host or None,
            port=port or None,
            database=schema or None,
        )
        return url.render_as_string(hide_password=False)
    if kind == "sqlite":
        return f"sqlite:///{host or schema}"
    raise ConfigError(f"Airflow 连接类型 {conn_type} 不能作为数据库：请使用 postgres（或 sqlite）")


def _lexists(path: Path) -> bool:
    try:
        path.lstat()
    except FileNotFoundError:
        return False
    return True
