"""The second dataset through the same reader and rules: only a contract, look-ups and rules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from etl.check import CheckResult
from etl.offices import load_offices
from tests.fixtures.build import JINGAN, PATENT_HEADER, SH_IPA, appno, patent_row

Write = Callable[..., Path]
Check = Callable[..., CheckResult]


def codes(result: CheckResult) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    for row, code in zip(result.rejections["row"], result.rejections["code"], strict=True):
        found.setdefault(int(row), set()).add(code)
    return found


@pytest.mark.parametrize(
    "written",
    [
        "201710601862.3",
        "CN201710601862.3",
        "2017106018623",
        "ＣＮ２０１７１０６０１８６２．３",  # full-width
        " cn201710601862.3 ",
    ],
)
def test_every_accepted_form_of_the_application_number_is_stored_canonical(
    written: str, write_csv: Write, check: Check
) -> None:
    from tests.test_check import CollectingSink

    sink = CollectingSink()
    path = write_csv([patent_row(1, 申请号=written)], PATENT_HEADER)
    result = check(path, dataset="abnormal_patent", sink=sink)
    assert result.ok, result.to_json()
    assert sink.accepted()["application_no"].tolist() == ["201710601862.3"]


def test_wrong_check_character_and_shape_are_rejected(write_csv: Write, check: Check) -> None:
    good = appno(2026, 1, 5)
    wrong = good[:-1] + ("0" if good[-1] != "0" else "1")
    rows = [patent_row(1, 申请号=wrong), patent_row(2, 申请号="2026100005"), patent_row(3)]
    result = check(write_csv(rows, PATENT_HEADER), dataset="abnormal_patent")
    assert codes(result) == {2: {"E_PATENT_APPNO"}, 3: {"E_PATENT_APPNO"}}
    assert "校验位" in result.rejections["message"].iloc[0]


def test_labels_districts_and_statuses_are_normalised(write_csv: Write, check: Check) -> None:
    from tests.test_check import CollectingSink

    sink = CollectingSink()
    row = patent_row(1, 非正常类型="类型1、计算机随机生成", 所属区="浦东新区", 处理状态="主动撤回",
                     处理日期="2026年10月20日", 申请人类别="企业")  # fmt: skip
    result = check(write_csv([row], PATENT_HEADER), dataset="abnormal_patent", sink=sink)
    assert result.ok, result.to_json()
    got = sink.accepted().iloc[0]
    assert (got["abnormal_types"], got["district"], got["handling_status"]) == (
        "1;4", "310115", "已撤回",
    )  # fmt: skip


def test_domain_rules(write_csv: Write, check: Check) -> None:
    rows = [
        patent_row(1, 所属区="310199"),  # not a Shanghai district
        patent_row(2, status="已撤回", 处理日期=""),  # handled without a date
        patent_row(3, status="已撤回", 处理日期="2026-10-01"),  # before the notice (10-10)
        patent_row(
            4, 申请人类别="自然人", 申请人统一社会信用代码="", 申请人证件号码="110105194912310021"
        ),  # fmt: skip  GB 11643 check fails
        patent_row(5, 申请人统一社会信用代码=""),  # organisation without USCC
        patent_row(6, 非正常类型="10"),
        patent_row(7, 通知批次=""),
        patent_row(8),
    ]
    result = check(write_csv(rows, PATENT_HEADER), dataset="abnormal_patent")
    assert codes(result) == {
        2: {"E_DISTRICT"},
        3: {"E_STATUS_DATE"},
        4: {"E_STATUS_DATE"},
        5: {"E_ID_CHECKSUM"},
        6: {"E_REQUIRED"},
        7: {"E_ENUM"},
        8: {"E_REQUIRED"},
    }
    messages = dict(zip(result.rejections["row"], result.rejections["message"], strict=True))
    assert "必须填写" in messages[3] and "不能早于「通知日期」" in messages[4]


def test_district_offices_report_only_their_own_district(write_csv: Write, check: Check) -> None:
    registry = load_offices()
    rows = [patent_row(1, "310106", office=JINGAN), patent_row(2, "310110", office=JINGAN)]
    jingan = check(write_csv(rows, PATENT_HEADER), dataset="abnormal_patent",
                   office=registry.get("jingan-amr"))  # fmt: skip
    assert codes(jingan) == {3: {"E_OFFICE_NOT_AUTHORISED"}}
    city_rows = [patent_row(1, "310106"), patent_row(2, "310110"), patent_row(3, "310151")]
    city = check(write_csv(city_rows, PATENT_HEADER), dataset="abnormal_patent",
                 office=registry.get("sh-ipa"))  # fmt: skip
    assert city.ok, city.to_json()
    wrong_source = [patent_row(1, "310106", office=SH_IPA)]
    result = check(write_csv(wrong_source, PATENT_HEADER), dataset="abnormal_patent",
                   office=registry.get("jingan-amr"))  # fmt: skip
    assert codes(result) == {2: {"E_OFFICE_NOT_AUTHORISED"}}
