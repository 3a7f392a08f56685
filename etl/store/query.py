"""Reading the store: the state of a dataset as of a date, and per-file accounting.

"As of D" means everything received before the end of D in Asia/Shanghai: the version of each
record that was open at that instant. Later receipts never change the answer for D, which is
what makes a rerun or backfill of D reproduce the same publication.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Generator
from contextlib import suppress
from datetime import UTC, date, datetime, time, timedelta
from itertools import count
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl import settings
from etl.contracts import Contract, load_contract
from etl.errors import StoreError
from etl.overlap import read_ahead
from etl.store.schema import ACTIVE, record_table, rejected_row, source_file
from etl.text import STR

DEFAULT_CHUNK = 100_000
# A condition on a dataset's record table that narrows an as-of read (e.g. the rows a publication
# can possibly publish, `etl.publish.windows.may_be_public`): rows it leaves out are never
# formatted nor parsed.
Where = Callable[[sa.Table], sa.ColumnElement[bool]]


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
    ordered: bool = True,
) -> sa.Select[Any]:
    """The versions open at the end of `day` (one per record), ordered by the natural key in
    code-point order on every database (PostgreSQL's locale collation would order differently
    from SQLite, and published files must not depend on the store); `columns` narrows the select
    (the natural key and status fields always come). `ordered=False`: in whatever order the
    database finds them, for a reader whose answer does not depend on it."""
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
    if not ordered:
        return query
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
    where: Where | None = None,
    ordered: bool = True,
) -> Generator[pd.DataFrame, None, None]:
    """The as-of state in chunks of at most `chunk_rows` rows (memory stays flat), in key
    order unless `ordered=False` (`as_of_query`).

    `where` (a condition on the record table) leaves the rows it does not hold for in the
    database, unformatted; they still count towards their chunk's `chunk_rows`, so each chunk
    holds the rows of the same stretch of the as-of state with or without it (publication
    writes a Parquet row group per chunk: its files must not depend on the narrowing), and a
    stretch left out whole yields no chunk.

    The database formats each row as one line of CSV text (SQLite: `printf('%Q,…')`;
    PostgreSQL: the row's composite text) and Arrow parses a chunk of lines with the column
    types given, so no Python object is made per value: making one per value (and typing the
    columns afterwards) cost most of a read. It runs on `conn`'s own DB-API connection, inside
    its transaction and snapshot (`db.reading`), and streams like `stream_results` did."""
    query = as_of_query(
        dataset, day, active_only=active_only, columns=columns, dialect=conn.dialect.name,
        ordered=ordered,
    )  # fmt: skip
    contract = load_contract(dataset)
    names = [c.name for c in query.selected_columns]
    types = _arrow_types(dataset, names)
    if not conn.in_transaction():
        conn.begin()  # what conn.execute would autobegin: `db.reading` sets up the snapshot
    keep = where(record_table(dataset)) if where is not None else None
    if conn.dialect.name == "postgresql":
        tables = _postgres_tables(conn, query, types, chunk_rows, keep)
    else:
        tables = _sqlite_tables(conn, query, types, chunk_rows, keep)
    # The next chunk is fetched and parsed while the caller works on this one: the database
    # formats rows (SQLite inside `sqlite3_step`, PostgreSQL in its own process) and Arrow
    # parses them without holding the GIL. One chunk ahead at most; a caller that stops early
    # or fails stops the thread, which closes `tables` (and with it the cursor).
    with read_ahead(tables) as ahead:
        for table in ahead:
            yield derive_status(_frame(table, contract), contract, day)


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


_SQLITE_MAX_ARGS = 100  # SQLite allows 127 arguments per function call (SQLITE_MAX_FUNCTION_ARG)


def _arrow_types(dataset: str, names: list[str]) -> dict[str, pa.DataType]:
    """How each selected column is read from the CSV lines: contract dates as dates, amounts
    as text (cast exactly to decimal by `_frame`), other contract fields as text; the version
    columns by their SQL type."""
    table = record_table(dataset)
    fields = {f.name: f.type for f in load_contract(dataset).fields}
    types: dict[str, pa.DataType] = {}
    for name in names:
        sql_type = table.c[name].type
        if name in fields:
            types[name] = pa.date32() if fields[name] == "date" else pa.string()
        elif isinstance(sql_type, sa.Integer):
            types[name] = pa.int64()
        elif isinstance(sql_type, sa.DateTime):
            types[name] = pa.timestamp("us")
        elif isinstance(sql_type, sa.Date):
            types[name] = pa.date32()
        else:
            types[name] = pa.string()
    return types


def _sqlite_tables(
    conn: Connection,
    query: sa.Select[Any],
    types: dict[str, pa.DataType],
    chunk_rows: int,
    keep: sa.ColumnElement[bool] | None = None,
) -> Generator[pa.Table, None, None]:
    """SQLite formats each row with `%Q` (text single-quoted with '' doubled, NULL bare) and
    hands it over as one blob; a chunk is those lines joined. Cheaper in SQLite than
    json_object, and Arrow parses CSV faster than JSON. A row `keep` does not hold for comes
    as NULL, never formatted (`_lines`)."""
    selected = list(query.selected_columns)
    parts = [
        sa.func.printf(",".join(["%Q"] * len(group)), *group)
        for group in (
            selected[i : i + _SQLITE_MAX_ARGS] for i in range(0, len(selected), _SQLITE_MAX_ARGS)
        )
    ]
    line: sa.ColumnElement[Any] = parts[0]
    for part in parts[1:]:
        line = line.op("||")(sa.literal_column("','")).op("||")(part)
    statement = query.with_only_columns(sa.cast(_kept(line, keep), sa.LargeBinary))
    sql = str(statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql)
        options = _csv_options(types, quote="'", null="NULL")
        while rows := cursor.fetchmany(chunk_rows):
            if lines := _lines(rows):
                yield _parse(b"\n".join(lines), len(lines), options)
    finally:
        # A consumer that stopped early may let this generator go only after the connection
        # was closed (the cursor went with it): then there is nothing left to release.
        with suppress(sqlite3.ProgrammingError):
            cursor.close()


def _postgres_tables(
    conn: Connection,
    query: sa.Select[Any],
    types: dict[str, pa.DataType],
    chunk_rows: int,
    keep: sa.ColumnElement[bool] | None = None,
) -> Generator[pa.Table, None, None]:
    """PostgreSQL formats each row as a composite value, `(NULL, a, b, …, NULL)::text`: fields
    comma-separated, NULL empty, and any value that is empty or holds a quote, backslash,
    parenthesis, comma or white space double-quoted with `"` and `\\` doubled (documented:
    "Composite Type Input and Output Syntax"); that is CSV with a backslash escape, the NULL
    ends giving the parentheses columns of their own. As bytea (UTF-8 whatever the client
    encoding) through a server-side cursor, as SQLAlchemy's `stream_results` did: unlike a COPY,
    which holds the connection until the last row, the connection stays usable between chunks
    (the caller may query, fail and roll back, or stop early). A row `keep` does not hold for
    comes as NULL, never formatted (`_lines`)."""
    row = sa.cast(sa.tuple_(sa.null(), *query.selected_columns, sa.null()), sa.Text)
    line = sa.func.convert_to(row, sa.literal_column("'UTF8'"), type_=sa.LargeBinary)
    statement = query.with_only_columns(_kept(line, keep))
    # psycopg's dialect doubles each % of a literal and, with no parameters, psycopg sends the
    # text as it is: a LIKE '%%x%%' matches what '%x%' does, and a `where` value holding a real
    # % matches nothing, which only keeps rows in (a narrowing can never drop a row by it).
    sql = str(statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    driver = conn.connection.driver_connection
    datestyle = driver.info.parameter_status("DateStyle")  # type: ignore[union-attr]
    if datestyle is not None and not datestyle.startswith("ISO"):
        raise StoreError(f"PostgreSQL DateStyle 须为 ISO（当前 {datestyle}）：日期按 ISO 读取")
    options = _csv_options(
        {"(": pa.string(), **types, ")": pa.string()}, quote='"', escape="\\", null=""
    )
    name = f"creditpipe_state_as_of_{next(_CURSORS)}"
    with driver.cursor(name=name, binary=True) as cursor:  # type: ignore[union-attr]
        cursor.execute(sql)
        while rows := cursor.fetchmany(chunk_rows):
            if lines := _lines(rows):
                yield _parse(b"\n".join(lines), len(lines), options)


def _kept(
    line: sa.ColumnElement[Any], keep: sa.ColumnElement[bool] | None
) -> sa.ColumnElement[Any]:
    """The row's line where `keep` holds, else NULL (formatted only where it holds)."""
    return line if keep is None else sa.case((keep, line), else_=sa.null())


def _lines(rows: list[tuple[Any, ...]]) -> list[Any]:
    """The lines of a fetched stretch of rows, without the rows `_kept` left NULL. A row left
    out costs the database its test and Python a NULL in a tuple; formatting and parsing one
    cost about 2.5 µs (SQLite, a penalty of 32 fields)."""
    return list(filter(None, map(itemgetter(0), rows)))  # a line is never empty


_CURSORS = count()  # server-side cursor names, unique within the process


class _CsvOptions(NamedTuple):
    read: pv.ReadOptions
    parse: pv.ParseOptions
    convert: pv.ConvertOptions


def _csv_options(
    types: dict[str, pa.DataType], *, quote: str, null: str, escape: str | bool = False
) -> _CsvOptions:
    """NULL is the bare `null` token; a quoted token is always text, so NULL and "" differ.
    Columns named "(" and ")" (the PostgreSQL row's ends) are read and dropped."""
    return _CsvOptions(
        pv.ReadOptions(
            column_names=list(types),
            use_threads=False,
            block_size=1 << 30,  # a chunk is one block: parsed whole, rows counted exactly
        ),
        pv.ParseOptions(
            quote_char=quote,
            double_quote=True,
            escape_char=escape,
            newlines_in_values=True,
            ignore_empty_lines=False,
        ),
        pv.ConvertOptions(
            column_types=types,
            null_values=[null],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            check_utf8=False,  # checked whole by `_parse`
            include_columns=[c for c in types if c not in ("(", ")")],
        ),
    )


def _parse(lines: bytes, rows: int, options: _CsvOptions) -> pa.Table:
    _check_utf8(lines)
    table = pv.read_csv(
        pa.BufferReader(lines),
        read_options=options.read,
        parse_options=options.parse,
        convert_options=options.convert,
    )
    if table.num_rows != rows:  # a line the parser split or merged: never guess
        raise StoreError(f"读取存储时行数不符：数据库返回 {rows} 行，解析得到 {table.num_rows} 行")
    return table


def _check_utf8(lines: bytes) -> None:
    """Validate a chunk as one string: an order of magnitude cheaper than Arrow checking each
    value, and the same answer (fields are cut at ASCII bytes, never inside a character).
    SQLite does not check the text it stores; a bad byte must not reach a published file."""
    offsets = pa.py_buffer(np.array([0, len(lines)], dtype=np.int64))
    whole = pa.Array.from_buffers(pa.large_string(), 1, [None, offsets, pa.py_buffer(lines)])
    try:
        whole.validate(full=True)
    except pa.ArrowInvalid as exc:
        raise StoreError(f"存储中有非 UTF-8 文本：{exc}") from None


def _frame(table: pa.Table, contract: Contract) -> pd.DataFrame:
    """Store rows with the dtypes of a checked batch: text "str", dates datetime64[s], amounts
    decimal128(18, 6); the version columns as the driver's Python values (object)."""
    kinds = {f.name: f.type for f in contract.fields}
    data: dict[str, pd.Series] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        kind = kinds.get(name)
        if kind == "date":
            values = pc.cast(column, pa.timestamp("s")).to_pandas()
        elif kind == "amount":
            values = pc.cast(column, pa.decimal128(18, 6)).to_pandas(types_mapper=pd.ArrowDtype)
        elif kind is not None:
            text = pc.cast(column, pa.large_string())
            values = text.to_pandas(types_mapper={pa.large_string(): STR}.get)
        elif pa.types.is_integer(column.type) and column.null_count:
            values = pd.Series(column.to_pylist(), dtype=object)  # numpy would make them floats
        else:  # datetime64[us] and NaT become datetime and None
            values = pd.Series(column.to_numpy(zero_copy_only=False).astype(object), dtype=object)
        data[name] = values
    return pd.DataFrame(data)


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
