"""The check stage as a whole: streaming, the row invariant, JSON, receipts, quality."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from etl.check import CheckResult, check_file
from etl.reports.receipt import write_receipt
from tests.conftest import AS_OF, FIXTURES
from tests.fixtures.build import org_row, person_row


class CollectingSink:
    """An AcceptedSink that keeps what it is given (as the store's staging will)."""

    def __init__(self) -> None:
        self.frames: list[pd.DataFrame] = []
        self.rejected: list[pd.DataFrame] = []
        self.dropped = np.array([], dtype="int64")

    def write(self, frame: pd.DataFrame) -> None:
        self.frames.append(frame)

    def reject(self, rows: np.ndarray, raw: pd.DataFrame) -> None:
        assert len(rows) == len(raw)
        self.rejected.append(raw.assign(_row=rows))

    def finish(self, dropped_rows: np.ndarray, headers: dict[str, str]) -> None:
        self.dropped = dropped_rows

    def accepted(self) -> pd.DataFrame:
        frame = pd.concat(self.frames, ignore_index=True)
        return frame[~frame["_row"].isin(self.dropped)].reset_index(drop=True)


def accepted_frame(path: Path, **kwargs: object) -> pd.DataFrame:
    sink = CollectingSink()
    check_file(path, as_of=AS_OF, sink=sink, **kwargs)  # type: ignore[arg-type]
    return sink.accepted()


def _mixed_rows(n: int) -> list[dict[str, str]]:
    rows = []
    for i in range(n):
        row = org_row(f"K{i}") if i % 3 else person_row(f"K{i}")
        if i % 7 == 0:
            row["处罚决定日期"] = "不是日期"
        rows.append(row)
    rows.append(org_row("K1", 行政相对人名称="重复的决定"))  # duplicates row 3, two chunks earlier
    return rows


def test_invariant_and_duplicates_across_chunks(write_csv: Callable[..., Path]) -> None:
    path = write_csv(_mixed_rows(20))
    whole = check_file(path, as_of=AS_OF, chunk_rows=1000)
    for chunk_rows in (1, 2, 3, 7):
        sink = CollectingSink()
        result = check_file(path, as_of=AS_OF, chunk_rows=chunk_rows, sink=sink, quality=False)
        assert result.accepted + result.rejected == result.rows_read == 21
        assert result.rejections.equals(whole.rejections)
        accepted = sink.accepted()
        assert len(accepted) == result.accepted
        assert not set(accepted["_row"]) & set(result.rejections["row"])
    # Row 3 (K1) was accepted in its chunk and withdrawn when its key came back at row 22.
    dupes = whole.rejections[whole.rejections["code"] == "E_DUPLICATE_IN_FILE"]
    assert sorted(dupes["row"]) == [3, 22]


def test_json_has_exactly_the_documented_keys(check: Callable[..., CheckResult]) -> None:
    body = check(FIXTURES / "penalty_title_merged_bad.xlsx").to_json()
    assert list(body) == [
        "file",
        "dataset",
        "sha256",
        "encoding",
        "rows_read",
        "accepted",
        "rejected",
        "file_errors",
        "warnings",
        "rejections",
    ]
    assert set(body["rejections"][0]) == {"row", "field", "code", "message", "value"}
    assert body["rejected"] == len({r["row"] for r in body["rejections"]})
    json.dumps(body)  # serialisable as is


def test_quality_suite_runs_on_accepted_batches(check: Callable[..., CheckResult]) -> None:
    result = check(FIXTURES / "penalty_gbk.csv")
    assert result.quality is not None
    assert result.quality["success"] is True and result.quality["batches"] == 1
    assert result.quality["rows"] == result.accepted


def test_receipt_files(
    tmp_path: Path, write_csv: Callable[..., Path], check: Callable[..., CheckResult]
) -> None:
    rows = [
        org_row("R1"),
        org_row("R2", 行政相对人名称='=HYPERLINK("http://x")', 统一社会信用代码="bad"),
    ]
    result = check(write_csv(rows))
    paths = write_receipt(result, tmp_path / "outbox" / "jingan-amr")
    raw = paths.csv.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel opens UTF-8 with a BOM
    table = pd.read_csv(paths.csv, encoding="utf-8-sig", dtype=str)
    assert list(table.columns) == ["行号", "字段", "错误代码", "说明", "原值"]
    assert set(table["行号"]) == {"3"}
    assert not table["原值"].fillna("").str.match(r"^[=+\-@]").any()  # formulas neutralised
    assert "数据报送回执" in paths.html.read_text(encoding="utf-8")
    body = json.loads(paths.json.read_text(encoding="utf-8"))
    assert body["rejected"] == 1 and body["quality"]["success"] is True


def test_file_error_receipt(tmp_path: Path, check: Callable[..., CheckResult]) -> None:
    result = check(FIXTURES / "penalty_undecodable.csv")
    paths = write_receipt(result, tmp_path)
    assert "E_ENCODING" in paths.csv.read_text(encoding="utf-8-sig")
    assert "文件被拒收" in paths.html.read_text(encoding="utf-8")


def test_memory_is_per_chunk_not_per_file(write_csv: Callable[..., Path]) -> None:
    """The sink sees chunks no larger than chunk_rows: nothing holds the whole file."""
    path = write_csv([org_row(f"C{i}") for i in range(50)])
    sink = CollectingSink()
    check_file(path, as_of=AS_OF, chunk_rows=8, sink=sink, quality=False)
    assert max(len(f) for f in sink.frames) <= 8 and len(sink.frames) >= 6


def test_duplicate_keys_across_chunks_show_the_key_and_every_partner() -> None:
    from etl.check import _KeyIndex

    index = _KeyIndex()
    first = pd.DataFrame({"a": ["X1", "X1", "X2"], "b": ["甲", "乙", None]}, dtype="str")
    second = pd.DataFrame({"a": ["X1", "X3"], "b": ["甲", "丙"]}, dtype="str")
    assert not index.add(first, pd.Series([2, 3, 4])).any()
    assert index.add(second, pd.Series([5, 6])).tolist() == [True, False]
    frame, rows = index.rejections("机关、文号", "「机关」+「文号」")
    assert rows.tolist() == [2, 5]
    assert frame["value"].tolist() == ["X1 / 甲", "X1 / 甲"]
    assert all("2、5" in m for m in frame["message"])


def test_key_hashes_are_equal_exactly_for_equal_keys() -> None:
    """Keys differing only past a word, in a trailing NUL, in where one field ends and the
    next begins, or in an Arrow slice's offset hash apart; equal keys hash alike."""
    from etl.check import _key_hashes

    texts = ["", "a", "a\x00", "abcdefgh", "abcdefgh\x00", "abcdefghi", "中文" * 9, "𠮷田"]
    texts += ["x" * 256, "x" * 257, "x" * 100_000, "x" * 99_999 + "y"]  # over 256 bytes: hashlib
    first = pd.Series(texts + ["a", "b", "ab"], dtype="str")
    second = pd.Series(["x"] * len(texts) + ["bc", "abc", "c"], dtype="str")
    hashes = _key_hashes(pd.DataFrame({"a": first, "b": second}))
    assert len(set(hashes.tolist())) == len(hashes)
    # The same keys again, taken from the middle of a longer Arrow array, hash the same.
    longer = pd.DataFrame({"a": ["pad", *first], "b": ["pad", *second]}, dtype="str")
    assert _key_hashes(longer.iloc[1:]).tolist() == hashes.tolist()
    assert len(set(_key_hashes(pd.DataFrame({"a": ["z" * 300] * 2}, dtype="str")).tolist())) == 1
    # 1,000,000 distinct keys of the generator's shapes: no two hash alike.
    rng = np.random.default_rng(3)
    n = 1_000_000
    authority = pd.Series([f"11310000{i:010d}" for i in rng.integers(0, 10**10, n)], dtype="str")
    number = pd.Series([f"沪市监罚〔2026〕{i}号" for i in range(n)], dtype="str")
    many = _key_hashes(pd.DataFrame({"a": authority, "b": number}))
    assert len(np.unique(many)) == n


@pytest.mark.parametrize("cap", [10**9, 40])
def test_the_key_index_finds_every_duplicate_however_its_runs_merge(
    cap: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs merged or capped, the index finds what a whole-file duplicated() finds."""
    from etl.check import _KeyIndex

    monkeypatch.setattr(_KeyIndex, "RUN_CAP", cap)
    rng = np.random.default_rng(5)
    n = 1_000
    keys = pd.DataFrame(
        {
            "a": pd.Series(rng.integers(0, 30, n).astype(str), dtype="str"),
            "b": pd.Series(rng.integers(0, 40, n).astype(str), dtype="str"),
        }
    )
    keys.loc[rng.choice(n, 50, replace=False), "b"] = None  # incomplete keys never repeat
    rows = pd.Series(np.arange(n) + 2)
    index = _KeyIndex()
    flagged = []
    for start in range(0, n, 37):
        part = slice(start, start + 37)
        flagged.append(index.add(keys.iloc[part], rows.iloc[part]).to_numpy())
    expected = keys.notna().all(axis=1) & keys.duplicated(keep=False)
    _, dup_rows = index.rejections("机关、文号", "「机关」+「文号」")
    assert sorted(dup_rows.tolist()) == rows[expected].tolist()
    # A row is flagged when its chunk is added if an earlier or same-chunk row shares its key.
    first_seen = keys.notna().all(axis=1) & keys.duplicated(keep="first")
    within = pd.Series(np.concatenate(flagged))
    assert (within | ~first_seen).all()
    if cap == 40:
        assert max(len(h) for h in index.hashes) <= 40
        # Runs past half the cap are final and wait on disk; closing removes them.
        assert index.spilled and all(len(h) <= 20 for h in index.hashes)
        folder = index.spilled[0].parent
        assert sum(len(h) for h, _ in index.runs()) == int(keys.notna().all(axis=1).sum())
        index.close()
        assert not folder.exists()
    else:
        assert not index.spilled
