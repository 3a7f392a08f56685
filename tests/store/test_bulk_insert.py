"""`bulk_insert`: every value arrives exactly as the file had it, on SQLite and on PostgreSQL.

On SQLite the values are bound as cheaply as the sqlite3 module allows (NULL as NaN, a column
NULL throughout a batch as a literal NULL, few distinct values as shared strings): the stored
values and their storage classes must stay those of binding each value as `str` or `None`.
"""

from __future__ import annotations

import gc
from datetime import date
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from etl.store import load
from etl.store.schema import Amount

TRICKY = [
    None,
    "",
    " ",
    "007",
    "1e3",
    " 42 ",
    "-0",
    "1.50",
    "NULL",
    "null",
    "nan",
    "\"quoted\" and 'single'",
    "'); DROP TABLE probe; --",
    "back\\slash \\n not a newline",
    "line\nfeed",
    "carriage\r\nreturn",
    "tab\there",
    "controls \x01\x07\x1b\x1f\x7f",
    "[1, 2]",
    '{"a": null}',
    "非BMP 😀 𠀀 and 行政处罚",
    "\u2028\u2029",
    "长" * 50_000,
]


def probe_table(name: str) -> sa.Table:
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("row", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("text", sa.Text),
        sa.Column("few", sa.Text),  # few distinct values: bound from shared strings
        sa.Column("sparse", sa.Text),  # NULL throughout some batches
        sa.Column("number", sa.Integer),  # text in an INTEGER column: SQLite's affinity applies
        sa.Column("day", sa.Date),
        sa.Column("amount", Amount()),
        sa.Column("flag", sa.Boolean),
    )


