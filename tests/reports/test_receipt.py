"""Receipts written a batch of rejections at a time are the bytes written in one piece."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from etl import check as check_module
from etl.check import CheckResult, Notice
from etl.reports import receipt
from etl.reports.receipt import (
    CSV_HEADER,
    neutralise_formulas,
    receipt_context,
    rejection_table,
    write_receipt,
)

AWKWARD = ["=1+1", '带"引号"', "两\n行", "tab\there", "", "甲，乙", "-5", "\\backslash", "\u2028"]


def _result(n: int) -> CheckResult:
    result = CheckResult(file="申报.csv", dataset="penalty", office="jingan-amr", sha256="ab" * 32)
    result.rows_read, result.rejected, result.accepted = n + 5, n, 5
    result.warnings.append(Notice("W_QUALITY", '提示：引号"与换行\n'))
    result.rejections = pd.DataFrame(
        {
            "row": pd.Series(range(2, n + 2), dtype="int64"),
            "field": pd.Series([f"字段{i % 3}" for i in range(n)], dtype="str"),
            "code": pd.Series(["E_ENUM"] * n, dtype="str"),
            "message": pd.Series(
                [f"第{i}条：{AWKWARD[i % len(AWKWARD)]}" for i in range(n)], dtype="str"
            ),
            "value": pd.Series([AWKWARD[(i * 7) % len(AWKWARD)] for i in range(n)], dtype="str"),
        }
    )
    return result


def _csv_in_one_piece(result: CheckResult) -> bytes:
    """The receipt CSV as the receipt made it before it was written in batches."""
    notices = [("（提示）", "", n.code, n.message, "") for n in result.warnings]
    body = rejection_table(result.rejections)
    table = pd.concat([pd.DataFrame(notices, columns=CSV_HEADER), body], ignore_index=True)
    text = table.apply(neutralise_formulas).to_csv(index=False, lineterminator="\r\n")
    return str(text).encode("utf-8-sig")


@pytest.mark.parametrize("n", [0, 1, 7, 23])
@pytest.mark.parametrize("indent", [None, 2])
def test_json_in_pieces_is_json_dumps_of_the_whole(
    n: int, indent: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(check_module, "_JSON_BATCH", 5)
    result, pieces = _result(n), []
    extra = {"office": "jingan-amr", "quality": None, "store": {"inserted": 5}}
    result.write_json(pieces.append, indent=indent, extra=extra)
    whole = json.dumps({**result.to_json(), **extra}, ensure_ascii=False, indent=indent)
    assert "".join(pieces) == whole
    assert n == 0 or len(pieces) > 2  # really in pieces


@pytest.mark.parametrize("n", [0, 7, 23])
def test_receipt_files_in_batches_equal_the_one_piece_files(
    n: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(check_module, "_JSON_BATCH", 4)
    monkeypatch.setattr(receipt, "_CSV_BATCH", 5)
    result = _result(n)
    paths = write_receipt(result, tmp_path, status="loaded")
    assert paths.csv.read_bytes() == _csv_in_one_piece(result)
    body = json.loads(paths.json.read_text("utf-8"))
    expected = {**result.to_json(), **receipt_context(result, status="loaded")}
    assert body.pop("generated_at") and expected.pop("generated_at")
    assert body == expected
    assert paths.json.read_text("utf-8").endswith("}\n")
    assert not list(tmp_path.glob(".*.tmp"))  # nothing half-written left behind
