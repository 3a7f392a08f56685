"""Publicity windows (SPEC.md §4), with hand-worked dates and amounts.

Amounts are written in 元 here and stored in 万元 as the contract says (¥200 = 0.02). Dates
follow 《民法典》第二百零二条: the last day is the same-numbered day N months on, or that month's
last day when it has none.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from etl.publish.policy import load_publicity_policy
from etl.publish.windows import (
    CAN_END_EARLY,
    CLASS,
    COLUMNS,
    FROM,
    REPAIR_FROM,
    REPAIRED,
    UNTIL,
    in_window,
    publicity,
    with_publicity,
)

AMOUNT = pd.ArrowDtype(pa.decimal128(18, 6))
PERSON, TRADER, ORG = "自然人", "个体工商户", "法人及非法人组织"
ORDINARY, SIMPLE = "普通程序", "简易程序"

DEFAULTS: dict[str, Any] = {
    "subject_type": ORG,
    "penalty_categories": "罚款",
    "fine_yuan": "100000",
    "confiscation_amount": None,
    "decision_date": "2025-01-31",
    "procedure_type": ORDINARY,
    "valid_until": "2099-12-31",
    "publicity_until": None,
}


def penalties(*rows: dict[str, Any], index: list[int] | None = None) -> pd.DataFrame:
    """An as-of frame with the store's dtypes; each row overrides DEFAULTS."""
    full = [{**DEFAULTS, **row} for row in rows]
    fines = [None if r["fine_yuan"] is None else Decimal(r["fine_yuan"]) / 10_000 for r in full]
    frame = pd.DataFrame(
        {
            "subject_type": pd.Series([r["subject_type"] for r in full], dtype="str"),
            "penalty_categories": pd.Series([r["penalty_categories"] for r in full], dtype="str"),
            "fine_amount": pd.Series(pa.array(fines, pa.decimal128(18, 6)), dtype=AMOUNT),
            "confiscation_amount": pd.Series(
                pa.array([r["confiscation_amount"] for r in full], pa.decimal128(18, 6)),
                dtype=AMOUNT,
            ),
            "procedure_type": pd.Series([r["procedure_type"] for r in full], dtype="str"),
            **{
                name: pd.to_datetime(pd.Series([r[name] for r in full])).astype("datetime64[s]")
                for name in ("decision_date", "valid_until", "publicity_until")
            },
        }
    )
    if REPAIRED in full[0]:
        frame[REPAIRED] = [r[REPAIRED] for r in full]
    if index is not None:
        frame.index = pd.Index(index)
    return frame


def window(*, profile: str = "samr-45", **row: Any) -> pd.Series:
    """`publicity` of a single penalty, as one row."""
    return publicity(penalties(row), load_publicity_policy(profile)).iloc[0]


def published_on(frame: pd.DataFrame, *days: str, profile: str = "samr-45") -> list[bool]:
    """Whether the (single-row) frame is public on each day."""
    full = with_publicity(frame, load_publicity_policy(profile))
    return [bool(in_window(full, date.fromisoformat(d)).iloc[0]) for d in days]


def ts(day: str) -> pd.Timestamp:
    return pd.Timestamp(day)


# --- the 3-month and 3-year windows -------------------------------------------------------------


@pytest.mark.parametrize(
    ("decided", "until"),
    [
        ("2026-01-15", "2026-04-15"),  # the same-numbered day
        ("2026-01-31", "2026-04-30"),  # April has no 31st: its last day
        ("2025-11-30", "2026-02-28"),
        ("2023-11-30", "2024-02-29"),  # leap year
    ],
)
def test_short_window_ends_on_the_same_day_three_months_on(decided: str, until: str) -> None:
    out = window(penalty_categories="通报批评", fine_yuan=None, decision_date=decided)
    assert out[CLASS] == "short"
    assert out[FROM] == ts(decided) and out[UNTIL] == ts(until)


def test_short_window_edges_inclusive() -> None:
    frame = penalties(
        {"penalty_categories": "通报批评", "fine_yuan": None, "decision_date": "2026-01-31"}
    )
    days = ("2026-01-30", "2026-01-31", "2026-04-30", "2026-05-01")
    assert published_on(frame, *days) == [False, True, True, False]


def test_three_year_window_from_a_leap_day() -> None:
    out = window(decision_date="2024-02-29")
    assert out[CLASS] == "standard" and out[UNTIL] == ts("2027-02-28")
    frame = penalties({"decision_date": "2024-02-29"})
    days = ("2024-02-28", "2024-02-29", "2027-02-28", "2027-03-01")
    assert published_on(frame, *days) == [False, True, True, False]


