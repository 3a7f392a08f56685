"""Each rule against hand-worked fixtures, on SQLite and PostgreSQL.

Expected flags are worked out by hand in each test's docstring; thresholds are the policy's
defaults (schemas/policy/serious_dishonesty.v1.yaml).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy.engine import Engine

from etl.errors import ReviewError
from etl.flags import evaluate_flags
from etl.flags.engine import Evaluation, evaluate, flag_id
from etl.flags.policy import load_policy
from etl.flags.registry import decide, evidence_of, list_flags
from etl.run import RunSummary
from tests.fixtures.build import JINGAN, org_row, patent_row, person_row
from tests.store_fixtures import at

AS_OF = date(2026, 11, 21)
ORG = "统一社会信用代码:91110108551385082Q"
PERSON_ID = "11010519491231002X"
HEAVY = {
    "处罚类别": "罚款;吊销许可证件",
    "处罚内容": "罚款5万元，吊销营业执照",
    "暂扣或吊销证照名称及编号": "营业执照 310106000000001",
}


def _no(i: int) -> str:
    return f"沪静市监案处字〔2026〕第{i:04d}号"


def _evaluate(engine: Engine, as_of: date = AS_OF) -> Evaluation:
    with engine.connect() as conn:
        return evaluate(conn, as_of, load_policy())


def _of(result: Evaluation, rule: str) -> pd.DataFrame:
    return result.flags.loc[result.flags["rule_id"] == rule].reset_index(drop=True)


def _load(drop: Callable[..., Path], run: Callable[..., RunSummary], rows: list[dict[str, str]],
          name: str = "drop.csv", dataset: str = "penalty", office: str = "jingan-amr",
          as_of: date = AS_OF) -> RunSummary:  # fmt: skip
    drop(rows, name=name, dataset=dataset, office=office)
    summary = run(as_of)
    problems = [(f.file, f.status, f.code, f.message, f.rejected) for f in summary.files]
    assert not summary.failed and all(f.rejected == 0 for f in summary.files), problems
    return summary


def _key(no: str) -> str:
    return f'["{JINGAN[1]}","{no}"]'


# --- SD-IP-HEAVY -----------------------------------------------------------------------------


def test_heavy_penalty_for_an_ip_violation_is_one_flag_per_penalty(engine, drop, run) -> None:
    """Two IP penalties with 吊销 → two flags; an IP penalty with only a fine and a non-IP
    penalty with 吊销 → none."""
    _load(drop, run, [
        org_row(_no(1), 处罚决定日期="2026-03-02", **HEAVY),
        org_row(_no(2), 处罚决定日期="2026-04-02", **HEAVY),
        org_row(_no(3), 处罚决定日期="2026-05-02"),
        org_row(_no(4), 违法行为类型="虚假宣传", 统一社会信用代码="91310106MA1FL0000J", **HEAVY),
    ])  # fmt: skip
    heavy = _of(_evaluate(engine), "SD-IP-HEAVY")
    assert len(heavy) == 2
    first = heavy.sort_values("listing_start").iloc[0]
    assert first["id"] == flag_id("SD-IP-HEAVY", _key(_no(1)))
    assert first["listing_start"] == pd.Timestamp("2026-03-02")
    assert first["listing_end"] == pd.Timestamp("2029-03-02")
    assert first["severity"] == "serious" and "第九条" in first["basis"]
    assert first["state"] == "candidate"


def test_a_heavy_flag_past_its_listing_is_expired(engine, drop, run, monkeypatch) -> None:
    """Decided 2023-05-10, received 2023-06-01: listed to 2026-05-10, so a candidate as of
    2026-05-10 and expired from 2026-05-11."""
    at(monkeypatch, "2023-06-01T10:00:00")
    _load(drop, run, [org_row(_no(1), 处罚决定日期="2023-05-10", **HEAVY)], as_of=date(2023, 6, 1))
    states = {day: _of(_evaluate(engine, day), "SD-IP-HEAVY")["state"].tolist()
              for day in (date(2026, 5, 10), date(2026, 5, 11), AS_OF)}  # fmt: skip
    assert states == {
        date(2026, 5, 10): ["candidate"],
        date(2026, 5, 11): ["expired"],
        AS_OF: ["expired"],
    }


# --- SD-IP-REPEAT ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("third", "flagged"), [("2025-12-31", True), ("2026-01-01", False)], ids=["day730", "day731"]
)
def test_repeat_window_edges(engine, drop, run, third: str, flagged: bool) -> None:
    """Three IP penalties: 2024-01-01, 2025-01-01 and `third`. 2024-01-01 → 2025-12-31 is 730
    days (inside the 730-day window); → 2026-01-01 is 731 (outside; the later pair alone is 2)."""
    _load(drop, run, [
        org_row(_no(1), 处罚决定日期="2024-01-01"),
        org_row(_no(2), 处罚决定日期="2025-01-01"),
        org_row(_no(3), 处罚决定日期=third),
    ])  # fmt: skip
    repeat = _of(_evaluate(engine), "SD-IP-REPEAT")
    assert len(repeat) == (1 if flagged else 0)
    if flagged:
        keys = "\x1e".join(sorted(_key(_no(i)) for i in (1, 2, 3)))
        assert repeat.loc[0, "id"] == flag_id("SD-IP-REPEAT", keys)
        assert repeat.loc[0, "evidence_count"] == 3
        assert repeat.loc[0, "listing_start"] == pd.Timestamp(third)


def test_repeat_needs_three_and_ignores_warning_only(engine, drop, run) -> None:
    """A natural person (identified by ID number) with a warning-only IP penalty and two fined
    ones has two counting penalties: no flag. A third fined one makes it three: one flag."""
    fined = {"处罚类别": "罚款", "处罚内容": "罚款500元", "罚款金额（万元）": "0.05"}
    rows = [
        person_row(_no(1), 处罚决定日期="2026-01-05"),
        person_row(_no(2), 处罚决定日期="2026-02-05", **fined),
        person_row(_no(3), 处罚决定日期="2026-03-05", **fined),
    ]
    _load(drop, run, rows)
    assert _of(_evaluate(engine), "SD-IP-REPEAT").empty
    _load(drop, run, [person_row(_no(4), 处罚决定日期="2026-04-05", **fined)], name="more.csv")
    repeat = _of(_evaluate(engine), "SD-IP-REPEAT")
    assert len(repeat) == 1
    assert repeat.loc[0, "subject_id_kind"] == "证件号码"
    assert repeat.loc[0, "subject_id"] == PERSON_ID
    assert repeat.loc[0, "evidence_count"] == 3
    evidence = _evaluate(engine).evidence
    keys = evidence.loc[evidence["flag_id"] == repeat.loc[0, "id"], "record_key"].tolist()
    assert keys == [_key(_no(i)) for i in (2, 3, 4)]


def test_later_offences_extend_the_flag_without_changing_its_id(engine, drop, run) -> None:
    """Three penalties fix the id; a fourth within the window joins the evidence, same id,
    listing moved to the fourth's date; the registry updates the flag in place. Past its
    listing the same flag turns expired."""
    _load(drop, run, [org_row(_no(i), 处罚决定日期=f"2026-0{i}-01") for i in (1, 2, 3)])
    before = _of(_evaluate(engine), "SD-IP-REPEAT")
    fourth = [org_row(_no(4), 处罚决定日期="2026-09-01")]
    counts = _load(drop, run, fourth, name="more.csv").flags  # the run evaluates the rules
    after = _of(_evaluate(engine), "SD-IP-REPEAT")
    assert after["id"].tolist() == before["id"].tolist()
    assert after.loc[0, "evidence_count"] == 4
    assert after.loc[0, "listing_start"] == pd.Timestamp("2026-09-01")

    assert counts is not None
    assert (counts.new, counts.changed, counts.withdrawn) == (0, 1, 0)
    assert evaluate_flags(engine, AS_OF).changed == 0  # a rerun changes nothing
    with engine.connect() as conn:
        (stored,) = list_flags(conn)
        assert stored["evidence_count"] == 4 and stored["listing_end"] == date(2029, 9, 1)
        assert len(evidence_of(conn, stored["id"])) == 4
    expired = evaluate_flags(engine, date(2029, 9, 2))
    assert expired.changed == 1 and expired.by_state == {"expired": 1}


# --- abnormal patents --------------------------------------------------------------------------

APPLICANT = "统一社会信用代码:91110108551385082Q"


def _patents(n: int, status: str, start: int = 1, **overrides: str) -> list[dict[str, str]]:
    return [patent_row(start + i, status=status, **overrides) for i in range(n)]


def test_patent_mass_at_and_below_the_threshold(engine, drop, run) -> None:
    """Five applications 逾期未处理 or 申诉驳回 → SD-PATENT-MASS; withdrawn or upheld ones never
    count. The general rule flags the same applicant once."""
    rows = (
        _patents(3, "逾期未处理")
        + _patents(1, "申诉驳回", start=10)
        + _patents(2, "已撤回", start=20)
        + _patents(1, "申诉成立", start=30)
    )
    _load(drop, run, rows, dataset="abnormal_patent", office="sh-ipa")
    result = _evaluate(engine)
    assert _of(result, "SD-PATENT-MASS").empty  # 4 uncorrected
    general = _of(result, "GD-PATENT-UNCORRECTED")
    assert len(general) == 1 and general.loc[0, "evidence_count"] == 4
    assert general.loc[0, "severity"] == "general"
    assert general.loc[0, "listing_end"] == pd.Timestamp("2027-10-10")  # 1 year from 10-10

    _load(drop, run, _patents(1, "申诉驳回", start=40), "more.csv", "abnormal_patent", "sh-ipa")
    mass = _of(_evaluate(engine), "SD-PATENT-MASS")
    assert len(mass) == 1 and mass.loc[0, "subject_key"] == APPLICANT
    assert mass.loc[0, "evidence_count"] == 5


def test_overdue_is_derived_as_of_the_date(engine, drop, run) -> None:
    """A 待处理 notice of 2026-08-01 is overdue after 2026-10-01 (2 months): the general flag
    appears as of 2026-11-21 but not as of 2026-09-30."""
    rows = [patent_row(1, status="待处理", 通知日期="2026-08-01")]
    _load(drop, run, rows, dataset="abnormal_patent", office="sh-ipa")
    assert len(_of(_evaluate(engine), "GD-PATENT-UNCORRECTED")) == 1
    assert _of(_evaluate(engine, date(2026, 9, 30)), "GD-PATENT-UNCORRECTED").empty


@pytest.mark.parametrize(("count", "flagged"), [(10, True), (9, False)])
def test_agency_threshold(engine, drop, run, count: int, flagged: bool) -> None:
    """An agency (by code) on 10 abnormal applications in a year → SD-AGENCY; 9 → none.
    Applications of several applicants count, an upheld appeal does not."""
    rows = [
        patent_row(i + 1, status="待处理", 申请人名称=f"申请人{i}", 申请人统一社会信用代码="")
        | {"申请人类别": "自然人", "申请人证件号码": PERSON_ID}
        for i in range(count)
    ] + [patent_row(99, status="申诉成立")]
    _load(drop, run, rows, dataset="abnormal_patent", office="sh-ipa")
    agency = _of(_evaluate(engine), "SD-AGENCY")
    assert len(agency) == (1 if flagged else 0)
    if flagged:
        assert agency.loc[0, "subject_key"] == "专利代理机构代码:31200"
        assert agency.loc[0, "subject_type"] == "专利代理机构"


# --- registry: withdrawal, decisions, stability ------------------------------------------------


def test_revoked_evidence_withdraws_the_flag(engine, drop, run) -> None:
    """Three IP penalties flag the subject; revoking one leaves two: the flag is withdrawn and
    no other flag takes its place."""
    rows = [org_row(_no(i), 处罚决定日期=f"2026-0{i}-01") for i in (1, 2, 3)]
    counts = _load(drop, run, rows).flags
    assert counts is not None and counts.new == 1 and counts.by_state == {"candidate": 1}
    revoked = org_row(_no(2), 处罚决定日期="2026-02-01", 备注="撤销：行政复议撤销原决定")
    counts = _load(drop, run, [revoked], name="revoke.csv").flags
    assert counts is not None and counts.withdrawn == 1 and counts.flags == 0
    assert evaluate_flags(engine, AS_OF).withdrawn == 0  # already withdrawn
    with engine.connect() as conn:
        (only,) = list_flags(conn)
        assert only["state"] == "withdrawn" and only["withdrawn_on"] == AS_OF
        assert len(evidence_of(conn, only["id"])) == 3  # kept for the record


def test_confirmed_flag_survives_reruns_and_cannot_be_decided_twice(engine, drop, run) -> None:
    _load(drop, run, [org_row(_no(1), 处罚决定日期="2026-03-02", **HEAVY)])
    evaluate_flags(engine, AS_OF)
    with engine.connect() as conn:
        (flag,) = list_flags(conn)
    with engine.begin() as conn:
        decide(conn, flag["id"][:14], "confirmed", by="李审核", decision_no="沪市监信〔2026〕1号")
    first = evaluate_flags(engine, AS_OF)
    later = evaluate_flags(engine, date(2026, 12, 1))
    assert first.changed == 0 and later.changed == 0 and later.new == 0
    with engine.connect() as conn:
        (after,) = list_flags(conn)
    assert after["id"] == flag["id"]
    assert after["state"] == "confirmed" and after["decision"] == "confirmed"
    with engine.begin() as conn, pytest.raises(ReviewError) as err:
        decide(conn, flag["id"], "rejected", by="王复核", reason="重复")
    assert err.value.code == "E_FLAG_DECIDED" and "李审核" in err.value.message


def test_review_errors_name_the_problem(engine, drop, run) -> None:
    _load(drop, run, [org_row(_no(1), 处罚决定日期="2023-05-10", **HEAVY),
                      org_row(_no(2), 处罚决定日期="2026-03-02", **HEAVY)])  # fmt: skip
    evaluate_flags(engine, AS_OF)
    with engine.connect() as conn:
        expired = [f["id"] for f in list_flags(conn, states=["expired"])]
    with engine.begin() as conn:
        with pytest.raises(ReviewError) as err:
            decide(conn, "SD-NOPE", "confirmed", by="李审核", decision_no="1")
        assert err.value.code == "E_FLAG_UNKNOWN"
        with pytest.raises(ReviewError) as err:
            decide(conn, "SD-IP-HEAVY-", "confirmed", by="李审核", decision_no="1")
        assert err.value.code == "E_FLAG_AMBIGUOUS"
        with pytest.raises(ReviewError) as err:
            decide(conn, expired[0], "confirmed", by="李审核", decision_no="1")
        assert err.value.code == "E_FLAG_STATE" and "已到期" in err.value.message


def test_ids_are_stable_across_reruns_and_backfills_leave_the_registry_alone(
    engine, drop, run, monkeypatch
) -> None:
    """The same store and date give the same flags; an earlier date (before the third penalty
    arrived) is evaluated but does not move the registry."""
    at(monkeypatch, "2026-02-05T09:00:00")
    early = [org_row(_no(i), 处罚决定日期=f"2026-0{i}-01", **HEAVY) for i in (1, 2)]
    _load(drop, run, early, as_of=date(2026, 2, 5))
    at(monkeypatch, "2026-03-05T09:00:00")
    late = [org_row(_no(3), 处罚决定日期="2026-03-01", **HEAVY)]
    _load(drop, run, late, name="late.csv", as_of=date(2026, 3, 5))
    one, two = _evaluate(engine), _evaluate(engine)
    pd.testing.assert_frame_equal(one.flags, two.flags)
    pd.testing.assert_frame_equal(one.evidence, two.evidence)
    assert len(one.flags) == 4  # three heavy + one repeat
    evaluate_flags(engine, AS_OF)
    backfill = evaluate_flags(engine, date(2026, 2, 15))
    assert not backfill.registry_updated and backfill.flags == 2
    with engine.connect() as conn:
        assert len(list_flags(conn, states=["candidate"])) == 4


def test_the_sole_trader_placeholder_uscc_names_nobody(engine, drop, run) -> None:
    """Three shops with the placeholder USCC and their own 工商注册号: three subjects, so no
    repeat flag (the placeholder would have merged them)."""
    rows = [
        org_row(_no(i), 处罚决定日期=f"2026-0{i}-01", 行政相对人类别="个体工商户",
                统一社会信用代码="00000000000000000X", 工商注册号=f"31010660000000{i}",
                行政相对人名称=f"静安区小店{i}")
        for i in (3, 4, 5)
    ]  # fmt: skip
    _load(drop, run, rows)
    assert _of(_evaluate(engine), "SD-IP-REPEAT").empty
    heavy = [{**r, **HEAVY} for r in rows[:1]]
    _load(drop, run, heavy, name="heavy.csv")
    (flag,) = _of(_evaluate(engine), "SD-IP-HEAVY").to_dict("records")
    assert flag["subject_key"] == "工商注册号:310106600000003"


def test_a_late_earlier_record_supersedes_the_flag_and_says_so(engine, drop, run) -> None:
    """Penalties of 03-01, 04-01, 05-01 flag the subject; a late one dated 02-01 moves the first
    window: the old flag is withdrawn as superseded, naming its successor."""
    _load(drop, run, [org_row(_no(i), 处罚决定日期=f"2026-0{i}-01") for i in (3, 4, 5)])
    with engine.connect() as conn:
        (old,) = list_flags(conn)
    _load(drop, run, [org_row(_no(2), 处罚决定日期="2026-02-01")], name="late.csv")
    with engine.connect() as conn:
        states = {f["id"]: f for f in list_flags(conn)}
    assert states[old["id"]]["state"] == "withdrawn"
    (new_id,) = [i for i in states if i != old["id"]]
    assert states[new_id]["state"] == "candidate" and states[new_id]["evidence_count"] == 4
    assert (
        new_id in states[old["id"]]["state_reason"]
        and "重新审核" in states[old["id"]]["state_reason"]
    )
