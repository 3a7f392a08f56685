"""`state_as_of(where=…)` narrows a read without moving its chunks, and the publication's
narrowing (`windows.may_be_public`) never leaves out a penalty `in_window` would publish.

Both on SQLite and PostgreSQL: the condition is SQL, compared by each database its own way."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.publish.policy import load_publicity_policy
from etl.publish.windows import REPAIRED, in_window, may_be_public, with_publicity
from etl.store import db
from etl.store.query import state_as_of
from tests.store.test_bulk_read import _key, _store

DAY = date(2026, 11, 21)
SUBJECTS = ["自然人", "法人及非法人组织", "个体工商户"]
CATEGORIES = [
    "警告",
    "罚款",
    "通报批评",
    "通报批评;罚款",
    "警告;罚款",
    "警告;通报批评",
    "罚款;限制从业",
    "罚款;限制开展生产经营活动",
    "罚款;吊销许可证件",
    "罚款;没收违法所得",
    "没收违法所得",
    "罚款;警告",  # not the canonical order: read, and classed exactly
]
FINES_YUAN = [
    None,
    "200",
    "200.01",
    "3000",
    "3000.01",
    "5000",
    "5000.01",
    "50000",
    "50000.01",
    "1e6",
]
PROCEDURES = [None, "普通程序", "简易程序"]


def _read(engine: Engine, day: date, where: Any = None, chunk_rows: int = 7) -> list[pd.DataFrame]:
    with db.reading(engine) as conn:
        return list(state_as_of(conn, "penalty", day, chunk_rows=chunk_rows, where=where))


def test_where_leaves_rows_out_of_the_same_chunks(engine: Engine) -> None:
    """A chunk of a narrowed read holds the kept rows of the same stretch of the as-of state:
    whole chunks of left-out rows are skipped, the others are not topped up."""
    _store(engine, [{"decision_no": _key(n), "remarks": str(n % 4)} for n in range(20)])
    table_of: dict[str, Any] = {}

    def odd(table: sa.Table) -> sa.ColumnElement[bool]:
        table_of["t"] = table
        return table.c.remarks.in_(["1", "3"])

    full = _read(engine, DAY, chunk_rows=4)
    narrowed = _read(engine, DAY, where=odd, chunk_rows=4)
    expected = [f.loc[f["remarks"].isin(["1", "3"]), "decision_no"].tolist() for f in full]
    assert [f["decision_no"].tolist() for f in narrowed] == expected
    assert table_of["t"].name == "penalty_version"
    none = _read(engine, DAY, where=lambda t: t.c.remarks == "none", chunk_rows=4)
    assert none == []


def _penalties(day: date, count: int, seed: int) -> list[dict[str, Any]]:
    """Random penalties around the edges the narrowing tests: fine thresholds, the first and
    last days of the 3-month and 3-year windows (month ends), supplied and restriction ends."""
    rng = random.Random(seed)
    edges = [
        day - pd.DateOffset(months=3),
        day - pd.DateOffset(years=3),
        pd.Timestamp(day),
    ]
    dates = [(e + pd.Timedelta(days=k)).date() for e in edges for k in range(-4, 5)]
    dates += [day - timedelta(days=k) for k in (30, 400, 2000)]
    ends = [None, day - timedelta(days=1), day, day + timedelta(days=1), date(2099, 12, 31)]
    rows = []
    for n in range(count):
        fine = rng.choice(FINES_YUAN)
        rows.append(
            {
                "decision_no": _key(seed * count + n),
                "subject_type": rng.choice(SUBJECTS),
                "penalty_categories": rng.choice(CATEGORIES),
                "fine_amount": None if fine is None else Decimal(fine) / 10_000,
                "decision_date": rng.choice([*dates, None]),
                "procedure_type": rng.choice(PROCEDURES),
                "valid_until": rng.choice(ends),
                "publicity_until": rng.choice(ends[:1] * 6 + ends),  # mostly none supplied
                "record_status": rng.choice([None, None, "信用修复"]),
            }
        )
    return rows


def _public(frames: list[pd.DataFrame], day: date, profile_name: str) -> set[str]:
    profile = load_publicity_policy(profile_name)
    public: set[str] = set()
    for frame in frames:
        frame[REPAIRED] = (frame["record_status"] == "信用修复").fillna(False)
        frame = with_publicity(frame, profile)
        public |= set(frame.loc[in_window(frame, day), "decision_no"])
    return public


def test_the_publication_narrowing_keeps_every_public_penalty(engine: Engine) -> None:
    days = [DAY, date(2026, 5, 31), date(2027, 2, 28), date(2028, 2, 29)]
    _store(engine, [r for n, d in enumerate(days) for r in _penalties(d, 600, seed=n)])
    everything = {k for f in _read(engine, DAY, chunk_rows=500) for k in f["decision_no"]}
    for profile_name in ("samr-45", "ndrc-2026"):
        profile = load_publicity_policy(profile_name)
        for day in days:

            def narrowing(
                table: sa.Table, day: date = day, profile: Any = profile
            ) -> sa.ColumnElement[bool]:
                return may_be_public(table, profile, day)

            kept = _read(engine, day, where=narrowing, chunk_rows=500)
            kept_keys = {k for f in kept for k in f["decision_no"]}
            public = _public(_read(engine, day, chunk_rows=500), day, profile_name)
            assert public <= kept_keys, (profile_name, day, sorted(public - kept_keys)[:5])
            assert _public(kept, day, profile_name) == public
            # It does narrow: most of what cannot be public stays in the database.
            assert len(kept_keys - public) < len(everything - public) / 2, (profile_name, day)
