"""Abnormal-patent handling through the store: status versions, transitions, derived overdue."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.run import RunSummary
from etl.store.query import state_as_of
from etl.store.schema import record_table, rejection
from tests.fixtures.build import appno, patent_row
from tests.store.test_store import at
from tests.store_fixtures import only

Run = Callable[..., RunSummary]
Put = Callable[..., Path]


def put(drop: Put, rows: list[dict[str, str]], name: str) -> Path:
    return drop(rows, name=name, office="sh-ipa", dataset="abnormal_patent")


def state(engine: Engine, day: date) -> pd.DataFrame:
    with engine.connect() as conn:
        frames = list(state_as_of(conn, "abnormal_patent", day))
    return pd.concat(frames, ignore_index=True).set_index("application_no")


def test_a_status_change_is_a_new_version(engine: Engine, drop: Put, run: Run) -> None:
    put(drop, [patent_row(1), patent_row(2)], "notice.csv")
    assert only(run()).inserted == 2
    put(drop, [patent_row(1, status="已撤回")], "withdrawn.csv")
    outcome = only(run())
    assert (outcome.corrected, outcome.rejected) == (1, 0)
    table = record_table("abnormal_patent")
    with engine.connect() as conn:
        versions = conn.execute(
            sa.select(table.c.version, table.c.handling_status)
            .where(table.c.application_no == appno(2026, 1, 1))
            .order_by(table.c.version)
        ).all()
    assert [tuple(v) for v in versions] == [(1, "待处理"), (2, "已撤回")]


def test_a_transition_that_makes_no_sense_is_rejected(engine: Engine, drop: Put, run: Run) -> None:
    put(drop, [patent_row(1, status="已撤回"), patent_row(2, status="申诉中")], "first.csv")
    run()
    back = [patent_row(1), patent_row(2, status="申诉驳回"), patent_row(3)]
    put(drop, back, "second.csv")
    outcome = only(run())
    assert (outcome.rows_read, outcome.accepted, outcome.rejected) == (3, 2, 1)
    assert (outcome.corrected, outcome.inserted) == (1, 1)
    receipt = json.loads(Path(outcome.receipt or "").read_text("utf-8"))
    assert receipt["rejected"] == 1
    [problem] = receipt["rejections"]
    assert problem["row"] == 2 and problem["code"] == "E_STATUS_TRANSITION"
    assert "不能从「已撤回」改为「待处理」" in problem["message"]
    with engine.connect() as conn:
        stored = (
            conn.execute(
                sa.select(rejection.c.code).where(
                    rejection.c.source_file_id == outcome.source_file_id
                )
            )
            .scalars()
            .all()
        )
    assert stored == ["E_STATUS_TRANSITION"]
    current = state(engine, date(2026, 11, 21))
    assert current.loc[appno(2026, 1, 1), "handling_status"] == "已撤回"  # unchanged
    assert current.loc[appno(2026, 1, 2), "handling_status"] == "申诉驳回"


def test_overdue_is_derived_in_the_as_of_state(
    engine: Engine, drop: Put, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    at(monkeypatch, "2026-09-02T09:00:00")
    rows = [
        patent_row(1, 通知日期="2026-09-01"),
        patent_row(2, status="申诉中", 通知日期="2026-09-01", 处理日期="2026-09-02"),
    ]
    put(drop, rows, "n.csv")
    run(as_of=date(2026, 9, 2))
    on_deadline = state(engine, date(2026, 11, 1))  # 2 months from 09-01: still in time
    assert on_deadline.loc[appno(2026, 1, 1), "handling_status"] == "待处理"
    assert pd.isna(on_deadline.loc[appno(2026, 1, 1), "status_rule"])
    late = state(engine, date(2026, 11, 2))
    assert late.loc[appno(2026, 1, 1), "handling_status"] == "逾期未处理"
    assert late.loc[appno(2026, 1, 1), "status_rule"] == "LC-OVERDUE"
    assert late.loc[appno(2026, 1, 2), "handling_status"] == "申诉中"  # appealed: not overdue
