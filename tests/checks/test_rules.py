"""Every rejection code, through real CSV files (issue #2 acceptance)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from etl.check import CheckResult
from etl.offices import Office
from tests.fixtures.build import HEADER, YANGPU, org_row, person_row

NO = "沪静市监案处字〔2026〕第0700号"
FINE = "罚款金额（万元）"
CONFISCATION = "没收违法所得、没收非法财物的金额（万元）"


def codes(result: CheckResult) -> set[tuple[str, str]]:
    return {
        (f, c) for f, c in zip(result.rejections["field"], result.rejections["code"], strict=True)
    }


CASES = [
    (org_row(NO, 行政相对人名称=""), "行政相对人名称", "E_REQUIRED"),
    (org_row(NO, 法定代表人=""), "法定代表人", "E_REQUIRED"),  # conditional: organisations
    (person_row(NO, 证件号码=""), "证件号码", "E_REQUIRED"),  # conditional: natural persons
    (org_row(NO, 行政相对人名称="名" * 201), "行政相对人名称", "E_TOO_LONG"),
    (org_row(NO, 行政相对人类别="外国人"), "行政相对人类别", "E_ENUM"),
    (org_row(NO, 处罚类别="罚款;拘役"), "处罚类别", "E_ENUM"),
    (org_row(NO, 统一社会信用代码="9111010855138508"), "统一社会信用代码", "E_USCC_FORMAT"),
    (org_row(NO, 统一社会信用代码="91110108551385082A"), "统一社会信用代码", "E_USCC_CHECKSUM"),
    (org_row(NO, 统一社会信用代码="00000000000000000X"), "统一社会信用代码", "E_USCC_FORMAT"),
    (person_row(NO, 证件号码="110105194912310021"), "证件号码", "E_ID_CHECKSUM"),
    (person_row(NO, 证件类型="", 证件号码="110105194902300021"), "证件号码", "E_ID_CHECKSUM"),
    (org_row(NO, 处罚决定日期="2026-02-30"), "处罚决定日期", "E_DATE_INVALID"),
    (
        org_row(NO, 处罚决定日期="2026-12-01", 处罚有效期="2029-12-01"),
        "处罚决定日期",
        "E_DATE_FUTURE",
    ),
    (org_row(NO, 处罚有效期="2026-05-10"), "处罚有效期", "E_DATE_ORDER"),
    ({**org_row(NO), "公示截止期": "2026-01-01"}, "公示截止期", "E_DATE_ORDER"),
    (org_row(NO, **{FINE: "五万"}), FINE, "E_AMOUNT_INVALID"),
    (org_row(NO, **{FINE: "-1"}), FINE, "E_AMOUNT_INVALID"),
    (org_row(NO, **{FINE: ""}), FINE, "E_AMOUNT_REQUIRED"),
    (org_row(NO, **{FINE: "0"}), FINE, "E_AMOUNT_REQUIRED"),
    (org_row(NO, **{CONFISCATION: ""}), CONFISCATION, "E_AMOUNT_REQUIRED"),
    (org_row(NO, 处罚类别="罚款、吊销许可证"), "暂扣或吊销证照名称及编号", "E_LICENCE_REQUIRED"),
    (org_row(NO, 处罚类别="罚款;暂扣执照"), "暂扣或吊销证照名称及编号", "E_LICENCE_REQUIRED"),
    (
        org_row(NO, 行政相对人类别="个体工商户", 统一社会信用代码="00000000000000000X"),
        "工商注册号",
        "E_REQUIRED",
    ),
]


@pytest.mark.parametrize(("row", "field", "code"), CASES, ids=[f"{c[2]}-{c[1]}" for c in CASES])
def test_each_rejection_code(
    write_csv: Callable[..., Path],
    check: Callable[..., CheckResult],
    row: dict[str, str],
    field: str,
    code: str,
) -> None:
    header = HEADER + (["公示截止期"] if "公示截止期" in row else [])
    result = check(write_csv([org_row("沪静市监案处字〔2026〕第0001号"), row], header=header))
    assert result.rows_read == 2
    assert (field, code) in codes(result), result.rejections.to_dict("records")
    assert set(result.rejections["row"]) == {3}, "only the bad row is rejected"
    assert result.accepted == 1 and result.rejected == 1


def test_valid_rows_of_every_shape_are_accepted(
    write_csv: Callable[..., Path], check: Callable[..., CheckResult]
) -> None:
    rows = [
        org_row("A1"),
        person_row("A2"),
        org_row(
            "A3", 行政相对人类别="个体工商户", 统一社会信用代码="00000000000000000X", 法定代表人=""
        ),
        org_row("A4", 处罚类别="罚款;吊销许可证件", 处罚内容="吊销营业执照"),
    ]
    rows[2]["工商注册号"] = "310106000123456"
    rows[3]["暂扣或吊销证照名称及编号"] = "营业执照 91110108551385082Q"
    result = check(write_csv(rows, header=HEADER + ["工商注册号"]))
    assert result.rejections.empty, result.rejections.to_dict("records")
    assert result.accepted == 4


def test_a_row_may_carry_several_rejections(
    write_csv: Callable[..., Path], check: Callable[..., CheckResult]
) -> None:
    row = org_row(NO, 行政相对人名称="", 统一社会信用代码="91110108551385082A", 处罚决定日期="昨天")
    result = check(write_csv([row]))
    assert {c for _, c in codes(result)} >= {"E_REQUIRED", "E_USCC_CHECKSUM", "E_DATE_INVALID"}
    assert result.rejected == 1 and result.accepted == 0


def test_duplicates_in_file_reject_every_row_sharing_the_key(
    write_csv: Callable[..., Path], check: Callable[..., CheckResult]
) -> None:
    rows = [
        org_row("D1"),
        org_row("D2"),
        org_row("D1", 行政相对人名称="更正后的名称"),
        org_row("Ｄ１"),
    ]
    result = check(write_csv(rows))
    dupes = result.rejections[result.rejections["code"] == "E_DUPLICATE_IN_FILE"]
    # Full-width Ｄ１ is the same decision number once normalised.
    assert sorted(dupes["row"]) == [2, 4, 5]
    assert "2、4、5" in dupes["message"].iloc[0]
    assert result.accepted == 1


def test_office_authorisation(
    write_csv: Callable[..., Path], check: Callable[..., CheckResult], jingan: Office
) -> None:
    rows = [org_row("O1"), org_row("O2", office=YANGPU)]
    result = check(write_csv(rows), office=jingan)
    bad = result.rejections[result.rejections["code"] == "E_OFFICE_NOT_AUTHORISED"]
    assert set(bad["row"]) == {3}
    assert set(bad["field"]) == {"数据来源单位统一社会信用代码", "处罚机关统一社会信用代码"}
    assert "上海市静安区市场监督管理局" in bad["message"].iloc[0]
    # Without an office (a plain pre-flight check) the same file has no authorisation rejections.
    assert check(write_csv(rows)).rejected == 0


def test_combined_uscc_or_id_column_is_rerouted_for_natural_persons(
    write_csv: Callable[..., Path], check: Callable[..., CheckResult]
) -> None:
    header = [h if h != "统一社会信用代码" else "统一社会信用代码/身份证号" for h in HEADER]
    header.remove("证件号码")
    person = person_row("R1")
    person["统一社会信用代码/身份证号"] = "11010519491231002X"
    org = org_row("R2")
    org["统一社会信用代码/身份证号"] = org["统一社会信用代码"]
    bad_person = person_row("R3")
    bad_person["统一社会信用代码/身份证号"] = "110105194912310021"
    result = check(write_csv([person, org, bad_person], header=header))
    assert list(result.rejections["code"]) == ["E_ID_CHECKSUM"]
    assert list(result.rejections["row"]) == [4]


def test_length_limit_counts_characters_not_bytes() -> None:
    from etl.checks.rules import _longer_than
    from etl.text import STR

    values = pd.Series(["名" * 3, "abcd", None, "ab"], dtype=STR)
    assert _longer_than(values, 3).tolist() == [False, True, False, False]
    assert _longer_than(values, 9).tolist() == [False] * 4  # no value has more than 9 bytes


def test_category_conditions_hold_per_row_and_never_on_empty() -> None:
    from etl.checks.rules import evaluate
    from etl.contracts import Condition
    from etl.text import STR

    values = pd.Series(["罚款;警告", "警告", None, "罚款", "没收违法所得;罚款"] * 3, dtype=STR)
    typed = {"cats": values}
    contains = Condition.model_validate({"field": "cats", "contains_any": ["罚款"]})
    only = Condition.model_validate({"field": "cats", "only": ["警告", "罚款"]})
    assert evaluate(contains, typed, values.index).tolist() == [True, False, False, True, True] * 3
    assert evaluate(only, typed, values.index).tolist() == [True, True, False, True, False] * 3
