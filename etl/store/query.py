"""Reading the store: the state of a dataset as of a date, and per-file accounting.

"As of D" means everything received before the end of D in Asia/Shanghai: the version of each
record that was open at that instant. Later receipts never change the answer for D, which is
what makes a rerun or backfill of D reproduce the same publication.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl import settings
from etl.contracts import Contract, load_contract
from etl.store.schema import ACTIVE, record_table, rejected_row, source_file

DEFAULT_CHUNK = 100_000


def end_of_day(day: date) -> datetime:
    """The first instant after `day` in Shanghai, as the naive UTC the store keeps."""
    start_next = datetime.combine(day + timedelta(days=1), time(), tzinfo=settings.SHANGHAI)
    return start_next.astimezone(UTC).replace(tzinfo=None)


def as_of_query(
    dataset: str,
    day: date,
    *,
    active_only: bool = True,
    columns: list[str] | None = None,
    dialect: str = "sqlite",
) -> sa.Select[Any]:
    """The versions open at the end of `day` (one per record), ordered by the natural key in
    code-point order on every database (PostgreSQL's locale collation would order differently
    from SQLite, and published files must not depend on the store); `columns` narrows the select
    (the natural key and status fields always come)."""
    table = record_table(dataset)
    cutoff = end_of_day(day)
    names = [c.name for c in table.c] if columns is None else _with_keys(dataset, columns)
    fields = {f.name for f in load_contract(dataset).fields}
    # Contract fields come as the driver returns them (ISO text, Decimal, date) and are typed a
    # column at a time by `typed`: SQLAlchemy's per-value result processing cost most of a read.
    selected = [
        sa.type_coerce(table.c[n], sa.types.NullType()).label(n) if n in fields else table.c[n]
        for n in names
    ]
    query = sa.select(*selected).where(
        table.c.valid_from < cutoff,
        sa.or_(table.c.valid_to.is_(None), table.c.valid_to >= cutoff),
    )
    if active_only:
        query = query.where(table.c.state == ACTIVE)
    key = [table.c[k] for k in _natural_key(dataset)]
    if dialect == "postgresql":
        return query.order_by(*(sa.collate(k, "C") for k in key))
    return query.order_by(*key)


def state_as_of(
    conn: Connection,
    dataset: str,
    day: date,
    *,
    active_only: bool = True,
    chunk_rows: int = DEFAULT_CHUNK,
    columns: list[str] | None = None,
) -> Iterator[pd.DataFrame]:
    """The as-of state in chunks of at most `chunk_rows` rows (memory stays flat)."""
    query = as_of_query(
        dataset, day, active_only=active_only, columns=columns, dialect=conn.dialect.name
    )
    # Options on this statement only: Connection.execution_options() would change `conn` itself.
    streaming = {"stream_results": True, "yield_per": chunk_rows}
    result = conn.execute(query, execution_options=streaming)
    columns = list(result.keys())
    contract = load_contract(dataset)
    text = {f.name for f in contract.fields if f.type not in ("date", "amount")}
    while True:
        with _no_gc():  # millions of fresh tuples: the cyclic collector only slows the fetch
            part = result.fetchmany(chunk_rows)
            if not part:
                return
            # Column-wise: building a frame from Row objects inspects every row (10× slower).
            values = list(zip(*part, strict=True))
            frame = pd.DataFrame(
                {
                    name: _strings(col) if name in text else pd.Series(col, dtype=object)
                    for name, col in zip(columns, values, strict=True)
                }
            )
        yield derive_status(typed(frame, contract), contract, day)


STATUS_RULE = "status_rule"  # the rule that derived a record's status, else empty


def derive_status(frame: pd.DataFrame, contract: Contract, day: date) -> pd.DataFrame:
    """Apply the contract's overdue rule as of `day`: a record still in a waiting status after
    its window is reported in the overdue status, and `status_rule` names the rule."""
    lifecycle = contract.lifecycle
    if lifecycle is None or lifecycle.overdue is None or lifecycle.field not in frame:
        return frame
    rule = lifecycle.overdue
    deadline = frame[rule.from_field] + pd.DateOffset(months=rule.months)
    overdue = frame[lifecycle.field].isin(rule.when) & (deadline < pd.Timestamp(day)).fillna(False)
    frame[STATUS_RULE] = pd.Series(pd.NA, index=frame.index, dtype="str")
    frame.loc[overdue, STATUS_RULE] = rule.rule
    frame.loc[overdue, lifecycle.field] = rule.status
    return frame


def typed(frame: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """Give store rows the dtypes of a checked batch: dates datetime64[s], amounts decimal."""
    for spec in contract.fields:
        if spec.name not in frame:
            continue
        if spec.type == "date":
            frame[spec.name] = pd.to_datetime(frame[spec.name]).astype("datetime64[s]")
        elif spec.type == "amount":
            values = _decimals(frame[spec.name].to_numpy(dtype=object))
            frame[spec.name] = pd.Series(
                values, index=frame.index, dtype=pd.ArrowDtype(values.type)
            )
        elif frame[spec.name].dtype != "str":
            frame[spec.name] = frame[spec.name].astype("str")
    return frame


@contextmanager
def _no_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_STR = pd.StringDtype("pyarrow", na_value=np.nan)  # pandas' default "str" dtype


def _strings(values: tuple[Any, ...]) -> pd.Series:
    """Text straight into an Arrow-backed "str" column (no per-value Python conversion)."""
    return pa.array(values, pa.large_string()).to_pandas(types_mapper={pa.large_string(): _STR}.get)


def _decimals(values: np.ndarray) -> pa.Array:
    """Amounts as decimal128(18, 6) from the driver's values: Decimal objects (PostgreSQL) or
    the fixed-point text SQLite keeps (`Amount`)."""
    kind = pa.decimal128(18, 6)
    present = values[pd.notna(values)]
    if len(present) and isinstance(present[0], str):
        return pc.cast(pa.array(values, pa.string(), from_pandas=True), kind)
    return pa.array(values, kind, from_pandas=True)


def file_counts(conn: Connection, file_id: int) -> dict[str, int]:
    """What the store holds for one file: its recorded counts, versions and rejected rows."""
    record = conn.execute(sa.select(source_file).where(source_file.c.id == file_id)).one()
    versions = record_table(record.dataset)
    return {
        "rows_read": record.rows_read or 0,
        "accepted": record.accepted or 0,
        "rejected": record.rejected or 0,
        "versions_written": conn.execute(
            sa.select(sa.func.count()).where(versions.c.source_file_id == file_id)
        ).scalar_one(),
        "rejected_rows": conn.execute(
            sa.select(sa.func.count()).where(rejected_row.c.source_file_id == file_id)
        ).scalar_one(),
    }


def _natural_key(dataset: str) -> list[str]:
    return list(load_contract(dataset).natural_key)


def _with_keys(dataset: str, columns: list[str]) -> list[str]:
    """`columns` plus the natural key and the fields the derived status reads, in order."""
    contract = load_contract(dataset)
    wanted = list(contract.natural_key)
    lifecycle = contract.lifecycle
    if lifecycle is not None and lifecycle.field in columns and lifecycle.overdue is not None:
        wanted.append(lifecycle.overdue.from_field)
    return list(dict.fromkeys(wanted + columns))


def latest_version(conn: Connection, dataset: str, key: list[str]) -> dict[str, Any] | None:
    """The newest version of the record with natural key `key` (any state), or None."""
    table = record_table(dataset)
    names = _natural_key(dataset)
    query = (
        sa.select(table)
        .where(*(table.c[n] == v for n, v in zip(names, key, strict=True)))
        .order_by(table.c.version.desc())
        .limit(1)
    )
    row = conn.execute(query).first()
    return dict(row._mapping) if row else None
