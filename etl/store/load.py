"""Loading one checked file into the store: stage in bulk, then one set-based versioned merge.

`FileLoad` is the `AcceptedSink` that `etl.check.check_file` streams into. Accepted rows go to a
staging table (PostgreSQL: a temporary table, by COPY in a thread beside the check, which the
caller settles before the merge and abandons before a rollback; a SQLite store file: a private
staging file written from Arrow, attached for the merge, `_ArrowStage`; an in-memory SQLite
store: a temporary table, by executemany); rejected rows go to `rejected_row` with their raw
cells as JSON. `merge` then applies the versioned upsert in SQL:

- a key not in the store → version 1;
- the same key with identical content (and the same revoked/active state) → nothing;
- the same key with different content → the current version is closed (`valid_to` = the new
  file's receipt time) and version n+1 opens: a correction;
- a row the contract marks as revoked (e.g. 记录状态 = 撤销, 备注 starting with 撤销) → the same,
  with the new version in state `withdrawn`.

Everything happens on the caller's connection inside the caller's transaction: a failure at any
point leaves the store exactly as it was before the file.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import adbc_driver_manager.dbapi as adbc_dbapi
import adbc_driver_sqlite.dbapi as adbc_sqlite
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateTable

from etl.checks.codes import message
from etl.checks.rules import empty_rejections
from etl.contracts import Contract
from etl.errors import CreditpipeError
from etl.intake.readers import ROW
from etl.overlap import WriteBehind
from etl.store import db, files
from etl.store.schema import (
    ACTIVE,
    WITHDRAWN,
    plan_table,
    record_table,
    rejected_row,
    rejection,
    staging_table,
)

log = logging.getLogger(__name__)

_IN_BATCH = 10_000  # rows per IN (…) list: SQLite caps bound parameters
# Rows per SQLite executemany and per PostgreSQL COPY write: the Python objects (SQLite) or the
# COPY text (PostgreSQL) of one batch at a time, not of a whole chunk (≈ 250 MB per 100,000
# rows for the SQLite tuples: it took a 1,000,000-row run over 1 GB peak RSS).
_WRITE_BATCH = 10_000
# A NaN bound on SQLite is stored as NULL (sqlite3_bind_double), and a float is bound as it is,
# while `None` goes through the sqlite3 module's adapter look-up first: a failed attribute
# look-up per NULL, the most expensive value to bind (tests/store/test_bulk_insert.py).
_SQLITE_NULL = float("nan")
# A column with at most one distinct value per this many rows is bound from one Python string
# per distinct value (the sqlite3 module then encodes each to UTF-8 once, not once per row);
# whether a column may be is first judged on its first `_SAMPLE` values.
_FEW_DISTINCT = 4
_SAMPLE = 1_000
_PG_MERGE_WORK_MEM = "256MB"  # see FileLoad.merge
_COPY_ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"))


@dataclass(frozen=True)
class MergeCounts:
    """What a file did to the store (accepted = the sum of the four)."""

    inserted: int = 0
    corrected: int = 0
    unchanged: int = 0
    withdrawn: int = 0

    @property
    def total(self) -> int:
        return self.inserted + self.corrected + self.unchanged + self.withdrawn


# --- bulk insert -----------------------------------------------------------------------------


def wire_column(values: pd.Series) -> pa.Array:
    """A column as nullable text in the form both databases parse (ISO dates, fixed decimals).

    On SQLite the text meets the columns' affinity, and the staging paths (Python's SQLite,
    the ADBC driver's own, newer one) must store the same: they do for these forms, but differ
    on text holding a NUL in a NUMERIC column ('0\x00…' becomes 0 in the newer), which only
    dates and booleans have, and those never come here as such text."""
    dtype = values.dtype
    if isinstance(dtype, pd.ArrowDtype) and pa.types.is_decimal(dtype.pyarrow_dtype):
        return pc.cast(pa.array(values), pa.string())
    if pd.api.types.is_datetime64_any_dtype(dtype):
        days = values.to_numpy().astype("datetime64[D]")  # NaT → null; Arrow writes ISO dates
        return pc.cast(pa.array(days, pa.date32(), from_pandas=True), pa.string())
    if pd.api.types.is_bool_dtype(dtype):
        return pa.array(np.where(values.to_numpy(dtype=bool), "1", "0"), pa.string())
    if pd.api.types.is_integer_dtype(dtype):
        return pc.cast(pa.array(values), pa.string())
    return pa.array(values, pa.string(), from_pandas=True)  # NaN/None/NA → null


def _contiguous(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Arrow-backed columns of concatenated frames come chunked; the kernels below want one."""
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _wire(frame: pd.DataFrame) -> tuple[list[str], list[pa.Array]]:
    """The frame's column names and its columns as `wire_column` text, one array each."""
    columns = list(frame.columns)
    return columns, [_contiguous(wire_column(frame[c])) for c in columns]


