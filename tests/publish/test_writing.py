"""The shortcuts of writing a publication give the bytes of the long way: hashes taken while
writing, one conversion shared by the restricted and public snapshots, the decimal text."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from etl.publish.extract import Column
from etl.publish.files import HashedFile
from etl.publish.masking import redact_personal_ids
from etl.publish.text import CsvFile, text_column
from etl.publish.writer import Snapshot, _prepare, sha256_of
from tests.publish.test_delta import COLUMNS, KEY, _rows


def test_hashed_file_hashes_exactly_what_parquet_and_csv_write(tmp_path: Path) -> None:
    table = pa.table({"a": [str(i) for i in range(5000)], "b": list(range(5000))})
    parquet = HashedFile(tmp_path / "t.parquet")
    with pq.ParquetWriter(parquet, table.schema) as writer:
        writer.write_table(table, row_group_size=1000)
    parquet.close()
    csv = HashedFile(tmp_path / "t.csv")
    pacsv.write_csv(table, csv)
    csv.close()
    for handle in (parquet, csv):
        data = handle.path.read_bytes()
        assert handle.sha256 == hashlib.sha256(data).hexdigest() == sha256_of(handle.path)
    assert pq.read_table(tmp_path / "t.parquet").equals(table)


@pytest.mark.parametrize("scale", [1, 2, 6, 7, 9])
def test_decimal_text_trims_zeros_like_the_regexes(scale: int) -> None:
    values = ["1.5", "100", "0", "-0.25", "0.000001", "1234567.1", None]
    kind = pa.decimal128(18, scale)
    column = pa.array([Decimal(v).quantize(Decimal(1).scaleb(-scale)) if v else None
                       for v in values], kind)  # fmt: skip
    text = pa.compute.cast(column, pa.string())
    text = pa.compute.replace_substring_regex(text, r"(\.\d*?)0+$", r"\1")
    text = pa.compute.replace_substring_regex(text, r"\.$", "")
    assert text_column(column).to_pylist() == text.fill_null("").to_pylist()


def _people(n: int) -> pd.DataFrame:
    keys = [("11310106MB2F00001B", f"沪静市监处〔2026〕{i:06d}号") for i in range(n)]
    return _rows(keys, {k: "经查属实" for k in keys})


def test_a_column_with_the_same_memory_is_taken_over_a_masked_one_is_not() -> None:
    restricted = _people(3)
    public = restricted.copy(deep=False)
    public["remarks"] = pd.Series(["已脱敏"] * 3, dtype="str")
    made = {c.name: _prepare(restricted, c, None) for c in COLUMNS}
    again = {c.name: _prepare(public, c, made[c.name]) for c in COLUMNS}
    assert again["decision_no"] is made["decision_no"]
    assert again["fine_amount"] is made["fine_amount"]
    assert again["remarks"] is not made["remarks"]
    assert again["remarks"].text.to_pylist() == ["已脱敏"] * 3
    other = Column("decision_no", "行政处罚决定书文号", "", pa.large_string())
    assert _prepare(public, other, made["decision_no"]) is not made["decision_no"]


def test_sharing_the_restricted_conversion_changes_no_byte(tmp_path: Path) -> None:
    """The public snapshot written with `like=` the restricted chunk equals one written alone."""
    restricted = _people(40)
    public = redact_personal_ids(restricted.assign(remarks="身份证 110101199003070011 已核实"))
    hashes = []
    for name, share in (("alone", False), ("shared", True)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "r").mkdir()
        twin = Snapshot(folder / "r", "penalty", COLUMNS, KEY, None, 16) if share else None
        snapshot = Snapshot(folder, "penalty", COLUMNS, KEY, None, 16)
        like = twin.write(restricted) if twin is not None else None
        snapshot.write(public, like=like)
        snapshot.close()
        assert snapshot.hashes == {p.name: sha256_of(p) for p in folder.iterdir() if p.is_file()}
        hashes.append(snapshot.hashes)
    assert hashes[0] == hashes[1]
    assert "身份证 110***********0011 已核实" in (tmp_path / "shared" / "penalty.csv").read_text(
        "utf-8"
    )


def test_redaction_skips_short_columns_and_keeps_nulls() -> None:
    frame = pd.DataFrame(
        {
            "short": pd.Series(["12345", None, "1101011990"], dtype="str"),
            "notes": pd.Series([None, "证件 110101199003070011", "无"], dtype="str"),
        }
    )
    out = redact_personal_ids(frame)
    assert out["short"] is frame["short"] or out["short"].equals(frame["short"])
    assert out["notes"].isna().tolist() == [True, False, False]
    assert out["notes"].tolist()[1:] == ["证件 110***********0011", "无"]


def test_csv_files_are_written_as_arrow_writes_them_with_quotes_where_needed(
    tmp_path: Path,
) -> None:
    """`CsvFile` asks Arrow to quote every value (faster); for text columns that is the same
    bytes as quoting where needed, since Arrow always quotes a string that way."""
    tricky = ["plain", "a,b", 'say "hi"', "two\nlines", "", None, "'=1+1", "长文本 🀄", "\r\t"]
    columns = [Column(f"c{i}", f"列{i}", "", pa.string()) for i in range(3)]
    table = pa.Table.from_arrays(
        [pa.array(tricky), pa.array(tricky[::-1]), pa.array(["x"] * len(tricky))],
        names=[c.title for c in columns],
    )
    ours = CsvFile(tmp_path / "ours.csv", columns)
    ours.write_safe([c.combine_chunks() for c in table.columns])
    ours.close()
    options = pacsv.WriteOptions(include_header=True, quoting_style="needed")
    with pacsv.CSVWriter(tmp_path / "needed.csv", table.schema, write_options=options) as writer:
        writer.write_table(table)
    assert (tmp_path / "ours.csv").read_bytes() == (tmp_path / "needed.csv").read_bytes()
