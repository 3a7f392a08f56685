"""The intake run: every file in the inbox → archive → check → load → receipt.

`run_inbox` is what `creditpipe run` does; `process_drop` handles one file and is what an
Airflow mapped task calls. Each file is independent: its own registration, its own load
transaction, its own receipt. A file that fails (a bug, a lost connection mid-load) leaves the
store as it was, is marked `failed`, and stays in the inbox to be retried by the next run.
Only a store that cannot be reached at all stops a run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl import settings
from etl.check import CheckResult, Notice, check_file
from etl.checks.codes import message
from etl.contracts import Contract, available_datasets, load_contract
from etl.errors import CreditpipeError, StoreError
from etl.flags import evaluate_flags
from etl.flags.registry import RegistryCounts
from etl.intake.inbox import (
    Archived,
    Drop,
    Ignored,
    Refusal,
    archive,
    display_name,
    list_inbox,
    remove_processed,
)
from etl.memory import release_memory
from etl.offices import Office, Registry, load_offices
from etl.publish import PublishSummary
from etl.publish import publish as publish_extracts
from etl.reports.receipt import write_receipt
from etl.store import db, files
from etl.store.load import FileLoad, MergeCounts
from etl.store.schema import DUPLICATE, FAILED, LOADED, PROCESSED, UNREADABLE

log = logging.getLogger("creditpipe.run")
REFUSED, VANISHED = "refused", "vanished"
COUNTS = ("rows_read", "accepted", "rejected", "inserted", "corrected", "unchanged", "withdrawn")


@dataclass
class FileOutcome:
    """What happened to one inbox entry (the run summary's line for it)."""

    office: str | None
    dataset: str | None
    file: str  # the original name
    path: str  # where it was, relative to the inbox
    status: str  # loaded · unreadable · duplicate · refused · failed · vanished
    sha256: str = ""
    source_file_id: int | None = None
    rows_read: int = 0
    accepted: int = 0
    rejected: int = 0
    inserted: int = 0
    corrected: int = 0
    unchanged: int = 0
    withdrawn: int = 0
    duplicate_of: int | None = None
    receipt: str | None = None
    code: str | None = None
    message: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunSummary:
    as_of: date
    store: str
    files: list[FileOutcome] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)
    flags: RegistryCounts | None = None  # the flag evaluation after loading
    publication: PublishSummary | None = None  # the extracts published last

    @property
    def failed(self) -> list[FileOutcome]:
        return [f for f in self.files if f.status == FAILED]

    def totals(self) -> dict[str, int]:
        out = {k: sum(getattr(f, k) for f in self.files) for k in COUNTS}
        out["files"] = len(self.files)
        for status in (LOADED, UNREADABLE, DUPLICATE, REFUSED, FAILED):
            out[status] = sum(f.status == status for f in self.files)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "store": self.store,
            "files": [f.to_json() for f in self.files],
            "ignored": [
                {"path": display_name(str(i.path)), "reason": i.reason} for i in self.ignored
            ],
            "totals": self.totals(),
            "flags": self.flags.to_json() if self.flags else None,
            "publication": self.publication.to_json() if self.publication else None,
        }


def run_inbox(
    *,
    as_of: date | None = None,
    home: Path | None = None,
    engine: Engine | None = None,
    on_file: Callable[[FileOutcome], None] | None = None,
    flags: bool = True,
    publish: bool = True,
) -> RunSummary:
    """Process everything in the inbox, then evaluate the serious-dishonesty rules and publish
    the extracts for the date (`flags=False`, `publish=False` skip those steps); raises only
    when the run itself cannot complete."""
    home = home or settings.home()
    as_of = as_of or settings.today_shanghai()
    engine = engine or db.make_engine()
    db.upgrade(engine)
    registry = load_offices()
    listing = list_inbox(home, registry, available_datasets())
    summary = RunSummary(as_of, db.describe(engine), ignored=listing.ignored)
    for ignored in listing.ignored:
        log.info("跳过临时文件 %s：%s", display_name(str(ignored.path)), ignored.reason)
    for refusal in listing.refusals:
        summary.files.append(refuse(refusal, home))
        if on_file:
            on_file(summary.files[-1])
    for drop in listing.drops:
        summary.files.append(process_drop(drop, engine=engine, home=home, as_of=as_of,
                                          registry=registry))  # fmt: skip
        release_memory()  # each step's peak on its own (etl/memory.py)
        if on_file:
            on_file(summary.files[-1])
    if flags or publish:
        summary.flags = evaluate_flags(engine, as_of)
        release_memory()
    if publish:
        evaluation = summary.flags.evaluation if summary.flags else None
        summary.publication = publish_extracts(engine, as_of, home=home, evaluation=evaluation)
    return summary