def test_three_year_window_ordinary_date() -> None:
    assert window(decision_date="2023-03-15")[UNTIL] == ts("2026-03-15")


# --- never published ----------------------------------------------------------------------------


@pytest.mark.parametrize("procedure", [ORDINARY, None])
def test_warning_only_is_never_published(procedure: str | None) -> None:
    row: dict[str, Any] = {
        "penalty_categories": "警告",
        "fine_yuan": None,
        "procedure_type": procedure,
    }
    out = window(**row)
    assert out[CLASS] == "warning_only"
    assert pd.isna(out[FROM]) and pd.isna(out[UNTIL]) and not out[CAN_END_EARLY]
    assert published_on(penalties(row), "2025-01-31", "2025-06-01") == [False, False]


def test_simple_procedure_by_column_whatever_the_amount() -> None:
    out = window(procedure_type=SIMPLE, subject_type=PERSON, fine_yuan="200")
    assert out[CLASS] == "simple_procedure" and pd.isna(out[UNTIL])
    # The column says so: no ceiling is consulted (a data problem for validation, not here).
    assert window(procedure_type=SIMPLE, fine_yuan="100000")[CLASS] == "simple_procedure"


def test_ordinary_procedure_column_beats_the_ceiling() -> None:
    out = window(procedure_type=ORDINARY, subject_type=PERSON, fine_yuan="200")
    assert out[CLASS] == "short"


@pytest.mark.parametrize(
    ("subject", "fine", "expected"),
    [
        (PERSON, "200", "simple_procedure"),  # 第五十一条: 公民 二百元以下, 本数 included
        (PERSON, "200.01", "short"),
        (TRADER, "200", "simple_procedure"),  # [OURS] a 个体工商户 takes the 公民 ceiling
        (TRADER, "200.01", "short"),
        (ORG, "3000", "simple_procedure"),  # 法人或者其他组织 三千元以下
        (ORG, "3000.01", "short"),
    ],
)
def test_simple_procedure_by_ceiling_when_the_column_is_empty(
    subject: str, fine: str, expected: str
) -> None:
    out = window(procedure_type=None, subject_type=subject, fine_yuan=fine)
    assert out[CLASS] == expected


def test_ceiling_counts_warning_and_fine_only() -> None:
    both = window(
        procedure_type=None, subject_type=PERSON, penalty_categories="警告;罚款", fine_yuan="150"
    )
    assert both[CLASS] == "simple_procedure"
    # A confiscation is not an on-the-spot penalty (第五十一条), however small the fine.
    out = window(
        procedure_type=None,
        subject_type=PERSON,
        penalty_categories="罚款;没收违法所得",
        fine_yuan="150",
        confiscation_amount=Decimal("0.01"),
    )
    assert out[CLASS] == "standard"


def test_missing_procedure_column_falls_back_to_the_ceiling() -> None:
    frame = penalties({"subject_type": PERSON, "fine_yuan": "200"}).drop(columns="procedure_type")
    out = publicity(frame, load_publicity_policy())
    assert out[CLASS].tolist() == ["simple_procedure"]


# --- short class thresholds (沪市监规范〔2022〕8号) ------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "fine", "expected"),
    [
        (PERSON, "5000", "short"),
        (PERSON, "5000.01", "standard"),
        (TRADER, "5000", "short"),
        (TRADER, "5000.01", "standard"),  # [OURS] natural-person threshold
        (ORG, "50000", "short"),
        (ORG, "50000.01", "standard"),
    ],
)
def test_lower_fine_thresholds(subject: str, fine: str, expected: str) -> None:
    assert window(subject_type=subject, fine_yuan=fine)[CLASS] == expected


def test_public_criticism_alone_or_with_a_low_fine_is_short() -> None:
    assert window(penalty_categories="通报批评", fine_yuan=None)[CLASS] == "short"
    assert window(penalty_categories="通报批评;罚款", fine_yuan="10000")[CLASS] == "short"
    assert window(penalty_categories="通报批评;罚款", fine_yuan="60000")[CLASS] == "standard"


def test_warning_plus_low_fine_is_not_only_a_low_fine() -> None:
    # “仅受到通报批评或者较低数额罚款” read literally (policy comment): 3 years.
    out = window(subject_type=PERSON, penalty_categories="警告;罚款", fine_yuan="1000")
    assert out[CLASS] == "standard" and out[UNTIL] == ts("2028-01-31")