def probe_frame(text: list[str | None]) -> pd.DataFrame:
    """`text` as a column, beside columns of the other kinds a contract has."""
    rows = len(text)
    few = np.array(["甲", None, "007", ""], dtype=object)[np.arange(rows) % 4]
    sparse = np.full(rows, None, dtype=object)
    sparse[rows // 2 :: 7] = "稀疏"
    days = np.array(["2026-05-11", "NaT"] * (rows // 2 + 1), dtype="datetime64[ms]")[:rows]
    amounts = [Decimal("0.300000"), None, Decimal("12345.000001")] * (rows // 3 + 1)
    decimals = pa.array(amounts[:rows], pa.decimal128(18, 6))  # as the contract types amounts
    return pd.DataFrame(
        {
            "row": np.arange(rows, dtype="int64"),
            "text": pd.Series(text, dtype=object),
            "few": few,
            "sparse": sparse,
            "number": pd.Series(["007", None, "x7", " 8 "] * (rows // 4 + 1))[:rows].to_numpy(),
            "day": days,
            "amount": pd.Series(decimals, dtype=pd.ArrowDtype(decimals.type)),
            "flag": np.arange(rows) % 3 == 0,
        }
    )


def bound_as_before(conn: Connection, table: sa.Table, frame: pd.DataFrame) -> None:
    """The reference: every wire value bound as `str` or `None`, one row at a time."""
    columns = list(frame.columns)
    wire = [load.wire_column(frame[c]).to_pylist() for c in columns]
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" for _ in columns)
    insert = f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})'
    conn.exec_driver_sql(insert, list(zip(*wire, strict=True)))


def stored(conn: Connection, table: sa.Table) -> list[tuple[Any, ...]]:
    """Every stored value with its SQLite storage class, in row order."""
    cells = ", ".join(f'quote("{c.name}"), typeof("{c.name}")' for c in table.columns)
    return [
        tuple(r) for r in conn.exec_driver_sql(f'SELECT {cells} FROM "{table.name}" ORDER BY "row"')
    ]


@pytest.fixture
def sqlite_conn(tmp_path: Any) -> Any:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'probe.db'}")
    with engine.begin() as conn:
        yield conn
    engine.dispose()


@pytest.mark.parametrize("batch", [load._WRITE_BATCH, 7])
def test_sqlite_stores_what_binding_str_or_none_stored(
    sqlite_conn: Connection, batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(load, "_WRITE_BATCH", batch)
    monkeypatch.setattr(load, "_SAMPLE", 64)  # let the small frame's `few` use shared strings
    frame = probe_frame(TRICKY * 3)
    assert load._few_distinct(load.wire_column(frame["few"])) is not None
    assert load._few_distinct(load.wire_column(frame["text"])) is None
    new, reference = probe_table("probe_new"), probe_table("probe_reference")
    for table in (new, reference):
        table.create(sqlite_conn)
    load.bulk_insert(sqlite_conn, new, frame)
    bound_as_before(sqlite_conn, reference, frame)
    got, want = stored(sqlite_conn, new), stored(sqlite_conn, reference)
    assert len(got) == len(frame)
    assert got == want


def test_sqlite_keeps_text_as_text_and_null_apart_from_empty(sqlite_conn: Connection) -> None:
    table = probe_table("probe")
    table.create(sqlite_conn)
    load.bulk_insert(sqlite_conn, table, probe_frame(TRICKY))
    back = sqlite_conn.exec_driver_sql(
        'SELECT "text", typeof("text"), typeof("number"), "number" FROM probe ORDER BY "row"'
    ).all()
    assert [r[0] for r in back] == TRICKY
    assert [r[1] for r in back] == ["null"] + ["text"] * (len(TRICKY) - 1)
    # "007" in an INTEGER column becomes 7 by the column's affinity, as it always did.
    assert (back[0][2], back[0][3]) == ("integer", 7)
    assert (back[1][2], back[2][2], back[3][2]) == ("null", "text", "integer")


def test_sqlite_keeps_a_nul_character(sqlite_conn: Connection) -> None:
    table = probe_table("probe")
    table.create(sqlite_conn)
    load.bulk_insert(sqlite_conn, table, probe_frame(["a\x00b", None]))
    back = sqlite_conn.exec_driver_sql(
        'SELECT length(CAST("text" AS BLOB)), typeof("text") FROM probe ORDER BY "row"'
    ).all()
    assert [tuple(r) for r in back] == [(3, "text"), (None, "null")]


def test_sqlite_batch_with_every_column_null(
    sqlite_conn: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(load, "_WRITE_BATCH", 2)
    table = sa.Table("probe", sa.MetaData(), sa.Column("a", sa.Text), sa.Column("b", sa.Text))
    table.create(sqlite_conn)
    frame = pd.DataFrame({"a": [None, None, "x"], "b": [None, None, None]}, dtype=object)
    load.bulk_insert(sqlite_conn, table, frame)
    back = sqlite_conn.exec_driver_sql("SELECT a, b FROM probe ORDER BY rowid").all()
    assert [tuple(r) for r in back] == [(None, None), (None, None), ("x", None)]


@pytest.mark.parametrize("enabled", [True, False])
def test_the_garbage_collector_is_left_as_it_was(sqlite_conn: Connection, enabled: bool) -> None:
    table = probe_table("probe")
    table.create(sqlite_conn)
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        load.bulk_insert(sqlite_conn, table, probe_frame(TRICKY[:10]))
        assert gc.isenabled() is enabled
        with pytest.raises(sa.exc.IntegrityError):  # the same keys again
            load.bulk_insert(sqlite_conn, table, probe_frame(TRICKY[:10]))
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


def test_tricky_values_round_trip_on_both_databases(engine: Engine) -> None:
    text = list(TRICKY)  # PostgreSQL text cannot hold NUL: not among them
    table = probe_table("probe_both")
    with engine.begin() as conn:
        table.create(conn)
        frame = probe_frame(text).drop(columns="number")  # "x7" is no PostgreSQL integer
        load.bulk_insert(conn, table, frame)
        back = pd.read_sql(sa.select(table).order_by(table.c.row), conn, coerce_float=False)
    assert list(back["text"].astype(object).where(back["text"].notna(), None)) == text
    assert back.loc[0, "day"] == date(2026, 5, 11) and back["day"].isna()[1]
    assert back.loc[0, "amount"] == Decimal("0.300000") and back.loc[1, "amount"] is None


def test_dates_are_written_as_iso_text_as_numpy_wrote_them() -> None:
    spans = [
        ("0001-01-01", "0004-01-01"),
        ("1899-01-01", "2101-01-01"),
        ("9998-01-01", "10000-01-01"),
    ]
    days = np.concatenate([np.arange(np.datetime64(a), np.datetime64(b)) for a, b in spans])
    stamps = pd.Series(np.append(days, np.datetime64("NaT")).astype("datetime64[s]"))
    assert pd.api.types.is_datetime64_any_dtype(stamps.dtype)
    wire = load.wire_column(stamps)
    assert wire.null_count == 1 and wire[-1].as_py() is None
    text = np.datetime_as_string(days)  # how they were written before: numpy's ISO text
    assert wire.slice(0, len(days)).equals(load._contiguous(pa.array(text, pa.string())))