def refuse(refusal: Refusal, home: Path) -> FileOutcome:
    """Report an entry that will not be processed: a receipt when an office can be named."""
    outcome = FileOutcome(
        refusal.office, refusal.dataset, refusal.name, _relative(home, refusal.path), REFUSED,
        code=refusal.code, message=refusal.message,
    )  # fmt: skip
    log.warning("未处理 %s：[%s] %s", display_name(str(refusal.path)), refusal.code,
                refusal.message)  # fmt: skip
    if refusal.office is not None:
        result = CheckResult(
            file=refusal.name, dataset=refusal.dataset or "", office=refusal.office
        )
        result.file_errors.append(Notice(refusal.code, refusal.message))
        paths = write_receipt(result, _outbox(home, refusal.office), status=REFUSED)
        outcome.receipt = str(paths.json)
    return outcome


def process_drop(
    drop: Drop, *, engine: Engine, home: Path, as_of: date, registry: Registry | None = None
) -> FileOutcome:
    """Archive, register, check and load one drop; write its receipt; clear it from the inbox."""
    registry = registry or load_offices()
    office = registry.get(drop.office)
    name = display_name(drop.name)
    outcome = FileOutcome(drop.office, drop.dataset, name, display_name(drop.relpath), FAILED)
    try:
        archived = archive(drop, home)
    except FileNotFoundError:
        outcome.status = VANISHED  # another worker took it, or the office withdrew it
        return outcome
    except OSError as exc:  # swapped for a link, a folder, a pipe; unreadable: this file only
        log.error("无法读取 %s：%s", drop.relpath, exc)
        outcome.code = "E_FILE_UNREADABLE"
        outcome.message = message("E_FILE_UNREADABLE", detail=type(exc).__name__)
        return outcome
    outcome.sha256 = archived.sha256
    contract = load_contract(drop.dataset)
    reg = _register(engine, drop, archived, name, home)
    outcome.source_file_id = reg.id
    if reg.duplicate_of is not None:
        first = reg.duplicate_of
        outcome.status, outcome.duplicate_of = DUPLICATE, first.id
        received = first.received_at.replace(tzinfo=files.UTC).astimezone(settings.SHANGHAI)
        result = CheckResult(
            file=name, dataset=drop.dataset, contract=contract.name, office=drop.office,
            sha256=archived.sha256, size=archived.size,
        )  # fmt: skip
        result.warnings.append(
            Notice(
                "W_DUPLICATE_FILE",
                _duplicate_message(received.isoformat(" ", "seconds"), first.original_name),
            )  # fmt: skip
        )
        outcome.code, outcome.message = "W_DUPLICATE_FILE", result.warnings[0].message
        paths = write_receipt(result, _outbox(home, drop.office), tag=f"duplicate-{reg.id}",
                              status=DUPLICATE, duplicate_of=first.id)  # fmt: skip
        outcome.receipt = str(paths.json)
        remove_processed(drop, archived)
        return outcome

    try:
        result, counts = _load(drop, archived.path, reg, engine, as_of, office, contract)
    except _AlreadyLoaded:
        outcome.status, outcome.duplicate_of = DUPLICATE, reg.id
        outcome.code = "W_DUPLICATE_FILE"
        outcome.message = "同一内容已由另一个任务同时处理，未再次入库"
        remove_processed(drop, archived)
        return outcome
    except StoreError:
        raise
    except Exception as exc:
        log.exception("处理 %s 失败，已回滚，文件留在收件箱等待重试", drop.relpath)
        code = exc.code if isinstance(exc, CreditpipeError) else "E_INTERNAL"
        outcome.code, outcome.message = code, f"{type(exc).__name__}: {exc}"
        with db.transaction(engine) as conn:
            files.mark_failed(conn, reg.id, code, outcome.message)
        return outcome

    result.file = name
    outcome.status = UNREADABLE if result.file_errors else LOADED
    for key in ("rows_read", "accepted", "rejected"):
        setattr(outcome, key, getattr(result, key))
    for key, value in asdict(counts).items():
        setattr(outcome, key, value)
    if result.file_errors:
        outcome.code, outcome.message = result.file_errors[0].code, result.file_errors[0].message
    paths = write_receipt(
        result,
        _outbox(home, drop.office),
        status=outcome.status,
        source_file_id=reg.id,
        store=asdict(counts),
    )
    outcome.receipt = str(paths.json)
    remove_processed(drop, archived)
    return outcome