# --- credit repair and categories that cannot end early -----------------------------------------


def test_repaired_ordinary_record_leaves_once_repair_may_take_effect() -> None:
    out = window(decision_date="2025-01-31")
    # 6 months run to 2025-07-31 (第二百零二条); repair takes effect the day after.
    assert out[CAN_END_EARLY] and out[REPAIR_FROM] == ts("2025-08-01")
    repaired = penalties({"decision_date": "2025-01-31", REPAIRED: True})
    days = ("2025-07-31", "2025-08-01", "2027-01-31")
    assert published_on(repaired, *days) == [True, False, False]
    not_repaired = penalties({"decision_date": "2025-01-31", REPAIRED: False})
    assert published_on(not_repaired, *days) == [True, True, True]


def test_unknown_repair_status_is_not_a_repair() -> None:
    frame = penalties({"decision_date": "2025-01-31", REPAIRED: None})
    frame[REPAIRED] = frame[REPAIRED].astype("boolean")
    assert published_on(frame, "2025-09-01") == [True]


@pytest.mark.parametrize(
    "category", ["责令停产停业", "限制开展生产经营活动", "限制从业", "降低资质等级", "吊销许可证件"]
)
def test_restrictions_are_long_and_survive_repair(category: str) -> None:
    row: dict[str, Any] = {
        "penalty_categories": f"罚款;{category}" if category != "降低资质等级" else category,
        "decision_date": "2025-01-31",
        "valid_until": "2025-12-31",
        REPAIRED: True,
    }
    if category == "降低资质等级":
        row["fine_yuan"] = None
    out = window(**row)
    assert out[CLASS] == "standard" and out[UNTIL] == ts("2028-01-31")
    assert not out[CAN_END_EARLY] and pd.isna(out[REPAIR_FROM])
    assert published_on(penalties(row), "2026-06-01", "2028-01-31") == [True, True]


def test_canonical_category_order_does_not_matter_for_the_lock() -> None:
    # Contract order puts 吊销许可证件 before 责令关闭; the lock looks at membership only.
    out = window(penalty_categories="吊销许可证件;责令关闭", fine_yuan=None)
    assert not out[CAN_END_EARLY]


def test_closure_is_not_in_the_no_early_end_list() -> None:
    # 第十四条 lists no 责令关闭: the pipeline does not widen the rule (policy comment).
    out = window(penalty_categories="责令关闭", fine_yuan=None, decision_date="2025-01-31")
    assert out[CLASS] == "standard" and out[CAN_END_EARLY]


def test_short_class_cannot_end_early_under_samr() -> None:
    out = window(penalty_categories="通报批评", fine_yuan=None)
    assert not out[CAN_END_EARLY] and pd.isna(out[REPAIR_FROM])


# --- restriction longer than the window (第十三条第三款), supplied 公示截止期 ---------------------


def test_restriction_longer_than_three_years_extends_the_window() -> None:
    longer = window(
        penalty_categories="限制从业",
        fine_yuan=None,
        decision_date="2025-01-10",
        valid_until="2030-06-30",
    )
    assert longer[UNTIL] == ts("2030-06-30")
    shorter = window(
        penalty_categories="限制从业",
        fine_yuan=None,
        decision_date="2025-01-10",
        valid_until="2026-01-01",
    )
    assert shorter[UNTIL] == ts("2028-01-10")
    # 处罚有效期 of an ordinary fine does not extend anything.
    assert window(decision_date="2025-01-10", valid_until="2099-12-31")[UNTIL] == ts("2028-01-10")


def test_supplied_publicity_until_replaces_the_computed_one() -> None:
    out = window(decision_date="2025-01-31", publicity_until="2026-01-31")
    assert out[UNTIL] == ts("2026-01-31")
    # but never makes a never-published penalty public
    warning = window(penalty_categories="警告", fine_yuan=None, publicity_until="2026-01-31")
    assert pd.isna(warning[UNTIL])


def test_a_supplied_date_never_ends_a_no_early_end_penalty_early() -> None:
    """第十四条: 吊销许可证件 stays the full 3 years even if the office wrote an earlier date."""
    early = window(decision_date="2025-01-31", penalty_categories="吊销许可证件",
                   fine_yuan=None, publicity_until="2026-01-31")  # fmt: skip
    assert early[UNTIL] == ts("2028-01-31")
    later = window(decision_date="2025-01-31", penalty_categories="吊销许可证件",
                   fine_yuan=None, publicity_until="2029-06-30")  # fmt: skip
    assert later[UNTIL] == ts("2029-06-30")


