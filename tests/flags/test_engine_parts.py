"""The column-wise building blocks of flag evaluation, each against the plain per-record (or
per-group) Python it replaces: same answer, NA and non-ASCII text included. No store needed."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd

from etl.checks.rules import evaluate as holds
from etl.flags.engine import (
    _distinct_rows,
    _rule_masks,
    _sort_order,
    _trigger_keys,
    _with_subject,
    join_runs,
    record_keys,
)
from etl.flags.policy import load_policy
from etl.flags.registry import content_hashes
from etl.text import STR


def _text(values: list[str | None]) -> pd.Series:
    return pd.Series(values, dtype=STR)


def test_rule_masks_equal_each_condition_evaluated_on_every_record() -> None:
    """Conditions evaluated once per distinct combination of their fields, spread back to the
    records, give the per-record answer: repeated values, NA and several rules sharing fields."""
    policy = load_policy()
    penalty = [r for r in policy.rules if r.dataset == "penalty"]
    patent = [r for r in policy.rules if r.dataset == "abnormal_patent"]
    violations = ["侵犯注册商标专用权", "虚假宣传", None, "假冒专利;商业诋毁", ""]
    categories = ["罚款;吊销许可证件", "警告", None, "警告;罚款", "责令停产停业", "罚款"]
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "violation_type": _text([violations[i] for i in rng.integers(0, 5, 400)]),
            "penalty_categories": _text([categories[i] for i in rng.integers(0, 6, 400)]),
        }
    ).set_axis(pd.RangeIndex(1000, 1400))  # a chunk's index need not start at 0
    statuses = ["逾期未处理", "申诉驳回", "申诉成立", "已撤回", None]
    patents = pd.DataFrame(
        {
            "handling_status": _text([statuses[i] for i in rng.integers(0, 5, 300)]),
            # nearly every value distinct: the combinations are as many as the records
            "agency_name": _text([None if i % 7 == 0 else f"代理机构{i}" for i in range(300)]),
        }
    )
    for rules, rows in ((penalty, frame), (patent, patents)):
        masks = _rule_masks(rules, rows)
        typed = {name: rows[name] for name in rows.columns}
        for rule in rules:
            expected = holds(rule.where, typed, rows.index).to_numpy(dtype=bool)
            np.testing.assert_array_equal(masks[rule.id], expected, err_msg=rule.id)
        assert any(m.any() for m in masks.values()) and not all(m.all() for m in masks.values())


def test_distinct_rows_in_order_of_first_appearance_with_na_as_a_value() -> None:
    frame = pd.DataFrame(
        {
            "a": _text(["x", "y", "x", None, "x", None]),
            "b": pd.to_datetime(
                ["2024-01-01", "2024-01-01", "2024-01-01", None, "2024-01-02", None]
            ).astype("datetime64[s]"),
        }
    )
    codes, values = _distinct_rows(frame, ["a", "b"])
    assert codes.tolist() == [0, 1, 0, 2, 3, 2]
    expected = frame.iloc[[0, 1, 3, 4]].reset_index(drop=True)
    pd.testing.assert_frame_equal(values, expected)
    empty_codes, empty_values = _distinct_rows(frame.iloc[:0], ["a"])
    assert len(empty_codes) == 0 and empty_values.empty


def test_record_keys_are_json_arrays_of_strings() -> None:
    frame = pd.DataFrame(
        {
            "authority_uscc": _text(["11310106MB2F00001B", "A", None]),
            "decision_no": _text(["沪静市监处〔2024〕61号", 'a"b\\c\nd\re\tf', "x"]),
        }
    ).set_axis([5, 9, 2])
    keys = record_keys(frame, ["authority_uscc", "decision_no"])
    assert keys.dtype == STR and keys.index.tolist() == [5, 9, 2]
    for key, row in zip(keys, frame.itertuples(index=False), strict=True):
        wanted = ["" if pd.isna(v) else v for v in row]
        assert key == json.dumps(wanted, ensure_ascii=False, separators=(",", ":"))
        assert json.loads(key) == wanted


def test_subject_is_the_first_identifier_naming_someone() -> None:
    """Trimmed (ideographic space too); empty and the 个体工商户 placeholder name nobody; a
    record with no identifier at all has no subject."""
    subject = load_policy().subjects["penalty_subject"]
    rows = pd.DataFrame(
        {
            "subject_uscc": _text([" 91310000MA1FL0000J ", "00000000000000000X", None, "", None]),
            "id_number": _text(
                ["110105194912310020", None, "\u3000110105194912310020", None, None]
            ),
            "business_reg_no": _text([None, "310106000000001", "x", None, None]),
            "subject_name": _text(["甲公司", "乙商店", "张三", "丙公司", None]),
            "subject_type": _text(
                ["法人及非法人组织", "个体工商户", "自然人", "法人及非法人组织", None]
            ),
        }
    ).set_axis([3, 1, 4, 7, 0])
    out = _with_subject(rows, subject)
    assert out.index.tolist() == [3, 1, 4, 7, 0]
    assert out["subject_id"].tolist()[:4] == [
        "91310000MA1FL0000J",
        "310106000000001",
        "110105194912310020",
        "丙公司",
    ]
    assert out["subject_id_kind"].tolist()[:4] == [
        "统一社会信用代码",
        "工商注册号",
        "证件号码",
        "名称",
    ]
    assert out["subject_key"].tolist()[:4] == [
        "统一社会信用代码:91310000MA1FL0000J",
        "工商注册号:310106000000001",
        "证件号码:110105194912310020",
        "名称:丙公司",
    ]
    assert out.iloc[4][["subject_id", "subject_id_kind", "subject_key"]].isna().all()
    assert all(out[c].dtype == STR for c in out.columns)


def test_sort_order_is_pandas_stable_sort_by_subject_date_and_key() -> None:
    rng = np.random.default_rng(3)
    n = 2_000
    rows = pd.DataFrame(
        {
            "subject_key": _text([f"名称:主体{i}" for i in rng.integers(0, 40, n)]),
            "decision_date": (
                pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 30, n), unit="D")
            ).astype("datetime64[s]"),
            "record_key": _text([f'["A","沪{i}号"]' for i in rng.integers(0, 50, n)]),  # ties
            "row": np.arange(n),
        }
    ).set_axis(rng.permutation(n))
    expected = rows.sort_values(
        ["subject_key", "decision_date", "record_key"], kind="stable", ignore_index=True
    )
    got = rows.take(_sort_order(rows, "decision_date")).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected)


def test_trigger_keys_are_each_episodes_first_window_keys_sorted_and_joined() -> None:
    evidence = pd.DataFrame(
        {
            "episode": [0, 0, 0, 1, 1, 2, 2, 2],
            "record_key": _text(['["b"]', '["a"]', '["c"]', '["z"]', '["é"]', "乙", "甲", "a"]),
            "trigger": [True, True, False, True, True, False, True, True],
        }
    )
    expected = (
        evidence.loc[evidence["trigger"]]
        .groupby("episode")["record_key"]
        .agg(lambda keys: "\x1e".join(sorted(keys)))
    )
    got = _trigger_keys(evidence)
    assert got.to_dict() == expected.to_dict()


def test_join_runs() -> None:
    values = _text(["a", "b", "c", "d", "e"])
    assert join_runs(values.array.__arrow_array__(), np.array([0, 2, 3]), ",") == [
        "a,b",
        "c",
        "d,e",
    ]
    assert join_runs(values.array.__arrow_array__()[:0], np.array([], dtype=np.int64), ",") == []


def test_content_hashes_hash_the_documented_text() -> None:
    """Evidence not grouped by flag (lines kept in their order within a flag), NA in the head
    and a flag without evidence, against the text built row by row."""
    flags = pd.DataFrame(
        {
            "id": _text(["R-2", "R-1", "R-3"]),
            "subject_name": _text(["甲公司", None, "丙"]),
            "subject_type": _text(["法人及非法人组织", "自然人", None]),
            "listing_start": pd.to_datetime(["2026-01-02", "2025-03-04", "2026-05-06"]).astype(
                "datetime64[s]"
            ),
            "listing_end": pd.to_datetime(["2029-01-02", "2026-03-04", "2029-05-06"]).astype(
                "datetime64[s]"
            ),
            "state": _text(["candidate", "expired", "candidate"]),
            "evidence_count": np.array([2, 1, 0], dtype=np.int64),
        }
    ).set_axis([10, 11, 12])
    evidence = pd.DataFrame(
        {
            "flag_id": _text(["R-2", "R-1", "R-2"]),
            "record_key": _text(['["k2"]', '["k1"]', '["k0"]']),
            "evidence_date": pd.to_datetime(["2026-01-02", "2025-03-04", "2025-12-01"]).astype(
                "datetime64[s]"
            ),
            "trigger": [True, True, False],
        }
    )
    expected = {
        10: '甲公司|法人及非法人组织|2026-01-02|2029-01-02|candidate|2\x1d["k2"]|2026-01-02|T'
        '\x1e["k0"]|2025-12-01|E',
        11: '|自然人|2025-03-04|2026-03-04|expired|1\x1d["k1"]|2025-03-04|T',
        12: "丙||2026-05-06|2029-05-06|candidate|0\x1d",
    }
    got = content_hashes(flags, evidence)
    assert got.dtype == STR
    assert got.to_dict() == {k: hashlib.sha256(v.encode()).hexdigest() for k, v in expected.items()}
    assert content_hashes(flags.iloc[:0], evidence.iloc[:0]).empty
