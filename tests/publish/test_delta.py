"""The delta as a merge of two key-ordered snapshots: ops, row groups, chunk edges, and the
index fallback for files out of key order (same bytes, so only memory differs)."""

from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from etl.publish import delta as delta_module
from etl.publish.extract import Column
from etl.publish.text import neutralise
from etl.publish.writer import Snapshot, sha256_of

COLUMNS = [
    Column("authority_uscc", "处罚机关统一社会信用代码", "", pa.string()),
    Column("decision_no", "行政处罚决定书文号", "", pa.string()),
    Column("fine_amount", "罚款金额（万元）", "", pa.decimal128(18, 6)),
    Column("decision_date", "处罚决定日期", "", pa.date32()),
    Column("remarks", "备注", "", pa.string()),
]
KEY = ["authority_uscc", "decision_no"]


def _rows(keys: list[tuple[str, str]], remarks: dict[tuple[str, str], str | None]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "authority_uscc": pd.Series([a for a, _ in keys], dtype="str"),
            "decision_no": pd.Series([d for _, d in keys], dtype="str"),
            "fine_amount": pd.Series(
                pa.array([Decimal("1.5")] * len(keys), pa.decimal128(18, 6)),
                dtype=pd.ArrowDtype(pa.decimal128(18, 6)),
            ),
            "decision_date": pd.Series(["2026-05-01"] * len(keys), dtype="datetime64[s]"),
            "remarks": pd.Series([remarks.get(k, "") for k in keys], dtype="str"),
        }
    )


def _publish(
    folder: Path, frame: pd.DataFrame, previous: Path | None, chunk: int, write_rows: int
) -> dict[str, int]:
    """Write `frame` as a snapshot in pieces of `write_rows` (as the extract's chunks would)."""
    folder.mkdir(parents=True)
    snapshot = Snapshot(folder, "penalty", COLUMNS, KEY, previous, chunk)
    for start in range(0, len(frame), write_rows):
        snapshot.write(frame.iloc[start : start + write_rows])
    return snapshot.close()


# Keys in code-point order, with a prefix pair ("A", "B1" < "B10" < "B2") and a key whose first
# column is a prefix of another's ("X" < "XY"): the joined key must order like the columns.
OLD = [("A", "B1"), ("A", "B10"), ("A", "B2"), ("A", "B3"), ("X", "Z"), ("XY", "A"), ("Z", "1")]
NEW = [("A", "B0"), ("A", "B1"), ("A", "B2"), ("A", "B4"), ("X", "Z"), ("XY", "A"), ("ZZ", "9")]


@pytest.mark.parametrize("write_rows", [1, 2, 3, 100])
@pytest.mark.parametrize("chunk", [1, 2, 3, 100])
def test_merge_finds_add_mod_del_at_any_chunk_edges(tmp_path, caplog, chunk, write_rows) -> None:
    _publish(tmp_path / "old", _rows(OLD, {("X", "Z"): "旧"}), None, chunk, write_rows)
    new = _rows(NEW, {("X", "Z"): "新", ("A", "B2"): None})  # "" before, null now: no change
    with caplog.at_level(logging.WARNING, logger=delta_module.__name__):
        counts = _publish(tmp_path / "new", new, tmp_path / "old", chunk, write_rows)
    assert not caplog.text  # merged, not indexed

    delta = pq.read_table(tmp_path / "new" / "penalty.delta.parquet").to_pandas()
    ops = list(zip(delta["op"], delta["authority_uscc"], delta["decision_no"], strict=True))
    assert ops == [
        ("ADD", "A", "B0"),
        ("ADD", "A", "B4"),
        ("MOD", "X", "Z"),
        ("ADD", "ZZ", "9"),
        ("DEL", "A", "B10"),
        ("DEL", "A", "B3"),
        ("DEL", "Z", "1"),
    ]
    assert counts == {"ADD": 3, "MOD": 1, "DEL": 3}
    assert delta.loc[delta["op"] == "DEL", "remarks"].isna().all()
    csv = (tmp_path / "new" / "penalty.delta.csv").read_text("utf-8").splitlines()
    assert csv[0].startswith('"变更类型","处罚机关统一社会信用代码"')
    assert [line.split(",")[0] for line in csv[1:]] == [f'"{op}"' for op, *_ in ops]


@pytest.mark.parametrize("write_rows", [2, 5])
def test_row_groups_follow_the_snapshot_stretches(tmp_path, write_rows) -> None:
    """ADD/MOD rows: one row group per `chunk` rows of the snapshot however it was written;
    DEL rows: one per `chunk` rows of the previous snapshot."""
    old = [("K", f"{i:03d}") for i in range(0, 20, 2)]  # 10 even keys
    new = [("K", f"{i:03d}") for i in range(1, 12)]  # 11 keys 001…011
    _publish(tmp_path / "old", _rows(old, {}), None, 4, 3)
    _publish(tmp_path / "new", _rows(new, {}), tmp_path / "old", 4, write_rows)
    meta = pq.ParquetFile(tmp_path / "new" / "penalty.delta.parquet").metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    # ADD: odd keys 001–011 = 6 rows, in snapshot stretches [1-4] [5-8] [9-11] → 2, 2, 2;
    # DEL: 000, 012–018 = 5 rows, in previous stretches [0,2,4,6] [8,10,12,14] [16,18] → 1, 2, 2
    assert sizes == [2, 2, 2, 1, 2, 2]


