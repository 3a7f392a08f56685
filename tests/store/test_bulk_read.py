"""`state_as_of` reads the store in bulk (SQLite: a CSV line per row from `printf('%Q')`;
PostgreSQL: `COPY … TO STDOUT`): every awkward value must come back exactly, on both stores."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.contracts import load_contract
from etl.errors import StoreError
from etl.store import db
from etl.store.query import state_as_of
from etl.store.schema import record_table, source_file

DAY = date(2026, 11, 21)
LOADED_AT = datetime(2026, 1, 2, 3, 4, 5, 678901)
AUTHORITY = "11310106MB2F00000X"

# Text that a CSV line, a NULL token or a quote could get wrong.
AWKWARD = [
    "",
    "NULL",
    "'NULL'",
    '"NULL"',
    "\\N",
    "null",
    "line one\nline two",
    "crlf\r\nend",
    "\n",
    "\r",
    'say "hi"',
    "it's",
    "''",
    '""',
    "a,b",
    "back\\slash\\",
    "tab\there",
    "  padded  ",
    "0012",
    "123",
    "1e5",
    "110101199003071234",
    "123456789012345678901234567890",
    "行政处罚决定书 — é 😀",
    "\x1f\x1eend",
    "%Q %s %%",
]


def _source_file(conn: sa.Connection) -> int:
    return int(
        conn.execute(
            sa.insert(source_file).returning(source_file.c.id),
            {
                "sha256": uuid.uuid4().hex * 2,
                "office_id": "jingan-amr",
                "dataset": "penalty",
                "original_name": "bulk.csv",
                "size": 1,
                "archive_path": "bulk.csv",
                "received_at": LOADED_AT,
                "status": "loaded",
            },
        ).scalar_one()
    )


def _store(engine: Engine, rows: list[dict[str, Any]]) -> None:
    """Insert penalty versions straight into the store (every field not given is NULL)."""
    fields = [f.name for f in load_contract("penalty").fields]
    with db.transaction(engine) as conn:
        file_id = _source_file(conn)
        full = [
            {
                "version": 1,
                "state": "active",
                "valid_from": LOADED_AT,
                "valid_to": None,
                "source_file_id": file_id,
                "source_row": n + 2,
                **dict.fromkeys(fields),
                "authority_uscc": AUTHORITY,
                **row,
            }
            for n, row in enumerate(rows)
        ]
        conn.execute(sa.insert(record_table("penalty")), full)


def _read(engine: Engine, chunk_rows: int = 3, **kwargs: Any) -> list[pd.DataFrame]:
    with db.reading(engine) as conn:
        return list(state_as_of(conn, "penalty", DAY, chunk_rows=chunk_rows, **kwargs))


def _values(series: pd.Series) -> list[Any]:
    return [None if v is None or v is pd.NA or v is pd.NaT or v != v else v for v in series]


def _key(n: int) -> str:
    return f"沪罚〔2026〕{n:03d}号"


def test_awkward_text_comes_back_exactly(engine: Engine) -> None:
    texts: list[str | None] = [*AWKWARD, None]
    _store(engine, [{"decision_no": _key(n), "remarks": t} for n, t in enumerate(texts)])
    frames = _read(engine)
    assert [len(f) for f in frames] == [3] * (len(texts) // 3) + [len(texts) % 3] * bool(
        len(texts) % 3
    )
    frame = pd.concat(frames, ignore_index=True)
    assert _values(frame["remarks"]) == texts  # "" stays "", NULL stays missing
    assert frame["remarks"].dtype == "str"
    assert frame["remarks"].isna().tolist() == [t is None for t in texts]


def test_columns_null_at_first_and_text_later(engine: Engine) -> None:
    """A column that is NULL in the first chunk(s) and text later (and the reverse) keeps its
    type: nothing is inferred from the first rows."""
    rows = [
        {"decision_no": _key(n), "remarks": None if n < 7 else f"备注{n}", "legal_rep": None}
        for n in range(10)
    ]
    rows[-1]["legal_rep"] = "张三"
    rows[0]["org_code"] = "12345678X"
    _store(engine, rows)
    frame = pd.concat(_read(engine, chunk_rows=2), ignore_index=True)
    assert _values(frame["remarks"]) == [None] * 7 + ["备注7", "备注8", "备注9"]
    assert _values(frame["legal_rep"]) == [None] * 9 + ["张三"]
    assert _values(frame["org_code"]) == ["12345678X"] + [None] * 9
    assert {frame[c].dtype for c in ("remarks", "legal_rep", "org_code")} == {
        pd.StringDtype("pyarrow", na_value=np.nan)
    }


def test_amounts_dates_and_version_columns(engine: Engine) -> None:
    amounts = [
        Decimal("0"),
        Decimal("0.000001"),
        Decimal("2"),
        Decimal("123456789012.123456"),
        None,
    ]
    dates = [date(1900, 1, 1), date(2026, 2, 28), date(2099, 12, 31), None, date(2024, 2, 29)]
    _store(
        engine,
        [
            {"decision_no": _key(n), "fine_amount": a, "decision_date": d}
            for n, (a, d) in enumerate(zip(amounts, dates, strict=True))
        ],
    )
    frame = pd.concat(_read(engine), ignore_index=True)
    assert frame["fine_amount"].dtype == pd.ArrowDtype(pa.decimal128(18, 6))
    assert _values(frame["fine_amount"]) == amounts
    assert frame["confiscation_amount"].isna().all()
    assert frame["decision_date"].dtype == "datetime64[s]"
    assert _values(frame["decision_date"]) == [
        None if d is None else pd.Timestamp(d) for d in dates
    ]
    # The version columns come as the driver's Python values, as SQLAlchemy returned them.
    assert frame["id"].dtype == object and all(type(v) is int for v in frame["id"])
    assert frame["version"].tolist() == [1] * 5
    assert frame["state"].tolist() == ["active"] * 5
    assert frame["valid_from"].tolist() == [LOADED_AT] * 5
    assert type(frame.loc[0, "valid_from"]) is datetime
    assert frame["valid_to"].tolist() == [None] * 5
    assert frame["source_row"].tolist() == [2, 3, 4, 5, 6]


def test_order_is_code_point_order_on_every_store(engine: Engine) -> None:
    keys = ["b", "B", "a", "A", "号", "Z", "z", "_", "1", "é", "e"]
    _store(engine, [{"decision_no": k} for k in keys])
    frame = pd.concat(_read(engine), ignore_index=True)
    assert frame["decision_no"].tolist() == sorted(keys)


def test_columns_narrow_the_read(engine: Engine) -> None:
    _store(engine, [{"decision_no": _key(1), "fine_amount": Decimal("1.5"), "remarks": "x"}])
    (frame,) = _read(engine, columns=["fine_amount"])
    assert list(frame.columns) == ["authority_uscc", "decision_no", "fine_amount"]
    assert frame.loc[0, "fine_amount"] == Decimal("1.500000")


def test_empty_store_yields_nothing(engine: Engine) -> None:
    assert _read(engine) == []


def test_reads_in_the_callers_snapshot_and_survives_an_early_stop(engine: Engine) -> None:
    _store(engine, [{"decision_no": _key(n)} for n in range(7)])
    with db.reading(engine) as conn:
        chunks = state_as_of(conn, "penalty", DAY, chunk_rows=2)
        first = next(chunks)
        chunks.close()  # the consumer stops early: the connection stays usable
        _store(engine, [{"decision_no": _key(99)}])  # committed meanwhile by another writer
        again = pd.concat(list(state_as_of(conn, "penalty", DAY, chunk_rows=2)))
        assert conn.execute(sa.select(sa.literal(1))).scalar_one() == 1
    assert len(first) == 2
    assert len(again) == 7  # the reader's snapshot, not the later write
    assert len(pd.concat(_read(engine), ignore_index=True)) == 8


def test_invalid_utf8_in_sqlite_is_an_error(tmp_path: Any) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'bad.db'}")
    db.upgrade(engine)
    _store(engine, [{"decision_no": _key(1)}])
    with db.transaction(engine) as conn:
        conn.exec_driver_sql("UPDATE penalty_version SET remarks = CAST(X'E8BF' AS TEXT)")
    with pytest.raises(StoreError, match="UTF-8"):
        _read(engine)
    engine.dispose()


def test_other_statements_between_chunks_and_a_failing_consumer(engine: Engine) -> None:
    """The caller may query between chunks, and may fail mid-read and roll back: the read
    must not hold the connection (a COPY would, and the rollback would wait forever)."""
    _store(engine, [{"decision_no": _key(n), "remarks": str(n)} for n in range(5)])
    table = record_table("penalty")
    seen = []
    with pytest.raises(RuntimeError, match="consumer failed"), db.reading(engine) as conn:
        for frame in state_as_of(conn, "penalty", DAY, chunk_rows=2):
            count = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            seen.append((len(frame), count))
            if len(seen) == 2:
                raise RuntimeError("consumer failed")
    assert seen == [(2, 5), (2, 5)]
    assert len(pd.concat(_read(engine), ignore_index=True)) == 5


def test_awkward_text_first_and_last_in_a_narrowed_read(engine: Engine) -> None:
    """With `columns`, a text field opens the row and another closes it (next to the row's
    parentheses on PostgreSQL)."""
    texts: list[str | None] = [*AWKWARD, None]
    rows = [
        {"authority_uscc": t, "decision_no": _key(n), "remarks": t} for n, t in enumerate(texts)
    ]
    _store(engine, rows)
    frame = pd.concat(_read(engine, columns=["remarks"]), ignore_index=True)
    assert list(frame.columns) == ["authority_uscc", "decision_no", "remarks"]
    got = list(
        zip(
            _values(frame["authority_uscc"]),
            frame["decision_no"],
            _values(frame["remarks"]),
            strict=True,
        )
    )
    want = [(t, _key(n), t) for n, t in enumerate(texts)]
    assert sorted(got, key=repr) == sorted(want, key=repr)
