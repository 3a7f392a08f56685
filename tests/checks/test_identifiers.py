"""SPEC.md §3 identifier algorithms, with the spec's own examples."""

from __future__ import annotations

import pandas as pd
import pytest

from etl.checks.identifiers import check_patent_appno, check_resident_id, check_uscc

TODAY = pd.Timestamp("2026-11-21")


@pytest.mark.parametrize(
    "code", ["91110108551385082Q", "91110000600037341L", "11230500001755309F", "11310106MB2F00001B"]
)
def test_valid_uscc(code: str) -> None:
    outcome = check_uscc(pd.Series([code], dtype="str"))
    assert outcome.format_ok[0] and outcome.checksum_ok[0]


def test_uscc_wrong_check_character_names_the_expected_one() -> None:
    outcome = check_uscc(pd.Series(["91110108551385082A"], dtype="str"))
    assert outcome.format_ok[0] and not outcome.checksum_ok[0]
    assert outcome.expected[0] == "Q"


@pytest.mark.parametrize(
    "code", ["9111010855138508", "91110108551385082I", "9111O108551385082Q", ""]
)
def test_malformed_uscc(code: str) -> None:
    assert not check_uscc(pd.Series([code], dtype="str")).format_ok[0]


def test_placeholder_fails_the_checksum() -> None:
    # SPEC.md §3: the 个体工商户 placeholder must be accepted explicitly, never by the checksum.
    outcome = check_uscc(pd.Series(["00000000000000000X"], dtype="str"))
    assert not outcome.checksum_ok[0]


@pytest.mark.parametrize("number", ["11010519491231002X", "440524188001010014"])
def test_valid_resident_id(number: str) -> None:
    outcome = check_resident_id(pd.Series([number], dtype="str"), TODAY)
    assert outcome.checksum_ok[0] and outcome.birth_ok[0]


def test_resident_id_bad_check_and_bad_birth_date() -> None:
    outcome = check_resident_id(
        pd.Series(["110105194912310021", "110105194902300021", "11010519491231"], dtype="str"),
        TODAY,
    )
    assert list(outcome.format_ok) == [True, True, False]
    assert not outcome.checksum_ok[0] and outcome.expected[0] == "X"
    assert not outcome.birth_ok[1]  # 30 February


def test_resident_id_birth_after_today_is_not_real() -> None:
    outcome = check_resident_id(pd.Series(["110105203001010010"], dtype="str"), TODAY)
    assert not outcome.birth_ok[0]


@pytest.mark.parametrize(
    ("raw", "ok"),
    [
        ("201710601862.3", True),
        ("CN201710601862.3", True),
        ("2017106018623", True),
        ("201710601862.4", False),
    ],
)
def test_patent_application_numbers(raw: str, ok: bool) -> None:
    outcome, canonical = check_patent_appno(pd.Series([raw], dtype="str"))
    assert outcome.format_ok[0]
    assert bool(outcome.checksum_ok[0]) is ok
    assert canonical[0] == f"201710601862.{raw[-1]}"


def test_repeated_identifiers_are_checked_once_with_the_same_outcome() -> None:
    usccs = ["91110108551385082Q", "91110108551385082A", "9111010855138508", ""]
    rows = pd.Series((usccs * 300)[:1200], dtype="str")
    whole, single = check_uscc(rows), check_uscc(pd.Series(usccs, dtype="str"))
    for i in range(len(usccs)):
        assert whole.format_ok.iloc[i] == single.format_ok.iloc[i]
        assert whole.checksum_ok.iloc[i] == single.checksum_ok.iloc[i]
        assert whole.expected.iloc[i] == single.expected.iloc[i]
    ids = ["11010519491231002X", "110105194912310021", "11010519491331002X", "abc"]
    latest = pd.Timestamp("2026-11-21")
    rows = pd.Series((ids * 300)[:1200], dtype="str")
    whole_id, single_id = check_resident_id(rows, latest), check_resident_id(pd.Series(ids), latest)
    assert list(whole_id.birth_ok[:4]) == list(single_id.birth_ok)
    assert list(whole_id.checksum_ok[:4]) == list(single_id.checksum_ok)
    assert list(whole_id.checksum_ok.index) == list(rows.index)
