"""Masking of public extracts and the resident-ID leak detector (总局令第45号 第六条)."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from etl.checks.identifiers import id_check_char
from etl.publish.masking import find_personal_ids, mask_frame, mask_values
from etl.publish.policy import PublicityProfile, load_publicity_policy

TODAY = date(2026, 11, 21)
USCC = "91110108551385082Q"  # SPEC.md §3


def resident_id(body: str) -> str:
    """A valid GB 11643 number: the 17-digit body and its computed check character."""
    return body + id_check_char(pd.Series([body], dtype="str"))[0]


PERSON_ID = resident_id("31010619850315123")
TRADER_ID = resident_id("31010419700101002")


def str_series(values: list[str | None], index: list[int] | None = None) -> pd.Series:
    return pd.Series(values, dtype="str", index=index)


@pytest.fixture
def profile() -> PublicityProfile:
    return load_publicity_policy()


@pytest.fixture
def penalties() -> pd.DataFrame:
    index = [10, 11, 12, 13]
    return pd.DataFrame(
        {
            "subject_name": str_series(["张三", "李四小吃店", "某某有限公司", "王五"], index),
            "subject_type": str_series(
                ["自然人", "个体工商户", "法人及非法人组织", "自然人"], index
            ),
            "id_type": str_series(["身份证", None, None, None], index),
            "id_number": str_series([PERSON_ID, TRADER_ID, "ABC123456789", None], index),
            "legal_rep": str_series([None, None, "赵六", None], index),
            "legal_rep_id_number": str_series(
                [None, None, resident_id("11010519491231002"), None], index
            ),
            "subject_uscc": str_series([None, "92310104MA1K000000", USCC, None], index),
        }
    )


def test_the_built_ids_are_valid() -> None:
    # By hand: Σ digit·weight = 217, 217 mod 11 = 8, "10X98765432"[8] = "4".
    assert PERSON_ID == "310106198503151234"
    assert find_personal_ids(str_series([PERSON_ID, TRADER_ID]), TODAY).tolist() == [True, True]


def test_natural_persons_and_traders_are_masked_organisations_untouched(
    penalties: pd.DataFrame, profile: PublicityProfile
) -> None:
    out = mask_frame(penalties, "penalty", profile)
    assert out["id_number"].tolist()[:3] == [
        PERSON_ID[:3] + "*" * 11 + PERSON_ID[-4:],
        TRADER_ID[:3] + "*" * 11 + TRADER_ID[-4:],
        "ABC123456789",  # 法人 row: as sent
    ]
    assert pd.isna(out["id_number"].iloc[3])  # NA stays NA
    assert out.index.tolist() == [10, 11, 12, 13]
    assert out["subject_uscc"].equals(penalties["subject_uscc"])
    assert penalties["id_number"].iloc[0] == PERSON_ID  # the input is not modified


def test_legal_rep_id_number_is_never_published(
    penalties: pd.DataFrame, profile: PublicityProfile
) -> None:
    out = mask_frame(penalties, "penalty", profile)
    assert "legal_rep_id_number" not in out
    assert list(out.columns) == [c for c in penalties.columns if c != "legal_rep_id_number"]
    assert "legal_rep_id_number" in penalties


def test_masked_extract_holds_no_resident_id(
    penalties: pd.DataFrame, profile: PublicityProfile
) -> None:
    assert find_personal_ids(penalties["legal_rep_id_number"], TODAY).any()
    out = mask_frame(penalties, "penalty", profile)
    for column in out.columns:
        assert not find_personal_ids(out[column], TODAY).any(), column


def test_missing_subject_type_is_masked(profile: PublicityProfile) -> None:
    frame = pd.DataFrame({"subject_type": str_series([None]), "id_number": str_series([PERSON_ID])})
    assert mask_frame(frame, "penalty", profile)["id_number"].iloc[0] != PERSON_ID


def test_abnormal_patent_applicant_ids_are_masked_on_every_row(profile: PublicityProfile) -> None:
    frame = pd.DataFrame(
        {
            "applicant_type": str_series(["自然人", "法人及非法人组织"]),
            "applicant_id_number": str_series([PERSON_ID, PERSON_ID]),
        }
    )
    out = mask_frame(frame, "abnormal_patent", profile)
    assert out["applicant_id_number"].str.contains(r"\*{11}").tolist() == [True, True]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("11010519491231002X", "110***********002X"),
        ("110105491231002", "110********1002"),  # 15-character first-generation ID
        ("12345678901", "123****8901"),  # hides exactly min_masked = 4
        ("1234567890", "**********"),  # would hide 3: all starred
        ("E12345678", "*********"),  # passport-length value: all starred
        ("ab", "**"),
        ("", ""),
    ],
)
def test_mask_values_keeps_ends_and_length(value: str, expected: str) -> None:
    masking = load_publicity_policy().masking
    assert mask_values(str_series([value]), masking).tolist() == [expected]


def test_masking_is_configurable() -> None:
    masking = load_publicity_policy().masking.model_copy(
        update={"keep_first": 1, "keep_last": 0, "fill": "#", "min_masked": 1}
    )
    out = mask_values(str_series(["11010519491231002X", "12", None]), masking)
    assert out.iloc[:2].tolist() == ["1" + "#" * 17, "1#"] and pd.isna(out.iloc[2])


def test_unconfigured_dataset_is_refused(profile: PublicityProfile) -> None:
    with pytest.raises(ValueError, match="serious_dishonesty"):
        mask_frame(
            pd.DataFrame({"id_number": str_series([PERSON_ID])}), "serious_dishonesty", profile
        )


def test_masking_without_the_subject_column_is_refused(profile: PublicityProfile) -> None:
    with pytest.raises(ValueError, match="subject_type"):
        mask_frame(pd.DataFrame({"id_number": str_series([PERSON_ID])}), "penalty", profile)


# --- find_personal_ids --------------------------------------------------------------------------


def test_find_personal_ids_true_and_false_cases() -> None:
    wrong_check = PERSON_ID[:17] + ("0" if PERSON_ID[17] != "0" else "1")
    values = str_series(
        [
            PERSON_ID,
            USCC,
            wrong_check,
            f"当事人张三（身份证号{PERSON_ID}）",
            "12" + PERSON_ID + "34",  # glued to other digits
            PERSON_ID.replace("1", "１"),  # full-width digits
            PERSON_ID[:3] + "*" * 11 + PERSON_ID[-4:],  # masked
            None,
        ],
        index=list(range(100, 108)),
    )
    found = find_personal_ids(values, TODAY)
    assert found.index.tolist() == list(range(100, 108))
    assert found.tolist() == [True, False, False, True, True, True, False, False]


def test_find_personal_ids_checks_the_birth_date() -> None:
    impossible = resident_id("11010519490230002")  # 30 February
    future = resident_id("11010520991231002")
    lower_x = "11010519491231002x"  # SPEC.md §3 example, lower-case check character
    found = find_personal_ids(str_series([impossible, future, lower_x]), TODAY)
    assert found.tolist() == [False, False, True]


def test_find_personal_ids_on_non_text_columns() -> None:
    assert find_personal_ids(pd.Series([1.5, None, 3]), TODAY).tolist() == [False] * 3
    assert find_personal_ids(pd.Series([], dtype="str"), TODAY).empty