# --- the NDRC profile --------------------------------------------------------------------------


def test_ndrc_general_dishonesty_is_one_year_repairable_after_three_months() -> None:
    samr = window(decision_date="2025-01-31")
    ndrc = window(profile="ndrc-2026", decision_date="2025-01-31")
    assert samr[UNTIL] == ts("2028-01-31") and ndrc[UNTIL] == ts("2026-01-31")
    assert ndrc[CLASS] == "standard" and ndrc[REPAIR_FROM] == ts("2025-05-01")


def test_ndrc_serious_class_and_the_no_early_end_rule() -> None:
    closure = window(
        profile="ndrc-2026",
        penalty_categories="责令关闭",
        fine_yuan=None,
        decision_date="2025-01-31",
    )
    assert closure[CLASS] == "serious" and closure[UNTIL] == ts("2028-01-31")
    assert closure[CAN_END_EARLY] and closure[REPAIR_FROM] == ts("2026-02-01")
    revoked = window(profile="ndrc-2026", penalty_categories="吊销许可证件", fine_yuan=None)
    assert revoked[CLASS] == "serious" and not revoked[CAN_END_EARLY]
    assert window(penalty_categories="责令关闭", fine_yuan=None)[CLASS] == "standard"  # samr-45


def test_ndrc_keeps_the_never_published_and_short_classes() -> None:
    rows: list[dict[str, Any]] = [
        {"penalty_categories": "警告", "fine_yuan": None},
        {"procedure_type": None, "subject_type": PERSON, "fine_yuan": "200"},
        {"penalty_categories": "通报批评", "fine_yuan": None, "decision_date": "2026-01-31"},
    ]
    for row in rows:
        samr, ndrc = window(**row), window(profile="ndrc-2026", **row)
        assert samr[CLASS] == ndrc[CLASS]
        assert (pd.isna(samr[UNTIL]) and pd.isna(ndrc[UNTIL])) or samr[UNTIL] == ndrc[UNTIL]
    short = window(
        profile="ndrc-2026",
        penalty_categories="通报批评",
        fine_yuan=None,
        decision_date="2026-01-31",
    )
    assert short[UNTIL] == ts("2026-04-30") and not short[CAN_END_EARLY]


# --- shape and strictness ----------------------------------------------------------------------


def test_output_is_aligned_and_typed() -> None:
    frame = penalties({"penalty_categories": "警告", "fine_yuan": None}, {}, index=[7, 3])
    out = publicity(frame, load_publicity_policy())
    assert list(out.columns) == COLUMNS and out.index.tolist() == [7, 3]
    assert out[CLASS].tolist() == ["warning_only", "standard"]
    assert str(out[UNTIL].dtype) == "datetime64[s]" and str(out[FROM].dtype) == "datetime64[s]"
    assert out[CAN_END_EARLY].dtype == bool
    assert in_window(with_publicity(frame, load_publicity_policy()), date(2025, 2, 1)).tolist() == [
        False,
        True,
    ]


def test_with_publicity_replaces_the_supplied_column() -> None:
    frame = penalties({"decision_date": "2025-01-31"})
    assert frame[UNTIL].isna().all()
    full = with_publicity(frame, load_publicity_policy())
    assert full[UNTIL].tolist() == [ts("2028-01-31")]
    assert set(COLUMNS) <= set(full.columns) and len(full.columns) == len(frame.columns) + 4
    assert frame[UNTIL].isna().all()  # the input is not modified


def test_empty_frame() -> None:
    frame = penalties({}).iloc[0:0]
    out = publicity(frame, load_publicity_policy())
    assert out.empty and list(out.columns) == COLUMNS
    assert in_window(out, date(2025, 1, 1)).empty


@pytest.mark.parametrize(
    ("row", "words"),
    [
        ({"penalty_categories": "警告;训诫"}, "处罚类别"),
        ({"penalty_categories": ""}, "处罚类别"),
        ({"penalty_categories": None}, "处罚类别"),
        ({"penalty_categories": "罚款;罚款"}, "处罚类别"),  # a repeated part is not canonical
        ({"penalty_categories": "警告;"}, "处罚类别"),  # an empty part
        ({"penalty_categories": "警告; 罚款"}, "处罚类别"),  # a part with a space
        ({"subject_type": "外星人"}, "行政相对人类别"),
        ({"procedure_type": "特别程序"}, "程序类型"),
    ],
)
def test_values_outside_the_contract_stop_the_computation(row: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        publicity(penalties(row), load_publicity_policy())