def bulk_insert(conn: Connection, table: sa.Table, frame: pd.DataFrame) -> None:
    """Insert `frame` (columns named like `table`'s) in one bulk operation per dialect."""
    if frame.empty:
        return
    columns, wire = _wire(frame)
    if conn.dialect.name == "postgresql":
        _copy(conn, table.name, columns, wire)
        return
    _sqlite_insert(conn, table.name, columns, wire)


def _sqlite_insert(conn: Connection, name: str, columns: list[str], wire: list[pa.Array]) -> None:
    """SQLite executemany, `_WRITE_BATCH` rows at a time, every value bound as text or NULL.

    The cost is binding Python objects, value by value, in the sqlite3 module, so as few and as
    cheap ones as possible are made: a column NULL throughout a batch is a literal NULL in the
    statement, a NULL is bound as NaN (see `_SQLITE_NULL`), and a column of few distinct values
    shares one string object per value. The garbage collector is paused meanwhile: the batch's
    row tuples would otherwise trigger collections that scan every live object, for nothing.
    """
    names = ", ".join(f'"{c}"' for c in columns)
    shared = [_few_distinct(values) for values in wire]
    with _gc_paused():
        for start in range(0, len(wire[0]), _WRITE_BATCH):
            part = [values.slice(start, _WRITE_BATCH) for values in wire]
            bound = [i for i, values in enumerate(part) if values.null_count < len(values)]
            marks = ", ".join("?" if i in bound else "NULL" for i in range(len(columns)))
            insert = f'INSERT INTO "{name}" ({names}) VALUES ({marks})'
            cells = [_bind_values(part[i], shared[i], start) for i in bound]
            rows: list[tuple[Any, ...]] = (
                list(zip(*cells, strict=True)) if cells else [()] * len(part[0])
            )
            conn.exec_driver_sql(insert, rows)


def _few_distinct(values: pa.Array) -> tuple[np.ndarray, pa.Array] | None:
    """(one Python string per distinct value, NaN last; each row's index into it) when the
    column has few distinct values (`_FEW_DISTINCT`), else None."""
    sample = values.slice(0, _SAMPLE)  # most columns are nearly unique: hash them only once
    if len(pc.unique(sample)) * _FEW_DISTINCT > len(sample):
        return None
    encoded = pc.dictionary_encode(values)
    distinct = len(encoded.dictionary)
    if distinct * _FEW_DISTINCT > len(values) or distinct > _WRITE_BATCH:  # memory: ≤ a batch
        return None
    words = np.append(encoded.dictionary.to_numpy(zero_copy_only=False), _SQLITE_NULL)
    return words, pc.fill_null(encoded.indices, len(words) - 1)


def _bind_values(
    values: pa.Array, shared: tuple[np.ndarray, pa.Array] | None, start: int
) -> list[Any]:
    """The Python values to bind for one batch of a wire column: str, or NaN for NULL."""
    if shared is not None:
        words, indices = shared
        return words[indices.slice(start, len(values)).to_numpy()].tolist()
    if not values.null_count:
        return values.to_pylist()
    cells = values.to_numpy(zero_copy_only=False)
    cells[values.is_null().to_numpy(zero_copy_only=False)] = _SQLITE_NULL
    return cells.tolist()


@contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _copy(conn: Connection, name: str, columns: list[str], wire: list[pa.Array]) -> None:
    """PostgreSQL COPY in text format, the lines built with Arrow kernels (no per-row Python).

    Each batch goes to the driver as the bytes Arrow built (the text was decoded to a Python
    str, a newline appended and encoded again: three copies of every batch, ~1/4 of the
    client's COPY time). The lines are built a batch at a time: built for the whole frame at
    once they held two more copies of its text (+~50 MB per 50,000-row chunk at peak, which the
    check then reached with a chunk written behind it, `FileLoad`)."""
    escaped = [pc.fill_null(_copy_escaped(values), "\\N") for values in wire]
    names = ", ".join(f'"{c}"' for c in columns)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f'COPY "{name}" ({names}) FROM STDIN') as copy:
        for start in range(0, len(escaped[0]), _WRITE_BATCH):
            lines = pc.binary_join_element_wise(
                *(values.slice(start, _WRITE_BATCH) for values in escaped), "\t"
            )
            lines = pc.binary_join_element_wise(lines, "", "\n")  # each line with its end
            body = pc.binary_join(pa.ListArray.from_arrays([0, len(lines)], lines), "")
            copy.write(memoryview(body[0].as_buffer()))


def _copy_escaped(values: pa.Array) -> pa.Array:
    """`values` with COPY's text-format escapes, when any value needs one.

    Four `replace_substring` passes copied every text column whole, though almost no value
    holds a backslash or a control character: 1.45 s CPU on 1,000,000 rows, where one numpy
    look at the column's bytes takes 0.1-0.25 s. Any byte below 0x20 (not only tab, newline
    and carriage return) or a backslash anywhere in the buffer (a slice's neighbours too)
    sends the column through the replacements: a needless pass at worst, never a missed one.
    """
    data = values.buffers()[2] if pa.types.is_string(values.type) else None
    if data is not None and values.null_count < len(values):
        raw = np.frombuffer(data, dtype=np.uint8)
        if len(raw) and raw.min() >= 0x20 and not (raw == ord("\\")).any():
            return values
    for old, new in _COPY_ESCAPES:
        values = pc.replace_substring(values, old, new)
    return values


def raw_json(frame: pd.DataFrame) -> list[str]:
    """One JSON object per row, keys as the file's headers (vectorised by pandas)."""
    if frame.empty:
        return []
    text = frame.to_json(orient="records", lines=True, force_ascii=False, date_format="iso")
    # JSON escapes line feeds inside strings, so "\n" only ever ends a record.
    return text.rstrip("\n").split("\n")


# --- SQLite staging from Arrow -----------------------------------------------------------------

_STAGE_SCHEMA = "creditpipe_stage"  # the staging file's name on the load's connection
_STAGE_PREFIX = "creditpipe-stage-"  # then the loading process's id: `_sweep` reads it back
# A scratch file: a crash loses nothing the store needs, so no journal and no syncs.
_STAGE_PRAGMAS = ("page_size = 65536", "journal_mode = OFF", "synchronous = OFF")


def _sqlite_file(conn: Connection) -> bool:
    return db.sqlite_file(conn.engine.url)


def _sweep(parent: Path) -> None:
    """Remove the staging folders of loads whose process is gone (killed before its `close`:
    SIGKILL, the OOM killer), ~0.5 GB per 1,000,000 rows each. A live process's are kept."""
    for folder in parent.glob(f"{_STAGE_PREFIX}*-*"):
        pid = folder.name.removeprefix(_STAGE_PREFIX).split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            log.warning("清理已结束进程 %s 留下的入库暂存目录 %s", pid, folder)
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:  # alive, another user's
            continue


def _staging_error(exc: BaseException, folder: Path) -> CreditpipeError:
    text = str(exc).strip()
    detail = text.splitlines()[0] if text else type(exc).__name__
    return CreditpipeError(message("E_STAGING", detail=detail, folder=folder), code="E_STAGING")


