"""Normalisation of dates, amounts, categories and identifiers (issue #2)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pandas as pd
import pytest

from etl.contracts import load_contract
from etl.intake.normalise import Parsed, ParseMemo, parse_field

PENALTY = load_contract("penalty")


def parse(field: str, values: list[str], unit: str | None = "万元"):  # type: ignore[no-untyped-def]
    return parse_field(PENALTY.field(field), pd.Series(values, dtype="str"), PENALTY, unit=unit)


@pytest.mark.parametrize(
    "text",
    [
        "2023-05-11",
        "2023/5/11",
        "2023.5.11",
        "20230511",
        "2023年5月11日",
        "2023-05-11 10:30:00",
        "2023/5/11 0:00",
        "45057",  # Excel serial
        "45057.0",
        "２０２３年５月１１日",  # full-width digits
        "\u30002023-05-11\u00a0",  # ideographic space and NBSP around it
    ],
)
def test_date_forms(text: str) -> None:
    parsed = parse("decision_date", [text])
    assert parsed.values[0] == pd.Timestamp(dt.date(2023, 5, 11))
    assert not any(p.mask.any() for p in parsed.problems)


@pytest.mark.parametrize("text", ["2023-13-01", "2023-02-30", "明天", "11/5/2023"])
def test_invalid_dates(text: str) -> None:
    parsed = parse("decision_date", [text])
    assert pd.isna(parsed.values[0])
    assert [p.code for p in parsed.problems if p.mask.any()] == ["E_DATE_INVALID"]


def test_long_term_validity_alias() -> None:
    assert parse("valid_until", ["长期"]).values[0] == pd.Timestamp("2099-12-31")


@pytest.mark.parametrize(
    ("text", "unit", "expected"),
    [
        ("5", "万元", "5"),
        ("5万元", "万元", "5"),
        ("5万", "万元", "5"),
        ("50000元", "万元", "5"),
        ("50,000元", "万元", "5"),
        ("￥50,000", "元", "5"),
        ("50000", "元", "5"),  # a column titled in 元
        ("5.0000", "万元", "5"),
        ("2000元", "万元", "0.2"),
        ("１２３４.５６元", "万元", "0.123456"),
        ("5万元", None, "5"),  # unit written in the cell: fine in a unit-less column
    ],
)
def test_amount_forms(text: str, unit: str | None, expected: str) -> None:
    parsed = parse("fine_amount", [text], unit=unit)
    assert not any(p.mask.any() for p in parsed.problems)
    assert parsed.values[0] == Decimal(expected)


@pytest.mark.parametrize(
    ("text", "unit", "reason"),
    [
        ("五万元", "万元", "应为数字"),
        ("-5", "万元", "负数"),
        ("5", None, "单位不明确"),
        ("5美元", "万元", "应为数字"),
        # More than the 8 decimal places or 20 integer digits Arrow's wide decimal holds: a
        # rejection, not an error that stopped the file's check.
        ("1.123456789", "万元", "小数位数过多"),
        ("123456789012345678901", "万元", "超出"),
        ("123456789012345678901.123456789", "元", "小数位数过多"),
    ],
)
def test_invalid_amounts(text: str, unit: str | None, reason: str) -> None:
    parsed = parse("fine_amount", [text], unit=unit)
    hits = [p for p in parsed.problems if p.mask.any()]
    assert [p.code for p in hits] == ["E_AMOUNT_INVALID"]
    assert reason in str(hits[0].message)


def test_categories_multi_valued_with_legacy_labels() -> None:
    parsed = parse(
        "penalty_categories",
        [
            "罚款；警告",
            "没收违法所得、没收非法财物",
            "吊销营业执照,罚款",
            "警告、罚款、警告",
            "罚款;拘役",
        ],
    )
    assert list(parsed.values[:4]) == [
        "警告;罚款",
        "没收违法所得;没收非法财物",
        "罚款;吊销许可证件",
        "警告;罚款",
    ]
    unknown = [p for p in parsed.problems if p.code == "E_ENUM"][0]
    assert list(unknown.mask) == [False, False, False, False, True]
    assert pd.isna(parsed.values[4])  # never a silent default


def test_subject_type_lookups_and_unknown_values() -> None:
    parsed = parse("subject_type", ["法人", "个体户", "自 然 人", "外星人"])
    assert list(parsed.values[:3]) == ["法人及非法人组织", "个体工商户", "自然人"]
    assert [p.code for p in parsed.problems if p.mask.any()] == ["E_ENUM"]


def test_identifiers_fold_full_width_and_case_names_keep_characters() -> None:
    uscc = parse("subject_uscc", ["９１１１０１０８５５１３８５０８２ｑ", " 91110108 551385082q "])
    assert list(uscc.values) == ["91110108551385082Q", "91110108551385082Q"]
    name = parse("subject_name", ["\u3000上海（华信）贸易有限公司\u00a0"])
    assert name.values[0] == "上海（华信）贸易有限公司"


@pytest.mark.parametrize(
    ("field", "values"),
    [
        (
            "decision_date",
            ["2023-05-11", "20230511", "45057", "2023-02-30", "", "明天", " 2023/5/11 "],
        ),
        ("fine_amount", ["5", "1,100元", "-5", "5美元", "", "0.2万元", "１２万元"]),
        (
            "penalty_categories",
            ["罚款；警告", "吊销营业执照,罚款", "罚款;拘役", "", "警告、罚款、警告"],
        ),
        ("subject_type", ["法人", "个体户", "自 然 人", "外星人", ""]),
        (
            "subject_uscc",
            ["９１１１０１０８５５１３８５０８２ｑ", " 91110108 551385082q ", "", "X"],
        ),
        ("decision_no", ["沪静市监处〔2023〕0号", " 沪静市监处〔2023〕１号", ""]),
    ],
)
def test_repeated_values_are_parsed_once_with_the_same_outcome(
    field: str, values: list[str]
) -> None:
    # A column that repeats its values is parsed per distinct value and spread back: the outcome
    # must be exactly the one of parsing every row (here: each value on its own).
    rows = (values * 400)[:2000]
    whole = parse(field, rows)
    for i, value in enumerate(values):
        single = parse(field, [value])
        assert whole.present.iloc[i] == single.present.iloc[0]
        assert (pd.isna(whole.values.iloc[i]) and pd.isna(single.values.iloc[0])) or (
            whole.values.iloc[i] == single.values.iloc[0]
        )
        # A problem that no row has may be left out of the list: compare the ones that hit.
        hits_whole = [
            (p.code, p.message.iloc[i] if isinstance(p.message, pd.Series) else p.message)
            for p in whole.problems
            if p.mask.iloc[i]
        ]
        hits_single = [
            (p.code, p.message.iloc[0] if isinstance(p.message, pd.Series) else p.message)
            for p in single.problems
            if p.mask.iloc[0]
        ]
        assert hits_whole == hits_single
    assert whole.values.dtype == parse(field, values).values.dtype
    assert list(whole.values.index) == list(range(len(rows)))


def _outcome(parsed: Parsed) -> list[tuple[object, ...]]:
    """Per row: value, presence, and the problems that hit it (code, message, suffix)."""
    rows = []
    for i in range(len(parsed.values)):
        value = parsed.values.iloc[i]
        hits = sorted(
            (
                p.code,
                p.message.iloc[i] if isinstance(p.message, pd.Series) else p.message,
                None if p.suffix is None else p.suffix.iloc[i],
            )
            for p in parsed.problems
            if p.mask.iloc[i]
        )
        rows.append((None if pd.isna(value) else value, bool(parsed.present.iloc[i]), hits))
    return rows


_CHUNKS = {
    # field: (values of the first chunk, values new in later chunks)
    "decision_date": (
        ["2023-05-11", "20230511", "45057", "2023-02-30", "", "明天", " 2023/5/11 "],
        ["2024年1月2日", "1899-01-01", "2024-01-02"],
    ),
    "fine_amount": (["5", "1,100元", "-5", "5美元", "0.2万元"], ["１２万元", "1e3", "7", ""]),
    "penalty_categories": (
        ["罚款；警告", "吊销营业执照,罚款", "", "警告、罚款、警告"],
        ["罚款;拘役"],
    ),
    "subject_type": (["法人", "个体户", "自 然 人"], ["外星人", "自然人", ""]),
    "subject_uscc": (["９１１１０１０８５５１３８５０８２ｑ", " 91110108 551385082q ", ""], ["X"]),
    # Later chunks bring an empty cell and a wrong check character (its message has a suffix).
    "abnormal_patent.application_no": (
        ["201710601862.3", "CN201710601862.3", "X"],
        ["", "201710601862.4", "2017106018623"],
    ),
}


@pytest.mark.parametrize("field", sorted(_CHUNKS))
def test_a_memo_across_chunks_gives_the_outcome_of_parsing_each_chunk_afresh(field: str) -> None:
    # A file's chunks share one memo per field: values seen in an earlier chunk are not parsed
    # again. Each chunk's outcome must be exactly the one without a memo, including chunks
    # that bring new values, problems the first chunk never had, and record-number indexes.
    first, later = _CHUNKS[field]
    contract = PENALTY
    if "." in field:
        dataset, field = field.split(".")
        contract = load_contract(dataset)

    def rows(values: list[str]) -> list[str]:  # enough rows for the per-distinct path
        return (values * 1500)[:1500]

    chunks = [rows(first), rows([*first, *later]), rows(later), list(reversed(rows(first)))]
    memo = ParseMemo()
    spec = contract.field(field)
    start = 0
    for n, values in enumerate(chunks):
        raw = pd.Series(values, dtype="str", index=pd.RangeIndex(start, start + len(values)))
        start += len(values)
        kept = parse_field(spec, raw, contract, unit="万元", memo=memo)
        afresh = parse_field(spec, raw, contract, unit="万元")
        assert _outcome(kept) == _outcome(afresh)
        assert kept.values.dtype == afresh.values.dtype
        assert list(kept.values.index) == list(raw.index)
        if n == 1:  # the new values were kept, unless a form change turned the memo off
            assert memo.off or (memo.texts is not None and len(memo.texts) == len({*first, *later}))
    # The later chunks were answered by the memo where it stayed on.
    assert memo.off == (field == "penalty_categories")


def test_a_memo_stops_for_mostly_new_values_and_stays_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = PENALTY.field("decision_date")

    def chunk(days: range) -> pd.Series:
        dates = [str(dt.date(2000, 1, 1) + dt.timedelta(days=d)) for d in days]
        return pd.Series((dates * 4)[: 4 * len(days)], dtype="str")

    # Mostly new values in a later chunk: the memo turns off, and the outcome is unchanged.
    memo = ParseMemo()
    for days in (range(0, 400), range(400, 800)):
        raw = chunk(days)
        assert _outcome(parse_field(spec, raw, PENALTY, unit=None, memo=memo)) == _outcome(
            parse_field(spec, raw, PENALTY, unit=None)
        )
    assert memo.off and memo.texts is None

    # Room for fewer values than seen: the memo keeps what fits, and answers the same.
    monkeypatch.setattr(ParseMemo, "LIMIT", 450)
    memo = ParseMemo()
    for days in (range(0, 400), range(100, 500), range(150, 550)):
        raw = chunk(days)
        assert _outcome(parse_field(spec, raw, PENALTY, unit=None, memo=memo)) == _outcome(
            parse_field(spec, raw, PENALTY, unit=None)
        )
        assert memo.texts is not None and len(memo.texts) <= 450
    assert not memo.off
