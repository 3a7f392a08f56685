"""Readers: encodings, spreadsheets with title rows and merged headers, header binding."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from etl.check import CheckResult
from tests.conftest import FIXTURES
from tests.fixtures.build import HEADER, org_row, to_csv


@pytest.mark.parametrize(
    ("name", "encoding", "header_row"),
    [
        ("penalty_utf8.csv", "UTF-8", 1),
        ("penalty_utf8_bom.csv", "UTF-8-BOM", 1),
        ("penalty_gbk.csv", "GBK", 2),  # with a title row above the header
        ("penalty_gb18030.csv", "GB18030", 1),
    ],
)
def test_csv_encodings(
    check: Callable[..., CheckResult], name: str, encoding: str, header_row: int
) -> None:
    result = check(FIXTURES / name)
    assert result.encoding == encoding
    assert result.header_row == header_row
    assert (result.rows_read, result.accepted, result.rejected) == (3, 3, 0)
    assert not result.file_errors and not result.warnings


def test_gb18030_keeps_four_byte_characters(check: Callable[..., CheckResult]) -> None:
    from tests.test_check import accepted_frame

    frame = accepted_frame(FIXTURES / "penalty_gb18030.csv")
    assert "𠮷田花子" in set(frame["subject_name"])


def test_undecodable_file_is_a_file_error_not_a_crash(check: Callable[..., CheckResult]) -> None:
    result = check(FIXTURES / "penalty_undecodable.csv")
    assert [e.code for e in result.file_errors] == ["E_ENCODING"]
    assert (result.rows_read, result.accepted, result.rejected) == (0, 0, 0)


def test_xlsx_title_row_merged_header_and_typed_cells(check: Callable[..., CheckResult]) -> None:
    from tests.test_check import accepted_frame

    result = check(FIXTURES / "penalty_title_merged.xlsx")
    assert result.header_row == 4  # title, blank, then a two-row merged header
    assert (result.rows_read, result.accepted) == (2, 2), result.rejections.to_dict("records")
    assert [w.code for w in result.warnings] == ["W_UNKNOWN_COLUMN"]  # 序号
    frame = accepted_frame(FIXTURES / "penalty_title_merged.xlsx")
    assert list(frame["_row"]) == [5, 6]  # as Excel shows them
    assert [str(v) for v in frame["fine_amount"]] == ["2.000000", "0.800000"]  # column in 元
    assert [str(d.date()) for d in frame["decision_date"]] == ["2026-03-02", "2026-03-19"]
    assert [str(d.date()) for d in frame["valid_until"]] == ["2099-12-31", "2029-03-18"]
    # Merged down the data rows: both rows get the authority.
    assert set(frame["authority_uscc"]) == {"11310110MB2F000027"}


def test_xlsx_bad_rows_keep_excel_row_numbers(check: Callable[..., CheckResult]) -> None:
    result = check(FIXTURES / "penalty_title_merged_bad.xlsx")
    assert set(result.rejections["row"]) == {7, 8}
    assert result.accepted + result.rejected == result.rows_read == 4


def test_blank_rows_are_ignored_but_counted_in_row_numbers(
    tmp_path: Path, check: Callable[..., CheckResult]
) -> None:
    text = to_csv([org_row("B1"), org_row("B2", 行政相对人名称="")])
    lines = text.split("\r\n")
    text = "\r\n".join([lines[0], "", lines[1], ",,,,", "\u3000", lines[2], ""])
    path = tmp_path / "blank.csv"
    path.write_text(text, encoding="utf-8")
    result = check(path)
    assert result.rows_read == 2 and result.blank_rows == 3
    assert list(result.rejections["row"]) == [6]


def test_multiline_cell_counts_as_one_spreadsheet_row(
    write_csv: Callable[..., Path], check: Callable[..., CheckResult]
) -> None:
    rows = [org_row("M1", 违法事实="第一行\n第二行"), org_row("M2", 行政相对人名称="")]
    result = check(write_csv(rows))
    assert list(result.rejections["row"]) == [3]


def test_header_aliases_and_bracket_variants(
    write_csv: Callable[..., Path], check: Callable[..., CheckResult]
) -> None:
    renames = {
        "行政相对人名称": "当事人名称",
        "罚款金额（万元）": "罚款金额(元)",
        "处罚机关": " 处罚\n机关 ",
    }
    header = [renames.get(h, h) for h in HEADER]
    row = org_row("H1")
    row = {renames.get(k, k): v for k, v in row.items()}
    row["罚款金额(元)"] = "50000"
    result = check(write_csv([row], header=header))
    assert result.rejections.empty, result.rejections.to_dict("records")
    from tests.test_check import accepted_frame

    assert str(accepted_frame(write_csv([row], header=header))["fine_amount"].iloc[0]) == "5.000000"


def test_unknown_columns_are_a_warning(
    write_csv: Callable[..., Path], check: Callable[..., CheckResult]
) -> None:
    result = check(write_csv([org_row("U1")], header=HEADER + ["经办人"]))
    assert [w.code for w in result.warnings] == ["W_UNKNOWN_COLUMN"]
    assert "经办人" in result.warnings[0].message and result.accepted == 1


def test_missing_required_column_names_it(
    write_csv: Callable[..., Path], check: Callable[..., CheckResult]
) -> None:
    header = [h for h in HEADER if h != "处罚依据"]
    result = check(write_csv([org_row("X1")], header=header))
    assert [e.code for e in result.file_errors] == ["E_MISSING_COLUMN"]
    assert "处罚依据" in result.file_errors[0].message


def test_two_columns_for_one_field_is_a_file_error(
    write_csv: Callable[..., Path], check: Callable[..., CheckResult]
) -> None:
    result = check(write_csv([org_row("X2")], header=HEADER + ["当事人名称"]))
    assert [e.code for e in result.file_errors] == ["E_DUPLICATE_COLUMN"]


def test_no_header_found(tmp_path: Path, check: Callable[..., CheckResult]) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a,b,c\n1,2,3\n", encoding="utf-8")
    assert [e.code for e in check(path).file_errors] == ["E_HEADER_NOT_FOUND"]


@pytest.mark.parametrize(
    ("name", "content", "code"), [("x.pdf", b"%PDF", "E_FILE_TYPE"), ("x.csv", b"", "E_FILE_EMPTY")]
)
def test_unreadable_files(
    tmp_path: Path, check: Callable[..., CheckResult], name: str, content: bytes, code: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert [e.code for e in check(path).file_errors] == [code]


def test_corrupt_xlsx(tmp_path: Path, check: Callable[..., CheckResult]) -> None:
    path = tmp_path / "broken.xlsx"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    assert [e.code for e in check(path).file_errors] == ["E_XLSX_UNREADABLE"]


def test_row_wider_than_header_is_rejected_not_lost(
    write_csv: Callable[..., Path], check: Callable[..., CheckResult]
) -> None:
    path = write_csv([org_row("W1"), org_row("W2")])
    lines = path.read_bytes().decode("utf-8").split("\r\n")
    lines[2] += ",多出的内容,更多"
    path.write_text("\r\n".join(lines), encoding="utf-8")
    result = check(path)
    assert list(result.rejections["code"]) == ["E_ROW_SHAPE"]
    assert "多出的内容" in result.rejections["message"].iloc[0]


@pytest.mark.parametrize("delimiter", ["\t", ";"])
def test_other_delimiters(
    tmp_path: Path, check: Callable[..., CheckResult], delimiter: str
) -> None:
    row = org_row("T1", 处罚类别="罚款", **{"没收违法所得、没收非法财物的金额（万元）": ""})
    text = to_csv([row]).replace(",", delimiter)
    path = tmp_path / "t.csv"
    path.write_text(text, encoding="utf-8")
    assert check(path).accepted == 1


def _lines(path: Path) -> list[str]:
    return path.read_bytes().decode("utf-8").split("\r\n")


@pytest.mark.parametrize("chunk_rows", [1, 2, 100])
def test_ragged_and_blank_rows_keep_their_numbers_across_chunks(
    write_csv: Callable[..., Path], check: Callable[..., CheckResult], chunk_rows: int
) -> None:
    # Rows Arrow does not parse itself (a title row, short, blank, wide rows) are put back in
    # place: numbered as a spreadsheet shows them, whatever the chunk boundaries.
    path = write_csv([org_row(f"G{i}") for i in range(4)], title="某区行政处罚信息")
    lines = _lines(path)  # title, header, G0..G3, ""
    lines[3] = lines[3] + ",多出的内容"  # G1: one cell too many → E_ROW_SHAPE
    lines[4] = ",".join(lines[4].split(",")[:5])  # G2: short → padded, required cells missing
    lines.insert(5, "")  # a blank line between G2 and G3
    path.write_text("\r\n".join(lines), encoding="utf-8")
    result = check(path, chunk_rows=chunk_rows)
    assert result.header_row == 2
    assert (result.rows_read, result.blank_rows) == (4, 1)
    by_row = result.rejections.groupby("row")["code"].apply(set).to_dict()
    assert set(by_row) == {4, 5}
    assert by_row[4] == {"E_ROW_SHAPE"}
    assert "E_REQUIRED" in by_row[5]
    assert result.accepted == 2


def test_quote_left_open_at_the_end_is_a_file_error(
    write_csv: Callable[..., Path], check: Callable[..., CheckResult]
) -> None:
    path = write_csv([org_row("Q1"), org_row("Q2")])
    text = path.read_bytes().decode("utf-8").rstrip("\r\n")
    path.write_text(text + '"未闭合的备注\r\n', encoding="utf-8")  # in the last cell: no short row
    result = check(path)
    assert [e.code for e in result.file_errors] == ["E_CSV_STRUCTURE"]
    assert "EOF inside string starting at row 2" in result.file_errors[0].message
    assert (result.rows_read, result.accepted, result.rejected) == (0, 0, 0)


def test_quoted_cells_with_delimiters_quotes_and_line_breaks(
    write_csv: Callable[..., Path], check: Callable[..., CheckResult]
) -> None:
    from tests.test_check import accepted_frame

    facts = '经查，当事人"销售"侵权商品,\r\n事实清楚'
    path = write_csv([org_row("C1", 违法事实=facts), org_row("C2")])
    result = check(path)
    assert (result.rows_read, result.accepted) == (2, 2), result.rejections.to_dict("records")
    frame = accepted_frame(path)
    assert list(frame["_row"]) == [2, 3]
    assert frame["violation_facts"].iloc[0] == facts


def test_row_wider_than_the_extra_columns_stops_the_file(
    write_csv: Callable[..., Path], check: Callable[..., CheckResult]
) -> None:
    path = write_csv([org_row("V1"), org_row("V2")])
    lines = _lines(path)
    lines[2] += "," * 40
    path.write_text("\r\n".join(lines), encoding="utf-8")
    result = check(path)
    assert [e.code for e in result.file_errors] == ["E_CSV_STRUCTURE"]
    assert "line 3" in result.file_errors[0].message


def test_utf16_csv(write_csv: Callable[..., Path], check: Callable[..., CheckResult]) -> None:
    result = check(write_csv([org_row("U1"), org_row("U2")], encoding="utf-16"))
    assert result.encoding == "UTF-16"
    assert (result.rows_read, result.accepted) == (2, 2), result.rejections.to_dict("records")


def test_odd_records_keep_their_numbers_across_many_blocks_and_chunks(
    write_csv: Callable[..., Path], check: Callable[..., CheckResult]
) -> None:
    # Arrow parses blocks of 64 KiB and reports the odd records of each as it goes, ahead of
    # the chunk being cut: numbering must hold across ~30 blocks and 40 chunks, with odd
    # records in most of them and on both sides of their boundaries.
    rows = [org_row(f"B{i:05d}") for i in range(4_000)]
    path = write_csv(rows)
    lines = _lines(path)  # header, B00000…, ""
    wide, short = set(range(5, 4_000, 97)), set(range(50, 4_000, 89)) - set(range(5, 4_000, 97))
    for i in wide:
        lines[1 + i] += ",多出的内容"
    for i in short:
        lines[1 + i] = ",".join(lines[1 + i].split(",")[:5])
    path.write_text("\r\n".join(lines), encoding="utf-8")
    assert path.stat().st_size > 25 * 64 * 1024
    result = check(path, chunk_rows=100)
    assert result.rows_read == 4_000
    by_row = result.rejections.groupby("row")["code"].apply(set).to_dict()
    assert {row for row, codes in by_row.items() if "E_ROW_SHAPE" in codes} == {i + 2 for i in wide}
    assert {row for row, codes in by_row.items() if "E_REQUIRED" in codes} == {i + 2 for i in short}
    assert result.accepted == 4_000 - len(wide) - len(short)