def test_keys_out_of_order_fall_back_to_the_index_with_the_same_bytes(tmp_path, caplog) -> None:
    """A previous snapshot out of key order is noticed; the index gives the same files the
    merge gives for the same rows in order."""
    _publish(tmp_path / "old", _rows(OLD, {("X", "Z"): "旧"}), None, 3, 3)
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    table = pq.read_table(tmp_path / "old" / "penalty.parquet")
    pq.write_table(table.take([3, 0, 6, 1, 5, 2, 4]), shuffled / "penalty.parquet")
    new = _rows(NEW, {("X", "Z"): "新"})
    _publish(tmp_path / "merged", new, tmp_path / "old", 3, 2)
    with caplog.at_level(logging.WARNING, logger=delta_module.__name__):
        counts = _publish(tmp_path / "indexed", new, shuffled, 3, 2)
    assert "内存索引" in caplog.text
    assert counts == {"ADD": 3, "MOD": 1, "DEL": 3}
    merged = pq.read_table(tmp_path / "merged" / "penalty.delta.parquet")
    indexed = pq.read_table(tmp_path / "indexed" / "penalty.delta.parquet")
    # ADD and MOD rows are the same either way; DEL rows follow each previous file's order.
    changes = pc.not_equal(merged.column("op"), "DEL")
    assert indexed.slice(0, 4).equals(merged.filter(changes))
    assert indexed.column("decision_no").to_pylist()[4:] == ["B3", "1", "B10"]


@pytest.mark.parametrize("case", ["backwards", "NUL in a key"])
def test_a_new_snapshot_out_of_order_falls_back_too(tmp_path, caplog, case) -> None:
    """Rows not in key order, or a key holding the NUL that joins key columns."""
    _publish(tmp_path / "old", _rows(OLD, {}), None, 3, 3)
    keys = list(reversed(NEW)) if case == "backwards" else [*NEW[:-1], ("ZZ", "9\x00")]
    with caplog.at_level(logging.WARNING, logger=delta_module.__name__):
        counts = _publish(tmp_path / "new", _rows(keys, {}), tmp_path / "old", 3, 2)
    assert "内存索引" in caplog.text
    assert counts == {"ADD": 3, "MOD": 0, "DEL": 3}


def test_merge_and_index_write_identical_files(tmp_path, monkeypatch) -> None:
    """Forcing the index path on sorted input reproduces the merge's bytes exactly."""
    old = [("K", f"{i:04d}") for i in range(0, 300, 3)]
    new = [("K", f"{i:04d}") for i in range(0, 300, 2)]
    changed = {("K", f"{i:04d}"): "改" for i in range(0, 300, 7)}
    _publish(tmp_path / "old", _rows(old, {}), None, 16, 7)
    _publish(tmp_path / "merged", _rows(new, changed), tmp_path / "old", 16, 7)

    def refuse(*args: object, **kwargs: object) -> None:
        raise delta_module.OutOfOrder("forced")

    monkeypatch.setattr(delta_module, "_check_order", refuse)
    _publish(tmp_path / "indexed", _rows(new, changed), tmp_path / "old", 16, 7)
    for name in ("penalty.delta.parquet", "penalty.delta.csv"):
        assert sha256_of(tmp_path / "merged" / name) == sha256_of(tmp_path / "indexed" / name)


def test_a_first_publication_is_all_add(tmp_path) -> None:
    keys = [("K", f"{i:02d}") for i in range(10)]
    counts = _publish(tmp_path / "first", _rows(keys, {}), None, 4, 3)
    assert counts == {"ADD": 10, "MOD": 0, "DEL": 0}
    empty = _publish(tmp_path / "empty", _rows([], {}), tmp_path / "first", 4, 3)
    assert empty == {"ADD": 0, "MOD": 0, "DEL": 10}


def test_neutralise_prefixes_formula_cells_only() -> None:
    values = pa.array(
        ["=1+1", "+86", "-5", "@x", "\tx", "\rx", "a=b", "", None, "＝全角", "é=", "'"]
    )
    out = neutralise(values).to_pylist()
    assert out == [
        "'=1+1",
        "'+86",
        "'-5",
        "'@x",
        "'\tx",
        "'\rx",
        "a=b",
        "",
        None,
        "＝全角",
        "é=",
        "'",
    ]
    sliced = pc.utf8_upper(pa.array(["x", "=y", "z", "-w"])).slice(1, 3)
    assert neutralise(sliced).to_pylist() == ["'=Y", "Z", "'-W"]
    assert neutralise(pa.array([], pa.string())).to_pylist() == []
    assert neutralise(pa.array(["", ""])).to_pylist() == ["", ""]
