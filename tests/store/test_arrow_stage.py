"""SQLite loads stage their rows from Arrow in a private file (`etl.store.load._ArrowStage`).

What must hold: the store ends up exactly as the executemany staging left it; the driver's own
copy of SQLite never has the staging file open when the store's connection does; the file is
gone after every load, loaded or failed; a staging failure fails that file only (E_STAGING).
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import adbc_driver_manager.dbapi as adbc_dbapi
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.contracts import load_contract
from etl.errors import CreditpipeError
from etl.run import RunSummary, run_inbox
from etl.store import db, load
from etl.store.schema import record_table, rejected_row, rejection
from tests.fixtures.build import HEADER, PATENT_HEADER, org_row, patent_row, person_row, to_csv
from tests.store.test_store import at

NO = "沪静市监案处字〔2026〕第{:04d}号"
DAY = date(2026, 11, 21)

# Values a binding path could mangle: quotes, separators, line breaks, a NUL, astral and
# full-width characters, long text, an amount with many places, empty optional cells.
TRICKY_FACT = '经查，"当事人"销售\n侵权商品,\t事实清楚；\x00附记 🀄 ＡＢＣ ' + "长" * 600


def _penalties_first() -> list[dict[str, str]]:
    return [
        org_row(NO.format(1)),  # staged with the first chunk, then found repeated: unstaged
        person_row(NO.format(2)),
        org_row(NO.format(3), **{"违法事实": TRICKY_FACT, "罚款金额（万元）": "0.123456"}),
        org_row(NO.format(4), **{"处罚决定日期": "不是日期"}),  # rejected by the check
        org_row(NO.format(1), **{"罚款金额（万元）": "7"}),  # repeats a key: both rejected
    ]


def _penalties_second() -> list[dict[str, str]]:
    return [
        org_row(NO.format(1), **{"罚款金额（万元）": "7"}),  # unchanged
        person_row(NO.format(2), **{"处罚内容": "警告（更正）"}),  # a correction
        org_row(NO.format(3), **{"备注": "撤销：复议撤销"}),  # a revocation
        org_row(NO.format(5)),  # new
    ]


def _patents(step: int) -> list[dict[str, str]]:
    if step == 1:
        return [patent_row(1, status="已撤回"), patent_row(2, status="申诉中")]
    return [patent_row(1), patent_row(2, status="申诉驳回"), patent_row(3)]  # 1: no way back


def _load_twice(root: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """Two runs of penalties and abnormal-patent notices into a new store under `root`."""
    home = root / "home"
    engine = db.make_engine(f"sqlite:///{root / 'store.db'}")
    db.upgrade(engine)
    for step, moment in ((1, "2026-11-20T09:00:00"), (2, "2026-11-21T09:00:00")):
        at(monkeypatch, moment)
        penalties = _penalties_first() if step == 1 else _penalties_second()
        folder = home / "inbox" / "jingan-amr" / "penalty"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"p{step}.csv").write_text(to_csv(penalties, HEADER), "utf-8")
        folder = home / "inbox" / "sh-ipa" / "abnormal_patent"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"n{step}.csv").write_text(to_csv(_patents(step), PATENT_HEADER), "utf-8")
        summary = run_inbox(as_of=DAY, home=home, engine=engine, publish=False)
        assert all(f.status == "loaded" for f in summary.files), summary.to_json()
    return engine


def _store(engine: Engine) -> dict[str, pd.DataFrame]:
    """Every stored row a load writes, without the surrogate ids."""
    tables = [record_table("penalty"), record_table("abnormal_patent"), rejected_row, rejection]
    out = {}
    with engine.connect() as conn:
        for table in tables:
            columns = [c for c in table.c if c.name != "id"]
            query = sa.select(*columns).order_by(*columns[:6])
            out[table.name] = pd.read_sql(query, conn, coerce_float=False)
    return out


def test_arrow_staging_stores_what_executemany_staging_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _isolated_home: Path
) -> None:
    monkeypatch.setenv("CREDITPIPE_CHUNK_ROWS", "2")  # a repeat found chunks after its first
    staged_by: list[str] = []
    unstaged: list[int] = []
    append, unstage = load._ArrowStage.append, load.FileLoad._unstage

    def spy_append(self: load._ArrowStage, frame: pd.DataFrame) -> None:
        staged_by.append("arrow")
        append(self, frame)

    def spy_unstage(self: load.FileLoad, rows: list[int]) -> None:
        unstaged.extend(rows)
        unstage(self, rows)

    monkeypatch.setattr(load._ArrowStage, "append", spy_append)
    monkeypatch.setattr(load.FileLoad, "_unstage", spy_unstage)
    arrow = _store(_load_twice(tmp_path / "arrow", monkeypatch))
    assert staged_by, "the SQLite store file was not staged from Arrow"
    assert sorted(unstaged) == [2, 2]  # the repeated penalty; the patent's refused transition
    monkeypatch.setattr(load, "_sqlite_file", lambda conn: False)  # the executemany path
    staged_by.clear()
    bound = _store(_load_twice(tmp_path / "bound", monkeypatch))
    assert not staged_by
    penalties = arrow["penalty_version"]
    # 2, 3 and (second file) 1, 5 new; 2 corrected; 3 withdrawn.
    assert sorted(zip(penalties["decision_no"].str[-5:-1], penalties["state"], strict=True)) == [
        ("0001", "active"), ("0002", "active"), ("0002", "active"), ("0003", "active"),
        ("0003", "withdrawn"), ("0005", "active"),
    ]  # fmt: skip
    assert TRICKY_FACT in set(penalties["violation_facts"])
    assert len(arrow["rejected_row"]) == 4  # both repeats, the bad date, the transition
    for name, frame in arrow.items():
        pd.testing.assert_frame_equal(frame, bound[name], check_dtype=True, obj=name)


def _open_descriptors(path: Path) -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == str(path)
        except OSError:  # closed meanwhile
            continue
    return count


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    db.upgrade(engine)
    yield engine
    engine.dispose()


def _drop(home: Path, name: str, rows: list[dict[str, str]]) -> None:
    folder = home / "inbox" / "jingan-amr" / "penalty"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(to_csv(rows, HEADER), "utf-8")


def _run(home: Path, engine: Engine) -> RunSummary:
    return run_inbox(as_of=DAY, home=home, engine=engine, publish=False)


def test_only_the_store_connection_has_the_staging_file_open_once_attached(
    sqlite_engine: Engine, _isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, int]] = []
    folders: list[Path] = []
    written: list[tuple[int, int]] = []
    attach, close_adbc, close = (
        load._ArrowStage.attach, load._ArrowStage._close_adbc, load._ArrowStage.close
    )  # fmt: skip

    def spy_attach(self: load._ArrowStage, conn: sa.Connection) -> None:
        attach(self, conn)
        events.append(("attached", _open_descriptors(self.path)))
        folders.append(self.folder)
        written.append((self.path.stat().st_size, self.path.stat().st_mtime_ns))

    def spy_final_close(self: load._ArrowStage) -> None:
        if self.path.exists():
            written.append((self.path.stat().st_size, self.path.stat().st_mtime_ns))
        close(self)

    def spy_close(self: load._ArrowStage) -> None:
        staging = self._adbc is not None
        close_adbc(self)
        if staging:
            events.append(("driver closed", _open_descriptors(self.path)))

    monkeypatch.setattr(load._ArrowStage, "attach", spy_attach)
    monkeypatch.setattr(load._ArrowStage, "_close_adbc", spy_close)
    monkeypatch.setattr(load._ArrowStage, "close", spy_final_close)
    monkeypatch.setenv("CREDITPIPE_CHUNK_ROWS", "1")  # the repeat is unstaged by the merge
    rows = [org_row(NO.format(1)), org_row(NO.format(2)), org_row(NO.format(1))]
    _drop(_isolated_home, "a.csv", rows)
    summary = _run(_isolated_home, sqlite_engine)
    assert (summary.files[0].inserted, summary.files[0].rejected) == (1, 2)
    # The merge only reads the staging file: no journal, no sync of it at commit.
    assert len(written) == 2 and written[0] == written[1]
    # The driver's SQLite has closed every descriptor of the file before the store's SQLite
    # opens it: never both copies at once.
    assert events == [("driver closed", 0), ("attached", 1)]
    assert folders and not folders[0].exists()


def test_a_failed_merge_removes_its_staging_file_and_the_next_run_loads(
    sqlite_engine: Engine, _isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folders: list[Path] = []
    original = load._ArrowStage.attach

    def spy(self: load._ArrowStage, conn: sa.Connection) -> None:
        folders.append(self.folder)
        original(self, conn)

    def broken(self: load.FileLoad) -> load.MergeCounts:
        raise RuntimeError("merge broke after the staging file was attached")

    monkeypatch.setattr(load._ArrowStage, "attach", spy)
    monkeypatch.setattr(load.FileLoad, "_counts", broken)
    _drop(_isolated_home, "a.csv", [org_row(NO.format(1))])
    failed = _run(_isolated_home, sqlite_engine).files[0]
    assert (failed.status, failed.code) == ("failed", "E_INTERNAL")
    assert folders and not folders[0].exists()
    monkeypatch.undo()  # the same store, its pooled connections, a working merge
    again = _run(_isolated_home, sqlite_engine).files[0]
    assert (again.status, again.inserted) == ("loaded", 1)


def test_a_staging_file_that_cannot_be_written_fails_that_file_only(
    sqlite_engine: Engine, _isolated_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = load.tempfile.mkdtemp
    calls: list[Path] = []

    def first_one_blocked(*args: Any, **kwargs: Any) -> str:
        made = real(*args, **kwargs)
        if not str(kwargs.get("prefix", "")).startswith(load._STAGE_PREFIX):  # GX's, say
            return made
        if not calls:
            (Path(made) / "stage.db").mkdir()  # SQLite cannot open a folder as its database
        calls.append(Path(made))
        return made

    monkeypatch.setattr(load.tempfile, "mkdtemp", first_one_blocked)
    _drop(_isolated_home, "a.csv", [org_row(NO.format(1))])
    _drop(_isolated_home, "b.csv", [org_row(NO.format(2))])
    first, second = _run(_isolated_home, sqlite_engine).files
    assert (first.status, first.code) == ("failed", "E_STAGING")
    assert "入库暂存文件写入失败" in (first.message or "")
    assert (second.status, second.inserted) == ("loaded", 1)
    assert (_isolated_home / "inbox" / "jingan-amr" / "penalty" / "a.csv").exists()  # retried
    assert not any(folder.exists() for folder in calls)


def _rows(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {"source_row": range(n), "revoked": [False] * n, "remarks": ["备注" * 100] * n}
    )


def test_a_batch_the_writer_thread_cannot_write_is_raised_as_E_STAGING() -> None:
    stage = load._ArrowStage(load_contract("penalty"), "stage_penalty")
    # A file size limit stands in for a full disk: the write fails with EFBIG, not a signal.
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, hard))
    try:
        stage.append(_rows(20_000))  # written by the thread
        with pytest.raises(CreditpipeError) as raised:
            stage.append(_rows(1))  # waits for the first, and gets its error
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
        stage.close()
    assert raised.value.code == "E_STAGING"
    assert "disk I/O error" in raised.value.message  # SQLite's own words, not the driver's
    assert not stage.folder.exists()


def test_a_statement_the_driver_refuses_is_a_bug_not_a_staging_failure() -> None:
    stage = load._ArrowStage(load_contract("penalty"), "stage_penalty")
    try:
        stage.append(pd.DataFrame({"no_such_column": ["x"]}))
        with pytest.raises(adbc_dbapi.ProgrammingError):
            stage.append(_rows(1))
    finally:
        stage.close()


def test_the_staging_folders_of_killed_loads_are_swept(tmp_path: Path) -> None:
    ended = subprocess.Popen(["true"])  # a process id that has ended
    ended.wait()
    left = tmp_path / f"creditpipe-stage-{ended.pid}-abc"
    live = tmp_path / f"creditpipe-stage-{os.getppid()}-def"  # pytest's parent: alive
    other = tmp_path / "creditpipe-stage-notapid-ghi"
    for folder in (left, live, other):
        (folder / "stage.db").parent.mkdir()
        (folder / "stage.db").write_bytes(b"x")
    load._sweep(tmp_path)
    assert (left.exists(), live.exists(), other.exists()) == (False, True, True)