def _register(
    engine: Engine, drop: Drop, archived: Archived, name: str, home: Path
) -> files.Registration:
    """Register the drop; a concurrent worker registering the same content wins the race."""
    for attempt in range(2):
        try:
            with db.transaction(engine) as conn:
                return files.register(
                    conn,
                    sha256=archived.sha256,
                    office_id=drop.office,
                    dataset=drop.dataset,
                    name=name,
                    size=archived.size,
                    archive_path=str(archived.path.relative_to(home)),
                )
        except sa.exc.IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


def _load(
    drop: Drop,
    path: Path,
    reg: files.Registration,
    engine: Engine,
    as_of: date,
    office: Office | None,
    contract: Contract,
) -> tuple[CheckResult, MergeCounts]:
    """Check, load and record the outcome in one transaction (all or nothing).

    An unreadable file rolls back whatever was staged before the error was found, and is then
    recorded as unreadable with nothing loaded.
    """
    sink: FileLoad | None = None
    try:
        with db.transaction(engine) as conn:
            if files.lock_for_load(conn, reg.id) in PROCESSED:
                raise _AlreadyLoaded
            sink = FileLoad(conn, contract, reg.id)
            with sink.writing():  # every row written behind the check is in, or none goes on
                result = check_file(path, contract.dataset, office=office, as_of=as_of, sink=sink)
            if result.file_errors:
                raise _Unreadable(result)
            counts = sink.merge()
            _add_late_rejections(result, sink.late_rejections)
            sink.add_rejections(result.rejections)
            if counts.total != result.accepted or sink.rejected_rows != result.rejected:
                raise AssertionError(
                    f"{drop.relpath}: store counts {counts} / {sink.rejected_rows} rejected "
                    f"disagree with the check ({result.accepted} accepted, "
                    f"{result.rejected} rejected)"
                )
            _finish(conn, reg.id, result, contract.name, as_of, counts)
        return result, counts
    except _Unreadable as unreadable:
        with db.transaction(engine) as conn:
            _finish(conn, reg.id, unreadable.result, contract.name, as_of, MergeCounts())
        return unreadable.result, MergeCounts()
    finally:
        if sink is not None:  # its staging file, once the transaction has ended either way
            sink.close()


def _add_late_rejections(result: CheckResult, late: pd.DataFrame) -> None:
    """Rows only the store could reject (a status change its stored version cannot make)."""
    if late.empty:
        return
    result.rejections = (
        pd.concat([result.rejections, late], ignore_index=True)
        .sort_values(["row", "code"], kind="stable")
        .reset_index(drop=True)
    )
    moved = int(late["row"].nunique())
    result.rejected += moved
    result.accepted -= moved


class _AlreadyLoaded(Exception):  # another worker loaded the same content meanwhile
    pass


class _Unreadable(Exception):
    def __init__(self, result: CheckResult) -> None:
        self.result = result


def _finish(
    conn: Any, file_id: int, result: CheckResult, contract: str, as_of: date, counts: MergeCounts
) -> None:
    first = result.file_errors[0] if result.file_errors else None
    files.finish(
        conn,
        file_id,
        UNREADABLE if first else LOADED,
        contract=contract,
        as_of=as_of,
        encoding=result.encoding or None,
        rows_read=result.rows_read,
        accepted=result.accepted,
        rejected=result.rejected,
        error_code=first.code if first else None,
        error_message=first.message if first else None,
        **asdict(counts),
    )


def _duplicate_message(received: str, original: str) -> str:
    return message("W_DUPLICATE_FILE", received=received, original=original)


def _relative(home: Path, path: Path) -> str:
    try:
        return display_name(str(path.relative_to(home / "inbox")))
    except ValueError:
        return display_name(str(path))


def _outbox(home: Path, office: str) -> Path:
    return home / "outbox" / office