class _ArrowStage:
    """A SQLite load's staged rows, written from Arrow into a private file by the ADBC SQLite
    driver, then attached to the load's connection (as `_STAGE_SCHEMA`) for the merge.

    The sqlite3 module binds one Python object per value: staging a 1,000,000-row file that
    way (`executemany`) cost ~6 s, most of it making and binding the objects (3.0 µs a row of
    24 text values, against 0.24 µs for SQLite to insert the same row from a table). ADBC binds
    the Arrow buffers in C, without the GIL: 1.6 s for the same rows.

    ADBC brings its own copy of the SQLite library. Two copies of SQLite in one process must
    never have the same file open at once: closing a descriptor in one drops the POSIX locks
    the other holds on that file (https://www.sqlite.org/howtocorrupt.html, 2.2.1). So ADBC
    never opens the store; the staging file is new, in a folder of its own, only ADBC has it
    open while rows are staged, and ADBC has closed it before the store's connection attaches
    it (SQLite allows ATTACH inside the load's transaction). The file is scratch: it is not
    part of the store's transaction, and `close` removes it however the load ended.
    """

    def __init__(self, contract: Contract, name: str) -> None:
        self.name = name
        parent = Path(tempfile.gettempdir())
        _sweep(parent)
        try:
            self.folder = Path(tempfile.mkdtemp(prefix=f"{_STAGE_PREFIX}{os.getpid()}-"))
        except OSError as exc:
            raise _staging_error(exc, parent) from exc
        self.path = self.folder / "stage.db"
        self._adbc: Any = None
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="creditpipe-stage")
        self._pending: Future[None] | None = None
        try:
            with self._failing():
                self._adbc = adbc_sqlite.connect(str(self.path), autocommit=True)
            ddl = CreateTable(staging_table(contract, name, schema="main"))
            with self._failing(), self._adbc.cursor() as cursor:
                for pragma in _STAGE_PRAGMAS:  # the page size before the first table
                    cursor.execute(f"PRAGMA {pragma}")
                    cursor.fetchall()
                cursor.execute(str(ddl.compile(dialect=sqlite.dialect())))
        except BaseException:
            self.close()
            raise

    def append(self, frame: pd.DataFrame) -> None:
        """Stage rows (columns named like the staging table's), as `bulk_insert` would. The
        rows are written by a thread while the caller goes on (ADBC works without the GIL);
        one batch at a time, so at most two are held: the one being written and the next."""
        columns, wire = _wire(frame)
        rows = pa.Table.from_arrays(wire, names=columns)
        self._wait()
        self._pending = self._writer.submit(self._ingest, rows)

    def _ingest(self, rows: pa.Table) -> None:
        with self._failing(), self._adbc.cursor() as cursor:
            # One transaction per batch, begun here (the connection is in autocommit: the
            # PRAGMAs cannot change inside a transaction): a failed write is then reported in
            # SQLite's own words ("disk I/O error", "database or disk is full"), not as the
            # driver's failed rollback of a transaction autocommit never began.
            cursor.execute("BEGIN")
            cursor.adbc_ingest(self.name, rows, mode="append")
            cursor.execute("COMMIT")

    @contextmanager
    def _failing(self) -> Iterator[None]:
        """The driver's errors writing the file (a full disk, a file size limit, a folder that
        cannot be written) as E_STAGING; a statement it refuses is a bug, raised as it is."""
        try:
            yield
        except (adbc_dbapi.ProgrammingError, adbc_dbapi.NotSupportedError):
            raise
        except (adbc_dbapi.Error, OSError) as exc:
            raise _staging_error(exc, self.folder.parent) from exc

    def _wait(self) -> None:
        """Until the batch being written is in the file (its error raised here, if any)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def attach(self, conn: Connection) -> None:
        """Close the ADBC side, then attach the file to `conn` (the merge only reads it). The
        connection leaves the pool first (it is closed when the caller's transaction ends), so
        no later load finds the name taken, whatever happens from here."""
        self._wait()
        self._close_adbc()
        conn.detach()  # first: however ATTACH or what follows ends, the pool never gets it back
        conn.exec_driver_sql(f"ATTACH DATABASE ? AS {_STAGE_SCHEMA}", (str(self.path),))

    def close(self) -> None:
        """Close the ADBC side and remove the folder. Call it once the load's connection has
        closed (`etl.run._load` does, after the transaction): an attached file unlinked
        earlier would stay readable but no longer writable."""
        self._close_adbc()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _close_adbc(self) -> None:
        self._writer.shutdown(wait=True)  # a batch still being written (a failed load) ends first
        self._pending = None
        if self._adbc is not None:
            adbc, self._adbc = self._adbc, None
            adbc.close()


# --- the sink --------------------------------------------------------------------------------


class FileLoad:
    """Stages one file's rows on `conn` and merges them; see the module docstring. `close` it
    however the load ends (it may hold a staging file)."""

    def __init__(self, conn: Connection, contract: Contract, source_file_id: int) -> None:
        self.conn = conn
        self.contract = contract
        self.source_file_id = source_file_id
        self.fields = [f.name for f in contract.fields]
        name = f"stage_{contract.dataset}"
        self._arrow = _ArrowStage(contract, name) if _sqlite_file(conn) else None
        self._behind: WriteBehind | None = None  # PostgreSQL: the COPYs of the check
        try:
            self.stage = staging_table(
                contract, name, schema=_STAGE_SCHEMA if self._arrow is not None else None
            )
            self.plan = plan_table(f"plan_{contract.dataset}")
            for table in (self.plan,) if self._arrow is not None else (self.stage, self.plan):
                table.drop(conn, checkfirst=True)
                table.create(conn)
        except BaseException:
            self.close()
            raise
        self.rejected_rows = 0
        self.headers = {f.name: f.title for f in contract.fields}  # the file's, from `finish`
        self.late_rejections = empty_rejections()  # found only against the store (lifecycle)
        self._dropped: list[int] = []  # rows `finish` names: the merge unstages them
        if conn.dialect.name == "postgresql":
            # The check's rows are COPYed in a thread of their own while the next chunk is
            # checked: building the COPY text (Arrow kernels) and sending it run without the
            # GIL, and the server parses it meanwhile. 1M rows: check and staging 13.8–14.3 →
            # 10.6–11.3 s (README › Benchmarks).
            # Only this thread uses the connection until `settle`; SQLite stages through
            # `_ArrowStage`'s own thread instead.
            self._behind = WriteBehind(f"creditpipe-copy-{contract.dataset}", backlog=1)

    def settle(self) -> None:
        """Wait for the rows still being written; raise the first error writing them. Before
        anything else uses the connection (`merge` does it first)."""
        if self._behind is not None:
            self._behind.close()  # interrupted, or its error raised: `abandon` still stops it
            self._behind = None

    def abandon(self) -> None:
        """Stop writing (the load failed): returns once nothing more goes to the connection,
        so the caller's rollback cannot meet a COPY still under way."""
        if self._behind is not None:
            self._behind.discard()
            self._behind = None

    @contextmanager
    def writing(self) -> Iterator[None]:
        """The block that writes the rows (the check). Leaving it, every row written behind is
        in (`settle`, its error raised); failing in it, nothing more goes to the connection
        (`abandon`), so the caller's rollback cannot meet a COPY under way."""
        try:
            yield
            self.settle()
        except BaseException:
            self.abandon()
            raise

    def close(self) -> None:
        """Stop writing and remove the staging file, if any (the temporary tables end with the
        connection or are dropped by `merge`)."""
        self.abandon()
        if self._arrow is not None:
            self._arrow.close()

    def _insert(self, table: sa.Table, frame: pd.DataFrame) -> None:
        """`bulk_insert`, behind the check when a thread writes (`_behind`), else now."""
        if self._behind is not None:
            self._behind.submit(bulk_insert, self.conn, table, frame)
        else:
            bulk_insert(self.conn, table, frame)

    # AcceptedSink ------------------------------------------------------------------------

    def write(self, frame: pd.DataFrame) -> None:
        """Stage a chunk of accepted, typed rows."""
        if frame.empty:
            return
        staged = frame[self.fields].copy()
        staged["source_row"] = frame[ROW].to_numpy()
        staged["revoked"] = self._revoked(frame)
        if self._arrow is not None:
            self._arrow.append(staged)
        else:
            self._insert(self.stage, staged)

    def reject(self, rows: np.ndarray, raw: pd.DataFrame) -> None:
        """Keep rejected rows as the file had them: headers as written → cell text."""
        if len(rows):
            self._keep_rejected(rows, raw_json(raw))

    def finish(self, dropped_rows: np.ndarray, headers: dict[str, str]) -> None:
        """Rows found to repeat a key later in the file: `merge` moves them to the rejected
        rows (their values as normalised, under the file's headers) once they are planned."""
        self.headers = headers
        self._dropped = [int(r) for r in dropped_rows]

    def _unstage(self, rows: list[int]) -> None:
        """Move planned rows to the rejected rows (values as normalised, the file's headers):
        out of the plan, so the merge leaves them; the staging table itself is only read (a
        SQLite staging file then takes no write, no journal and no sync at commit)."""
        for start in range(0, len(rows), _IN_BATCH):
            part = rows[start : start + _IN_BATCH]
            where = self.stage.c.source_row.in_(part)
            columns = [self.stage.c.source_row, *(self.stage.c[f] for f in self.fields)]
            staged = pd.read_sql(sa.select(*columns).where(where), self.conn, coerce_float=False)
            values = staged[self.fields]
            named = values.astype("str").where(values.notna(), None)
            named = named[[f for f in self.fields if f in self.headers]].rename(
                columns=self.headers
            )
            self._keep_rejected(staged["source_row"].to_numpy(), raw_json(named))
            self.conn.execute(sa.delete(self.plan).where(self.plan.c.source_row.in_(part)))

    def _keep_rejected(self, rows: np.ndarray, raw: list[str]) -> None:
        frame = pd.DataFrame(
            {"source_file_id": self.source_file_id, "row_number": rows, "raw": raw}
        )
        self._insert(rejected_row, frame)
        self.rejected_rows += len(frame)

    def _revoked(self, frame: pd.DataFrame) -> pd.Series:
        rule = self.contract.revocation
        revoked = pd.Series(False, index=frame.index)
        if rule.field:
            revoked |= frame[rule.field].isin(rule.values).fillna(False).astype(bool)
        if rule.remark_field:
            remarks = frame[rule.remark_field]
            for prefix in rule.remark_prefixes:
                revoked |= remarks.str.startswith(prefix).fillna(False).astype(bool)
        return revoked

    # Rejections and merge ----------------------------------------------------------------

    def add_rejections(self, rejections: pd.DataFrame) -> None:
        """Store the file's rejection reasons (several per row possible)."""
        frame = rejections.rename(columns={"row": "row_number"})[
            ["row_number", "field", "code", "message", "value"]
        ].copy()
        frame.insert(0, "source_file_id", self.source_file_id)
        bulk_insert(self.conn, rejection, frame)

    def merge(self) -> MergeCounts:
        """Apply the staged rows as the versioned upsert; returns what changed.

        The versions' time (`valid_from` of the new ones, `valid_to` of those they close) is
        taken here, once the merge holds the dataset's lock (SQLite: the write lock held since
        BEGIN IMMEDIATE), so it only ever increases: a file retried later, or one that waited
        for the lock, can never close a version before that version opened.
        """
        self.settle()
        conn, stage, key = self.conn, self.stage, self.contract.natural_key
        versions = record_table(self.contract.dataset)
        # Every new version cites this file. PostgreSQL has no foreign key doing a look-up per
        # version (0005_version_source_file_guard): this one stands for them all, and the
        # file's row stays locked to the end of the transaction (the caller may have locked it
        # already, as `etl.run._load` does: locking it again changes nothing).
        files.lock_for_load(conn, self.source_file_id)
        if self._arrow is not None:
            self._arrow.attach(conn)
        if conn.dialect.name == "postgresql":
            # Temporary tables are never auto-analysed: without statistics the planner guesses
            # a handful of rows and picks nested loops over a million.
            conn.exec_driver_sql(f'ANALYZE "{stage.name}"')
            # The classifying join hashes the wide staged rows (every field is compared): with
            # the default 4 MB it ran in 128 batches, each spilled to temporary files and read
            # back. 256 MB (x hash_mem_multiplier) for this transaction only (SET LOCAL ends at
            # COMMIT or ROLLBACK), and one merge per dataset runs at a time (the advisory lock
            # below): resend of 1,000,000 rows -18 % server CPU in the merge.
            conn.exec_driver_sql(f"SET LOCAL work_mem = '{_PG_MERGE_WORK_MEM}'")
            # One merge per dataset at a time (parallel workers stage concurrently).
            conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
                {"name": versions.name},
            )
        received_at = files.utcnow()
        # One pass classifies every staged row into a narrow plan table (rewriting the wide
        # staging rows with UPDATEs would cost a full copy of them per statement).
        plan = self.plan
        state = sa.case((stage.c.revoked, WITHDRAWN), else_=ACTIVE)
        identical = sa.and_(
            versions.c.id.is_not(None),
            versions.c.state == state,
            *(versions.c[f].is_not_distinct_from(stage.c[f]) for f in self.fields),
        )
        current = sa.and_(
            *(versions.c[k] == stage.c[k] for k in key), versions.c.valid_to.is_(None)
        )
        conn.execute(
            plan.insert().from_select(
                ["source_row", "prev_id", "prev_version", "unchanged", "revoked"],
                sa.select(
                    stage.c.source_row,
                    versions.c.id,
                    versions.c.version,
                    sa.case((identical, sa.true()), else_=sa.false()),
                    stage.c.revoked,
                ).select_from(stage.outerjoin(versions, current)),
            )
        )
        self._unstage(self._dropped)  # before anything reads the plan
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f'ANALYZE "{plan.name}"')
        if self.contract.lifecycle is not None:
            self._reject_transitions(versions)
        changed = plan.c.unchanged.is_(False)
        conn.execute(
            versions.update()
            .values(valid_to=received_at)
            .where(
                versions.c.id.in_(
                    sa.select(plan.c.prev_id).where(changed, plan.c.prev_id.is_not(None))
                )
            )
        )
        conn.execute(
            versions.insert().from_select(
                ["version", "state", "valid_from", "source_file_id", "source_row", *self.fields],
                sa.select(
                    sa.func.coalesce(plan.c.prev_version, 0) + 1,
                    state,
                    sa.literal(received_at, sa.DateTime),
                    sa.literal(self.source_file_id, sa.BigInteger),
                    stage.c.source_row,
                    *(stage.c[f] for f in self.fields),
                )
                .select_from(stage.join(plan, plan.c.source_row == stage.c.source_row))
                .where(changed),
            )
        )
        counts = self._counts()
        # A store file's connection has left the pool (`_ArrowStage.attach`): the staging file,
        # and the plan in its temporary database, go with it when the caller's transaction
        # ends. DROP would free a temporary table page by page, reading each back (1.5 s of a
        # 1,000,000-row load); the next load opens another connection (a few PRAGMAs). An
        # in-memory store lives only as long as its connection: there, and on PostgreSQL, the
        # tables are dropped.
        if self._arrow is None:
            stage.drop(conn)
            plan.drop(conn)
        return counts

    def _reject_transitions(self, versions: sa.Table) -> None:
        """E_STATUS_TRANSITION: a new status the stored one cannot lead to (contract lifecycle)."""
        lifecycle = self.contract.lifecycle
        assert lifecycle is not None
        stage, plan, field = self.stage, self.plan, lifecycle.field
        allowed = sa.or_(
            *(
                sa.and_(versions.c[field] == before, stage.c[field] == after)
                for before, after in lifecycle.allowed_pairs()
            )
        )
        key = self.contract.natural_key
        query = (
            sa.select(
                stage.c.source_row,
                versions.c[field].label("before"),
                stage.c[field].label("after"),
                *(stage.c[k] for k in key),
            )
            .select_from(
                stage.join(plan, plan.c.source_row == stage.c.source_row).join(
                    versions, versions.c.id == plan.c.prev_id
                )
            )
            .where(sa.not_(allowed))
        )
        bad = pd.read_sql(query, self.conn)
        if bad.empty:
            return
        titles = self.contract.titles()
        key_label = "+".join(f"「{titles[k]}」" for k in key)
        targets = {
            s: "、".join(t) or "（无，已是最终状态）" for s, t in lifecycle.transitions.items()
        }
        self.late_rejections = pd.DataFrame(
            {
                "row": bad["source_row"].astype("int64"),
                "field": titles[field],
                "code": "E_STATUS_TRANSITION",
                "message": [
                    message(
                        "E_STATUS_TRANSITION",
                        field=titles[field],
                        before=b,
                        after=a,
                        key=key_label,
                        allowed=targets.get(b, "（无）"),
                    )
                    for b, a in zip(bad["before"], bad["after"], strict=True)
                ],  # fmt: skip
                "value": bad["after"].astype("str"),
            }
        )
        self._unstage([int(r) for r in bad["source_row"]])

    def _counts(self) -> MergeCounts:
        plan = self.plan
        kind = sa.case(
            (plan.c.unchanged.is_(True), "unchanged"),
            (plan.c.revoked, "withdrawn"),
            (plan.c.prev_id.is_(None), "inserted"),
            else_="corrected",
        ).label("kind")
        found: dict[str, Any] = dict(
            self.conn.execute(sa.select(kind, sa.func.count()).group_by(kind)).all()
        )
        return MergeCounts(**{k: int(v) for k, v in found.items()})
