"""The versioned store, through the intake run: every case on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.errors import StoreError
from etl.intake.inbox import Drop, Refusal, resolve_drop
from etl.offices import load_offices
from etl.run import RunSummary, run_inbox
from etl.store import db, load
from etl.store.query import end_of_day, file_counts, state_as_of
from etl.store.schema import record_table, rejected_row, rejection, source_file
from tests.conftest import AS_OF
from tests.fixtures.build import ROOT, org_row, person_row
from tests.store_fixtures import at, only

NO = "沪静市监案处字〔2026〕第{:04d}号"
Run = Callable[..., RunSummary]
Put = Callable[..., Path]


def three() -> list[dict[str, str]]:
    return [
        org_row(NO.format(1)),
        person_row(NO.format(2)),
        org_row(NO.format(3), **{"罚款金额（万元）": "0.3"}),
    ]


def versions(engine: Engine) -> pd.DataFrame:
    table = record_table("penalty")
    with engine.connect() as conn:
        return pd.read_sql(sa.select(table).order_by(table.c.id), conn, coerce_float=False)


def as_of(engine: Engine, day: date, active_only: bool = True) -> pd.DataFrame:
    with engine.connect() as conn:
        frames = list(state_as_of(conn, "penalty", day, active_only=active_only, chunk_rows=2))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# --- versioned upsert ------------------------------------------------------------------------


def test_new_keys_insert_version_1(
    engine: Engine, drop: Put, run: Run, _isolated_home: Path
) -> None:
    path = drop(three())
    outcome = only(run())
    assert (outcome.status, outcome.inserted, outcome.accepted, outcome.rejected) == (
        "loaded", 3, 3, 0,
    )  # fmt: skip
    frame = versions(engine)
    assert list(frame["version"]) == [1, 1, 1]
    assert frame["valid_to"].isna().all() and set(frame["state"]) == {"active"}
    assert list(frame["source_row"]) == [2, 3, 4]  # spreadsheet rows, header is row 1
    assert frame.loc[2, "fine_amount"] == Decimal("0.300000")
    assert frame.loc[0, "decision_date"] == date(2026, 5, 11)
    assert not path.exists()  # processed drops leave the inbox
    archived = list((_isolated_home / "archive").rglob("*.csv"))
    assert len(archived) == 1 and archived[0].name == f"{outcome.sha256}.csv"
    assert archived[0].parent.name == outcome.sha256[:2]


def test_identical_resend_changes_nothing(engine: Engine, drop: Put, run: Run) -> None:
    drop(three(), name="first.csv")
    run()
    before = versions(engine)
    drop(three(), name="again-in-gbk.csv", encoding="gbk")  # other bytes, same records
    outcome = only(run())
    assert (outcome.status, outcome.unchanged, outcome.inserted, outcome.corrected) == (
        "loaded", 3, 0, 0,
    )  # fmt: skip
    pd.testing.assert_frame_equal(versions(engine), before)


def test_changed_content_is_a_correction(
    engine: Engine, drop: Put, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    at(monkeypatch, "2026-11-01T10:00:00")
    drop(three(), name="first.csv")
    run()
    at(monkeypatch, "2026-11-10T23:59:59")
    fixed = three()
    fixed[2] = org_row(NO.format(3), **{"罚款金额（万元）": "0.35"})
    drop(fixed, name="corrected.csv")
    outcome = only(run())
    assert (outcome.corrected, outcome.unchanged, outcome.inserted) == (1, 2, 0)
    frame = versions(engine)
    key = frame[frame["decision_no"] == NO.format(3)].sort_values("version")
    assert list(key["version"]) == [1, 2]
    assert key["valid_to"].iloc[0] == key["valid_from"].iloc[1]  # closed when the next opened
    assert pd.isna(key["valid_to"].iloc[1])
    assert key["source_file_id"].iloc[1] == outcome.source_file_id
    assert key["source_row"].iloc[1] == 4

    def fine(day: date) -> Decimal:
        state = as_of(engine, day)
        return state.loc[state["decision_no"] == NO.format(3), "fine_amount"].item()

    assert as_of(engine, date(2026, 10, 31)).empty  # nothing received yet
    assert fine(date(2026, 11, 9)) == Decimal("0.3")
    assert fine(date(2026, 11, 10)) == Decimal("0.35")  # 23:59:59 Shanghai is still the 10th
    assert len(as_of(engine, date(2026, 11, 10))) == 3


def test_end_of_day_is_shanghai_midnight() -> None:
    assert end_of_day(date(2026, 11, 10)) == datetime(2026, 11, 10, 16, 0, 0)  # naive UTC


def test_revocation_withdraws_the_record(
    engine: Engine, drop: Put, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    at(monkeypatch, "2026-11-01T09:00:00")
    drop(three(), name="first.csv")
    run()
    at(monkeypatch, "2026-11-05T09:00:00")
    revoked = org_row(NO.format(1), 备注="撤销：经复议撤销原处罚决定")
    unknown = org_row(NO.format(9), 备注="撤销")
    drop([revoked, unknown], name="revocations.csv")
    outcome = only(run())
    assert (outcome.withdrawn, outcome.inserted, outcome.corrected) == (2, 0, 0)
    frame = versions(engine)
    latest = frame[frame["valid_to"].isna()].set_index("decision_no")["state"]
    assert latest[NO.format(1)] == "withdrawn" and latest[NO.format(9)] == "withdrawn"
    assert set(as_of(engine, date(2026, 11, 5))["decision_no"]) == {NO.format(2), NO.format(3)}
    assert set(as_of(engine, date(2026, 11, 4))["decision_no"]) == {
        NO.format(1), NO.format(2), NO.format(3),
    }  # fmt: skip
    everything = as_of(engine, date(2026, 11, 5), active_only=False)
    assert len(everything) == 4
    # Sending the same revocation again is an identical re-send.
    drop([revoked], name="revocations-again.csv", encoding="gbk")
    assert only(run()).unchanged == 1
    assert len(versions(engine)) == len(frame)


# --- drops: duplicates, refusals, untrusted names --------------------------------------------


def test_duplicate_drop_loads_nothing_and_keeps_the_first_receipt(
    engine: Engine, drop: Put, run: Run, _isolated_home: Path
) -> None:
    drop(three() + [org_row("bad", 统一社会信用代码="91110108551385082A")], name="x.csv")
    first = only(run())
    before = versions(engine)
    path = drop(three() + [org_row("bad", 统一社会信用代码="91110108551385082A")], name="x.csv")
    second = only(run())
    assert second.status == "duplicate" and second.duplicate_of == first.source_file_id
    assert second.code == "W_DUPLICATE_FILE" and not path.exists()
    pd.testing.assert_frame_equal(versions(engine), before)
    receipts = sorted(p.name for p in (_isolated_home / "outbox" / "jingan-amr").glob("*.json"))
    assert len(receipts) == 2
    original = json.loads(Path(first.receipt or "").read_text("utf-8"))
    assert original["rejected"] == 1 and original["status"] == "loaded"
    duplicate = json.loads(Path(second.receipt or "").read_text("utf-8"))
    assert duplicate["warnings"][0]["code"] == "W_DUPLICATE_FILE"
    with engine.connect() as conn:
        rows = conn.execute(sa.select(source_file.c.status, source_file.c.duplicate_of)).all()
    assert sorted(rows, key=str) == sorted(
        [("loaded", None), ("duplicate", first.source_file_id)], key=str
    )


def test_refused_folders_are_reported_every_run_and_never_processed(
    engine: Engine, drop: Put, run: Run, _isolated_home: Path
) -> None:
    unknown = drop(three(), office="nobody")
    not_allowed = drop(three(), office="sh-ipa")  # the IP office may not submit penalties
    no_dataset = drop(three(), dataset="lunch_menu")
    loose = _isolated_home / "inbox" / "jingan-amr" / "loose.csv"
    loose.write_text("x", "utf-8")
    for _ in range(2):
        summary = run()
        codes = {f.path: f.code for f in summary.files}
        assert codes == {
            "nobody/penalty/drop.csv": "E_OFFICE_UNKNOWN",
            "sh-ipa/penalty/drop.csv": "E_DATASET_NOT_ALLOWED",
            "jingan-amr/lunch_menu/drop.csv": "E_DATASET_UNKNOWN",
            "jingan-amr/loose.csv": "E_INBOX_LAYOUT",
        }
        assert all(f.status == "refused" for f in summary.files)
    for path in (unknown, not_allowed, no_dataset, loose):
        assert path.exists()
    assert versions(engine).empty
    assert not (_isolated_home / "archive").exists() or not any(
        (_isolated_home / "archive").rglob("*.csv")
    )
    receipt = json.loads(
        (_isolated_home / "outbox" / "sh-ipa" / "drop.csv.receipt.json").read_text("utf-8")
    )
    assert receipt["file_errors"][0]["code"] == "E_DATASET_NOT_ALLOWED"
    assert not (_isolated_home / "outbox" / "nobody").exists()  # no office, no outbox folder


def test_symlinks_are_not_followed(
    engine: Engine, drop: Put, run: Run, _isolated_home: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "outside.csv"
    secret.write_text("secret", "utf-8")
    folder = drop(three()).parent
    (folder / "link.csv").symlink_to(secret)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "x.csv").write_text("x", "utf-8")
    (_isolated_home / "inbox" / "yangpu-amr").mkdir()
    (_isolated_home / "inbox" / "yangpu-amr" / "penalty").symlink_to(outside)
    summary = run()
    by_path = {f.path: (f.status, f.code) for f in summary.files}
    assert by_path["jingan-amr/penalty/link.csv"] == ("refused", "E_INBOX_SYMLINK")
    assert by_path["yangpu-amr/penalty"] == ("refused", "E_INBOX_SYMLINK")
    assert by_path["jingan-amr/penalty/drop.csv"][0] == "loaded"
    assert secret.read_text("utf-8") == "secret" and (outside / "x.csv").exists()
    assert (folder / "link.csv").is_symlink()


@pytest.mark.parametrize(
    "relpath",
    [
        "../../etc/passwd",
        "jingan-amr/penalty/../../../etc/passwd",
        "jingan-amr/../jingan-amr/penalty/drop.csv",
        "jingan-amr/penalty/sub/drop.csv",
        "/etc/passwd",
        "jingan-amr/penalty/",
        "jingan-amr\\penalty\\drop.csv",
    ],
)
def test_path_traversal_names_are_refused(relpath: str, drop: Put, _isolated_home: Path) -> None:
    drop(three())
    found = resolve_drop(_isolated_home, relpath, load_offices(), ["penalty"])
    assert isinstance(found, Refusal) and found.code == "E_INBOX_LAYOUT"


def test_a_handed_over_drop_is_revalidated(drop: Put, _isolated_home: Path) -> None:
    path = drop(three())
    found = resolve_drop(_isolated_home, "jingan-amr/penalty/drop.csv", load_offices(), ["penalty"])
    assert isinstance(found, Drop) and found.path == path
    other = resolve_drop(_isolated_home, "sh-ipa/penalty/drop.csv", load_offices(), ["penalty"])
    assert isinstance(other, Refusal)


def test_hostile_file_names_get_safe_receipts(
    engine: Engine, drop: Put, run: Run, _isolated_home: Path
) -> None:
    name = "=cmd|' -C calc'!A0 " + "长" * 70 + "\x07.csv"
    drop(three(), name=name)
    outcome = only(run())
    assert outcome.status == "loaded"
    receipt = Path(outcome.receipt or "")
    assert receipt.parent == _isolated_home / "outbox" / "jingan-amr" and receipt.exists()
    assert "\x07" not in receipt.name and len(receipt.name.encode()) < 255


# --- failures roll back; nothing is lost -----------------------------------------------------


def _table_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in (record_table("penalty"), rejected_row, rejection)
        }


def test_failure_mid_load_leaves_the_store_as_it_was(
    engine: Engine, drop: Put, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDITPIPE_CHUNK_ROWS", "2")
    rows = [*three(), org_row("bad", 统一社会信用代码="91110108551385082A"), *[
        org_row(NO.format(i)) for i in range(10, 16)
    ]]  # fmt: skip
    path = drop(rows)
    original_write = load.FileLoad.write
    calls = {"n": 0}

    def failing_write(self: load.FileLoad, frame: pd.DataFrame) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full (injected)")
        original_write(self, frame)

    monkeypatch.setattr(load.FileLoad, "write", failing_write)
    outcome = only(run())
    assert outcome.status == "failed" and "injected" in (outcome.message or "")
    assert _table_counts(engine) == {"penalty_version": 0, "rejected_row": 0, "rejection": 0}
    assert path.exists()  # stays in the inbox to be retried
    with engine.connect() as conn:
        status = conn.execute(sa.select(source_file.c.status, source_file.c.attempts)).one()
    assert tuple(status) == ("failed", 1)

    monkeypatch.setattr(load.FileLoad, "write", original_write)
    retry = only(run())
    assert (retry.status, retry.inserted, retry.rejected) == ("loaded", 9, 1)
    assert retry.source_file_id == outcome.source_file_id
    with engine.connect() as conn:
        assert conn.execute(sa.select(source_file.c.attempts)).scalar_one() == 2
    assert not path.exists()


def test_failure_inside_the_merge_rolls_back_closed_versions(
    engine: Engine, drop: Put, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    drop(three(), name="first.csv")
    run()
    before = versions(engine)
    fixed = [org_row(NO.format(1), **{"罚款金额（万元）": "9"})]
    drop(fixed, name="fix.csv")

    def broken_counts(self: load.FileLoad) -> load.MergeCounts:
        raise RuntimeError("connection lost (injected)")

    monkeypatch.setattr(load.FileLoad, "_counts", broken_counts)
    assert only(run()).status == "failed"
    pd.testing.assert_frame_equal(versions(engine), before)  # v1 is open again, no v2


def test_unreachable_store_stops_the_run(_isolated_home: Path) -> None:
    engine = db.make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(StoreError):
        run_inbox(as_of=AS_OF, home=_isolated_home, engine=engine)


# --- accounting and reruns -------------------------------------------------------------------


def test_rows_are_accounted_for_and_the_store_agrees_with_receipts(
    engine: Engine, drop: Put, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDITPIPE_CHUNK_ROWS", "3")
    rows = [*three(), org_row("bad", 统一社会信用代码="91110108551385082A")]
    rows += [org_row(NO.format(20)), org_row(NO.format(21)), org_row(NO.format(1))]  # dup key
    drop(rows, name="mixed.csv")
    drop([], name="empty-but-header.csv")
    drop(three(), name="utf16.csv", encoding="utf-16")
    summary = run()
    for outcome in summary.files:
        assert outcome.rows_read == outcome.accepted + outcome.rejected
        receipt = json.loads(Path(outcome.receipt or "").read_text("utf-8"))
        with engine.connect() as conn:
            stored = file_counts(conn, outcome.source_file_id or 0)
        assert (receipt["accepted"], receipt["rejected"]) == (outcome.accepted, outcome.rejected)
        assert stored["accepted"] == outcome.accepted
        assert stored["rejected"] == stored["rejected_rows"] == outcome.rejected
        assert stored["versions_written"] == outcome.inserted + outcome.corrected + (
            outcome.withdrawn
        )
    mixed = next(f for f in summary.files if f.file == "mixed.csv")
    assert (mixed.rows_read, mixed.rejected) == (7, 3)  # bad USCC + both rows of the dup key
    with engine.connect() as conn:
        raws = conn.execute(
            sa.select(rejected_row.c.row_number, rejected_row.c.raw).where(
                rejected_row.c.source_file_id == mixed.source_file_id
            )
        ).all()
    raw = {r: json.loads(text) for r, text in raws}
    assert sorted(raw) == [2, 5, 8]
    assert raw[5]["统一社会信用代码"] == "91110108551385082A"  # as the file had it
    assert raw[2]["行政处罚决定书文号"] == NO.format(1)  # the earlier row of the duplicate pair


def test_unreadable_file_is_recorded_and_a_redrop_is_a_duplicate(
    engine: Engine, drop: Put, run: Run, _isolated_home: Path
) -> None:
    folder = drop(three()).parent
    (folder / "drop.csv").unlink()
    bad = folder / "notes.csv"
    bad.write_text("hello\nworld\n", "utf-8")
    outcome = only(run())
    assert outcome.status == "unreadable" and outcome.code == "E_HEADER_NOT_FOUND"
    assert not bad.exists() and Path(outcome.receipt or "").exists()
    bad.write_text("hello\nworld\n", "utf-8")
    assert only(run()).status == "duplicate"


def test_running_twice_over_redropped_samples_changes_nothing(
    engine: Engine, run: Run, _isolated_home: Path
) -> None:
    inbox = _isolated_home / "inbox"
    shutil.copytree(ROOT / "samples" / "inbox", inbox, dirs_exist_ok=True)
    first = run()
    assert {f.status for f in first.files} == {"loaded"}
    counts, state = _table_counts(engine), versions(engine)
    shutil.copytree(ROOT / "samples" / "inbox", inbox, dirs_exist_ok=True)
    second = run()
    assert {f.status for f in second.files} == {"duplicate"}
    assert _table_counts(engine) == counts
    pd.testing.assert_frame_equal(versions(engine), state)
    assert not any(p.is_file() for p in inbox.rglob("*"))


def test_a_retried_file_never_closes_a_version_before_it_opened(
    engine: Engine, drop: Put, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    at(monkeypatch, "2026-11-01T09:00:00")
    drop([org_row(NO.format(1), **{"罚款金额（万元）": "1"})], name="a.csv")
    original_merge = load.FileLoad.merge

    def broken(self: load.FileLoad) -> load.MergeCounts:
        raise RuntimeError("lost connection (injected)")

    monkeypatch.setattr(load.FileLoad, "merge", broken)
    assert only(run()).status == "failed"  # a.csv stays in the inbox
    monkeypatch.setattr(load.FileLoad, "merge", original_merge)
    at(monkeypatch, "2026-11-02T09:00:00")
    b = drop([org_row(NO.format(1), **{"罚款金额（万元）": "2"})], name="b.csv")
    os.utime(b, (2_000_000_000, 2_000_000_000))  # arrived after a.csv
    at(monkeypatch, "2026-11-03T09:00:00")
    summary = run()  # retries a.csv first (older), then b.csv
    assert [f.file for f in summary.files] == ["a.csv", "b.csv"]
    frame = versions(engine)
    closed = frame[frame["valid_to"].notna()]
    assert (closed["valid_to"] >= closed["valid_from"]).all()
    assert as_of(engine, date(2026, 11, 3))["fine_amount"].tolist() == [Decimal("2")]


def test_the_same_bytes_for_another_dataset_are_not_a_duplicate(
    engine: Engine, drop: Put, run: Run
) -> None:
    drop(three(), name="x.csv")
    drop(three(), name="x.csv", dataset="abnormal_patent")  # wrong folder: all rows rejected
    statuses = sorted(f.status for f in run().files)
    assert statuses == ["loaded", "unreadable"] or statuses == ["loaded", "loaded"]
    with engine.connect() as conn:
        duplicates = conn.execute(
            sa.select(sa.func.count()).where(source_file.c.duplicate_of.is_not(None))
        ).scalar_one()
    assert duplicates == 0
