"""Publication end to end over the store: windows, masking, files, deltas, atomicity,
reproducibility, and SQLite = PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import etl.publish as publishing
from etl.flags import evaluate_flags
from etl.flags.registry import decide, list_flags
from etl.publish import publish, writer
from etl.publish.masking import find_personal_ids
from etl.publish.writer import sha256_of
from etl.run import RunSummary, run_inbox
from etl.store import db
from tests.fixtures.build import org_row, patent_row, person_row
from tests.store_fixtures import at, postgres_schema

PERSON_ID = "11010519491231002X"
FINED_PERSON = {"处罚类别": "罚款", "处罚内容": "罚款1万元", "罚款金额（万元）": "1"}  # > ¥5,000
STANDARD = {"处罚类别": "警告;罚款", "处罚内容": "警告并罚款2万元", "罚款金额（万元）": "2"}
SHORT = {"处罚类别": "罚款", "处罚内容": "罚款8000元", "罚款金额（万元）": "0.8"}  # ≤ ¥50,000


def _no(i: int) -> str:
    return f"沪静市监案处字〔2026〕第{i:04d}号"


def _load(drop: Callable[..., Path], run: Callable[..., RunSummary], rows: list[dict[str, str]],
          name: str, as_of: date, dataset: str = "penalty", office: str = "jingan-amr",
          ) -> None:  # fmt: skip
    drop(rows, name=name, dataset=dataset, office=office)
    summary = run(as_of)
    assert all(f.rejected == 0 and f.status == "loaded" for f in summary.files), [
        (f.file, f.status, f.message) for f in summary.files
    ]


def _frame(folder: Path, name: str) -> pd.DataFrame:
    return pq.read_table(folder / name).to_pandas()


def test_windows_masking_and_descriptors(engine, drop, run, _isolated_home, monkeypatch) -> None:
    """As of 2026-06-10: the standard and fined-person penalties are public, the warning-only
    and the short one decided 2026-03-02 (until 2026-06-02) are not. No public file holds a full
    resident ID; the restricted twin does. datapackage bytes and hashes match the files."""
    at(monkeypatch, "2026-06-10T09:00:00")
    rows = [
        org_row(_no(1), 处罚决定日期="2026-05-01", **STANDARD),
        org_row(_no(2), 处罚决定日期="2026-03-02", **SHORT),
        person_row(_no(3), 处罚决定日期="2026-05-02"),  # warning only: never published
        person_row(_no(4), 处罚决定日期="2026-05-03", **FINED_PERSON),
    ]
    _load(drop, run, rows, "a.csv", date(2026, 6, 10))
    patents = [
        patent_row(1, status="申诉驳回", 通知日期="2026-05-10", 处理日期="2026-06-01")
        | {"申请人类别": "自然人", "申请人统一社会信用代码": "", "申请人证件号码": PERSON_ID}
    ]
    _load(drop, run, patents, "p.csv", date(2026, 6, 10), "abnormal_patent", "sh-ipa")
    evaluate_flags(engine, date(2026, 6, 10))
    with engine.begin() as conn:
        (general,) = list_flags(conn, rule="GD-PATENT-UNCORRECTED")
        decide(conn, general["id"], "confirmed", by="李审核", decision_no="沪知信〔2026〕3号")

    summary = publish(engine, date(2026, 6, 10))
    by_name = {w.dataset: w for w in summary.datasets}
    penalty = _frame(by_name["penalty"].folder, "penalty.parquet")
    assert penalty["decision_no"].tolist() == [_no(1), _no(4)]
    assert penalty["publicity_until"].astype(str).tolist() == ["2029-05-01", "2029-05-03"]
    assert "legal_rep_id_number" not in penalty
    assert penalty.loc[1, "id_number"] == "110***********002X"
    flags = _frame(by_name["serious_dishonesty"].folder, "serious_dishonesty.parquet")
    assert flags["flag_id"].tolist() == [general["id"]]
    assert flags.loc[0, "subject_id"] == "110***********002X"
    assert flags.loc[0, "decision_no"] == "沪知信〔2026〕3号"

    public = _personal_ids(_isolated_home / "publish")
    assert public == {}, public
    restricted = _personal_ids(_isolated_home / "restricted")
    assert restricted, "the scanner must find the IDs the restricted twin holds"

    for w in summary.datasets + summary.restricted:
        package = json.loads((w.folder / "datapackage.json").read_text("utf-8"))
        assert len(package["resources"]) == 4
        for resource in package["resources"]:
            path = w.folder / resource["path"]
            assert resource["bytes"] == path.stat().st_size
            assert resource["hash"] == f"sha256:{sha256_of(path)}"
        schema = package["resources"][0]["schema"]
        manifest = json.loads((w.folder / "manifest.json").read_text("utf-8"))
        assert schema["primaryKey"] == manifest["primary_key"]
        assert manifest["rows"][f"{w.dataset}.parquet"] == w.rows
        assert (w.folder.parent / "LATEST").read_text().strip() == "2026-06-10"
    csv_head = (by_name["penalty"].folder / "penalty.csv").read_text("utf-8").splitlines()[0]
    assert csv_head.startswith('"行政相对人名称","行政相对人类别","统一社会信用代码"')


def _personal_ids(root: Path) -> dict[str, list[str]]:
    """Every cell of every Parquet and CSV file under `root` that holds a valid resident ID."""
    found: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix == ".parquet":
            table = pq.read_table(path)
        elif path.suffix == ".csv":
            table = pacsv.read_csv(path)
        else:
            continue
        frame = table.to_pandas().astype("str")
        for column in frame.columns:
            hits = frame[column][find_personal_ids(frame[column].fillna(""))]
            if len(hits):
                found.setdefault(str(path), []).extend(hits.tolist())
    return found


def test_deltas_across_three_days(engine, drop, run, monkeypatch) -> None:
    """Day 1: A (short, until 06-02) and B published → ADD A, B. Day 2: B corrected, C added →
    MOD B, ADD C. Day 3: C revoked, A expired → DEL C, DEL A (key only)."""
    a = org_row(_no(1), 处罚决定日期="2026-03-02", **SHORT)
    b = org_row(_no(2), 处罚决定日期="2026-05-01", **STANDARD)
    c = org_row(_no(3), 处罚决定日期="2026-05-20", **STANDARD)
    at(monkeypatch, "2026-06-01T09:00:00")
    _load(drop, run, [a, b], "d1.csv", date(2026, 6, 1))
    day1 = publish(engine, date(2026, 6, 1), datasets=("penalty",)).datasets[0]
    at(monkeypatch, "2026-06-02T09:00:00")
    corrected = {**b, "处罚内容": "警告并罚款2万元（更正）"}
    _load(drop, run, [corrected, c], "d2.csv", date(2026, 6, 2))
    day2 = publish(engine, date(2026, 6, 2), datasets=("penalty",)).datasets[0]
    at(monkeypatch, "2026-06-03T09:00:00")
    _load(drop, run, [{**c, "备注": "撤销：复议撤销"}], "d3.csv", date(2026, 6, 3))
    day3 = publish(engine, date(2026, 6, 3), datasets=("penalty",)).datasets[0]

    def ops(w: writer.Written) -> list[tuple[str, str]]:
        delta = _frame(w.folder, "penalty.delta.parquet")
        return list(zip(delta["op"], delta["decision_no"], strict=True))

    assert ops(day1) == [("ADD", _no(1)), ("ADD", _no(2))]
    assert ops(day2) == [("MOD", _no(2)), ("ADD", _no(3))]
    assert ops(day3) == [("DEL", _no(1)), ("DEL", _no(3))]
    deleted = _frame(day3.folder, "penalty.delta.parquet")
    assert deleted["subject_name"].isna().all()  # DEL rows carry only the key
    assert deleted["authority_uscc"].notna().all()
    manifest = json.loads((day3.folder / "manifest.json").read_text("utf-8"))
    assert manifest["previous_as_of"] == "2026-06-02"
    assert manifest["delta"] == {"ADD": 0, "MOD": 0, "DEL": 2}
    assert _frame(day3.folder, "penalty.parquet")["decision_no"].tolist() == [_no(2)]

    # Republishing and backfilling give byte-identical files.
    hashes = {p.name: sha256_of(p) for p in day2.folder.iterdir()}
    again = publish(engine, date(2026, 6, 2), datasets=("penalty",)).datasets[0]
    assert again.result == "unchanged"
    for path in day2.folder.iterdir():
        path.unlink()
    day2.folder.rmdir()
    rebuilt = publish(engine, date(2026, 6, 2), datasets=("penalty",)).datasets[0]
    assert rebuilt.result == "published"
    assert {p.name: sha256_of(p) for p in rebuilt.folder.iterdir()} == hashes
    assert (rebuilt.folder.parent / "LATEST").read_text().strip() == "2026-06-03"


def test_a_crash_before_the_rename_leaves_no_partial_folder(
    engine, drop, run, _isolated_home, monkeypatch
) -> None:
    _load(drop, run, [org_row(_no(1), 处罚决定日期="2026-05-01", **STANDARD)], "a.csv",
          date(2026, 11, 21))  # fmt: skip

    def crash(tmp: Path, final: Path) -> str:  # the process dies: no cleanup runs
        raise SystemExit("simulated crash after the data files were written")

    with monkeypatch.context() as patched, pytest.raises(SystemExit):
        patched.setattr(writer, "commit", crash)
        publish(engine, date(2026, 11, 21), datasets=("penalty",))
    root = _isolated_home / "publish" / "penalty"
    assert not (root / "2026-11-21").exists() and not (root / "LATEST").exists()
    assert [p.name for p in root.glob(".tmp-*")]  # the half-done work is only in a temp folder
    done = publish(engine, date(2026, 11, 21), datasets=("penalty",)).datasets[0]
    assert done.result == "published" and done.rows == 1
    assert not list(root.glob(".tmp-*")) and not list(root.glob(".old-*"))
    assert (root / "LATEST").read_text().strip() == "2026-11-21"


def test_a_failed_chunk_stops_the_store_read_at_once(engine, drop, run, monkeypatch) -> None:
    """The store's read-ahead thread ends with the publication that fails, not whenever the
    garbage collector gets to the read (the traceback keeps it alive meanwhile)."""
    rows = [org_row(_no(i), 处罚决定日期="2026-05-01", **STANDARD) for i in range(1, 21)]
    _load(drop, run, rows, "a.csv", date(2026, 11, 21))

    def fails(*args: object) -> object:
        raise RuntimeError("this chunk could not be prepared")

    monkeypatch.setattr(publishing, "redact_personal_ids", fails)
    with pytest.raises(RuntimeError, match="could not be prepared") as failure:
        publish(engine, date(2026, 11, 21), datasets=("penalty",), chunk_rows=3)
    reading = [t for t in threading.enumerate() if t.name == "creditpipe-read-ahead"]
    assert not reading and failure.value is not None


def test_a_failed_file_write_leaves_nothing_behind(
    engine, drop, run, _isolated_home, monkeypatch
) -> None:
    """On PostgreSQL the files are written in a thread of their own per audience (`Snapshot`),
    on SQLite in the caller's: an error there fails the publication either way, with no folder
    and no thread left, and the next publication starts clean."""
    rows = [org_row(_no(i), 处罚决定日期="2026-05-01", **STANDARD) for i in range(1, 21)]
    _load(drop, run, rows, "a.csv", date(2026, 11, 21))
    real, calls = writer.Delta.add, []

    def fails(self: writer.Delta, *args: object) -> None:
        calls.append(threading.current_thread().name)
        if len(calls) == 3:
            raise OSError("磁盘空间不足")
        real(self, *args)  # type: ignore[arg-type]

    with monkeypatch.context() as patched, pytest.raises(OSError, match="磁盘空间不足"):
        patched.setattr(writer.Delta, "add", fails)
        publish(engine, date(2026, 11, 21), datasets=("penalty",), chunk_rows=3)
    writing = "creditpipe-write-" if engine.dialect.name == "postgresql" else "MainThread"
    assert all(name.startswith(writing) for name in calls)
    assert not [t for t in threading.enumerate() if t.name.startswith("creditpipe-write-")]
    for root in (_isolated_home / "publish" / "penalty", _isolated_home / "restricted" / "penalty"):
        assert not list(root.glob(".tmp-*")) and not (root / "2026-11-21").exists()
    done = publish(engine, date(2026, 11, 21), datasets=("penalty",), chunk_rows=3).datasets[0]
    assert done.result == "published" and done.rows == 20


def test_sqlite_and_postgresql_publish_identical_files(tmp_path, monkeypatch) -> None:
    """The same drops loaded into both stores give the same bytes in every public file."""
    rows = [org_row(_no(i), 处罚决定日期="2026-05-01", 行政相对人名称=name, **STANDARD)
            for i, name in enumerate(["上海乙公司", "上海甲公司", "Zeta Ltd", "alpha 公司"], 1)]  # fmt: skip
    rows.append(
        person_row("沪静市监案处字〔2026〕第0100号", 处罚决定日期="2026-05-03", **FINED_PERSON)
    )
    hashes = []
    with postgres_schema() as pg_url:
        for url in (f"sqlite:///{tmp_path / 'store.db'}", pg_url):
            home = tmp_path / ("pg" if url == pg_url else "lite")
            inbox = home / "inbox" / "jingan-amr" / "penalty"
            inbox.mkdir(parents=True)
            from tests.fixtures.build import HEADER, to_csv

            (inbox / "a.csv").write_text(to_csv(rows, HEADER), "utf-8")
            engine = db.make_engine(url)
            try:
                run_inbox(as_of=date(2026, 11, 21), home=home, engine=engine)
                folders = sorted((home / "publish").glob("*/2026-11-21"))
                hashes.append({str(p.relative_to(home)): sha256_of(p)
                               for folder in folders for p in sorted(folder.iterdir())})  # fmt: skip
            finally:
                engine.dispose()
    assert hashes[0] == hashes[1]
    assert len(hashes[0]) == 18  # three datasets, six files each


def test_an_fsspec_target_gets_the_dated_prefix_then_latest(engine, drop, run) -> None:
    import fsspec

    _load(drop, run, [org_row(_no(1), 处罚决定日期="2026-05-01", **STANDARD)], "a.csv",
          date(2026, 11, 21))  # fmt: skip
    summary = publish(engine, date(2026, 11, 21), url="memory://platform", datasets=("penalty",))
    fs = fsspec.filesystem("memory")
    written = summary.datasets[0]
    version = written.manifest["version"].rsplit("/", 1)[-1]
    assert written.remote == f"/platform/penalty/2026-11-21/{version}"
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(written.remote, detail=False))
    assert names == sorted(p.name for p in written.folder.iterdir())
    assert fs.cat_file("/platform/penalty/LATEST").decode().strip() == f"2026-11-21/{version}"
    assert fs.cat_file("/platform/penalty/2026-11-21/CURRENT").decode().strip() == version
    remote_manifest = fs.cat_file(f"{written.remote}/manifest.json")
    assert remote_manifest == (written.folder / "manifest.json").read_bytes()
    fs.rm("/platform", recursive=True)


def test_a_crash_while_replacing_a_date_restores_the_previous_version(
    engine, drop, run, _isolated_home, monkeypatch
) -> None:
    """Replacing an existing date moves it aside, then renames the new one in; a crash between
    the two leaves no date folder. The next publish puts the previous version back first."""
    _load(drop, run, [org_row(_no(1), 处罚决定日期="2026-05-01", **STANDARD)], "a.csv",
          date(2026, 11, 21))  # fmt: skip
    first = publish(engine, date(2026, 11, 21), datasets=("penalty",)).datasets[0]
    before = {p.name: sha256_of(p) for p in first.folder.iterdir()}
    real_rename = writer.os.rename

    def die_after_moving_aside(src: Path, dst: Path) -> None:
        real_rename(src, dst)
        if Path(dst).name.startswith(".old-"):
            raise SystemExit("simulated crash between the two renames")

    with monkeypatch.context() as patched, pytest.raises(SystemExit):
        patched.setattr(writer, "_same_data", lambda a, b: False)  # force a replacement
        patched.setattr(writer.os, "rename", die_after_moving_aside)
        publish(engine, date(2026, 11, 21), datasets=("penalty",))
    root = _isolated_home / "publish" / "penalty"
    assert not (root / "2026-11-21").exists() and list(root.glob(".old-*"))
    writer.clean_stale(root)
    assert {p.name: sha256_of(p) for p in (root / "2026-11-21").iterdir()} == before
    again = publish(engine, date(2026, 11, 21), datasets=("penalty",)).datasets[0]
    assert again.result == "unchanged" and not list(root.glob(".*-*"))


def test_ids_written_anywhere_are_redacted_or_publication_stops(
    engine, drop, run, _isolated_home
) -> None:
    """An organisation row whose 证件类型 is 身份证, an ID in 违法事实, and a full-width ID in
    备注: none reaches a public file; the restricted twin keeps them."""
    full_width = PERSON_ID.translate(str.maketrans("0123456789X", "０１２３４５６７８９Ｘ"))
    rows = [
        org_row(_no(1), 处罚决定日期="2026-05-01", 证件类型="身份证", 证件号码=PERSON_ID, **STANDARD),
        org_row(_no(2), 处罚决定日期="2026-05-01", 违法事实=f"经查，经营者（身份证{PERSON_ID}）销售侵权商品。",
                备注=f"联系人证件 {full_width}", **STANDARD),
    ]  # fmt: skip
    _load(drop, run, rows, "a.csv", date(2026, 11, 21))
    summary = publish(engine, date(2026, 11, 21), datasets=("penalty",))
    assert summary.datasets[0].rows == 2
    assert _personal_ids(_isolated_home / "publish") == {}
    public = _frame(summary.datasets[0].folder, "penalty.parquet")
    assert "身份证110***********002X）" in public.loc[1, "violation_facts"]
    assert public.loc[1, "remarks"] == "联系人证件 １１０***********００２Ｘ"
    assert public.loc[0, "id_number"] == "110***********002X"
    assert len(_personal_ids(_isolated_home / "restricted")) >= 1


def test_an_id_that_cannot_be_redacted_stops_publication(
    engine, drop, run, _isolated_home, monkeypatch
) -> None:
    """If redaction ever misses an ID (here: its pattern is broken on purpose), publication of
    the dataset stops with E_PUBLISH_PERSONAL_ID, names the column, and writes nothing."""
    from etl.errors import PersonalDataError
    from etl.publish import masking

    row = org_row(_no(1), 处罚决定日期="2026-05-01", 备注=f"证件 {PERSON_ID}", **STANDARD)
    _load(drop, run, [row], "a.csv", date(2026, 11, 21))
    monkeypatch.setattr(masking, "_ID_INSIDE", "(never)(matches)")
    with pytest.raises(PersonalDataError) as err:
        publish(engine, date(2026, 11, 21), datasets=("penalty",))
    assert err.value.code == "E_PUBLISH_PERSONAL_ID" and "「备注」" in err.value.message
    root = _isolated_home / "publish" / "penalty"
    assert not (root / "2026-11-21").exists() and not list(root.glob(".tmp-*"))


def test_credit_repair_ends_publication_early_except_for_article_14(
    engine, drop, run, monkeypatch
) -> None:
    """记录状态 信用修复: a standard penalty decided 2025-01-31 may end after 6 months of
    publication (from 2025-08-01), so it is gone on 2025-09-01; a 吊销许可证件 one (第十四条)
    stays; an unrepaired one stays."""
    revoke = {"处罚类别": "罚款;吊销许可证件", "处罚内容": "罚款2万元，吊销营业执照",
              "暂扣或吊销证照名称及编号": "营业执照 310106000000001", "罚款金额（万元）": "2"}  # fmt: skip
    rows = [
        org_row(_no(1), 处罚决定日期="2025-01-31", 记录状态="信用修复", **STANDARD),
        org_row(_no(2), 处罚决定日期="2025-01-31", 记录状态="信用修复", **revoke),
        org_row(_no(3), 处罚决定日期="2025-01-31", **STANDARD),
    ]
    at(monkeypatch, "2025-09-01T09:00:00")
    _load(drop, run, rows, "a.csv", date(2025, 9, 1))
    published = publish(engine, date(2025, 9, 1), datasets=("penalty",)).datasets[0]
    assert _frame(published.folder, "penalty.parquet")["decision_no"].tolist() == [_no(2), _no(3)]
