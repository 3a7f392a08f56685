"""The delta of a publication against the previous one: ADD, MOD and DEL rows by natural key.

`<dataset>.delta.parquet|csv` hold the ADD (new key) and MOD (same key, other content) rows in
snapshot order, then the DEL rows (key gone, only the key columns filled) in the previous
publication's order (DESIGN.md, “Published extract contract”).

Both snapshots are written in key order (the natural key in code-point order, extract.py), so the
delta is a merge and memory holds a chunk of each side, whatever the size of the store:

- while the snapshot is written, each chunk is matched against the previous snapshot's rows up to
  the chunk's last key, read from its Parquet file in batches; the chunk's ADD and MOD rows go
  straight to the delta files;
- at close, a second merge over the key columns of both Parquet files finds the DEL rows.

“Other content” compares what consumers see: every column as text (`text.as_text`), position by
position; a previous snapshot with another number of columns (a contract change) makes every
kept key a MOD.

Row groups: the ADD and MOD rows of each `chunk_rows` stretch of the snapshot make one row group,
the DEL rows of each `chunk_rows` stretch of the previous snapshot another, so the files depend
only on the two snapshots and a republication is byte-identical.

Should either file not be in strict key order — a key holding NUL (the separator of multi-column
keys), a public key changed by ID redaction, a previous publication written in another order —
a merge would be wrong: the delta is then recomputed from both written files with an in-memory
index of two 64-bit hashes per row (memory grows with the snapshot), and a warning says so.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from etl.publish.extract import Column
from etl.publish.files import HashedFile
from etl.publish.text import CsvFile, as_text, neutralise

log = logging.getLogger(__name__)
OPS = ("ADD", "MOD", "DEL")
OP_COLUMN = Column("op", "变更类型", "", pa.string())
_SAME, _ADD, _MOD, _DEL = 0, 1, 2, 3  # op codes; _SAME rows are not in the delta
_OP_TEXT = pa.array(["", *OPS], pa.string())
_SEPARATOR = "\x00"  # joins the columns of a key: below every other character, so order holds


class OutOfOrder(Exception):
    """A file is not in strict key order: the merge cannot be used."""


class Delta:
    """Writes `<dataset>.delta.parquet|csv` in `folder` against the snapshot in `previous` (a
    publication folder, or None for the first one: every row an ADD)."""

    def __init__(
        self,
        folder: Path,
        dataset: str,
        columns: list[Column],
        key: list[str],
        previous: Path | None,
        chunk_rows: int,
    ) -> None:
        self.folder, self.dataset, self.columns, self.key = folder, dataset, columns, key
        self.previous = previous / f"{dataset}.parquet" if previous is not None else None
        self.chunk_rows = chunk_rows
        self.table_schema = pa.schema([c.arrow_field() for c in columns])
        schema = pa.schema([OP_COLUMN.arrow_field(), *self.table_schema])
        self.schema = schema.with_metadata({"dataset": dataset, "delta": "true"})
        self.merging = True
        self._open()
        # The previous snapshot is read a fifth of a chunk at a time, to hold little of it (its
        # batches' size changes no output: only the snapshot's chunks and the files' order do).
        reading = max(1, chunk_rows // 5)
        self._old = _KeyOrdered(self.previous, key, reading) if self.previous else None
        self._last: str | None = None  # the snapshot's last key so far

    def _open(self) -> None:
        self.file = HashedFile(self.folder / f"{self.dataset}.delta.parquet")
        self.parquet = pq.ParquetWriter(self.file, self.schema)
        self.csv = CsvFile(
            self.folder / f"{self.dataset}.delta.csv", self.columns, extra=[OP_COLUMN.title]
        )
        self.counts = dict.fromkeys(OPS, 0)
        self._position = 0  # snapshot rows seen
        self._pending: list[pa.Table] = []  # ADD and MOD rows of the current row group

    def add(self, table: pa.Table, text: pa.Table, safe: list[pa.Array]) -> None:
        """A chunk of the snapshot as written: typed, as text, and as its CSV cells."""
        if not self.merging:
            return
        try:
            codes = self._match(text)
        except OutOfOrder as exc:
            self._give_up(exc)
            return
        self._collect(table, safe, codes)

    def close(self, snapshot: Path) -> dict[str, int]:
        """Finish with the DEL rows; `snapshot` is the written snapshot's Parquet file."""
        if self._old is not None:
            self._old.close()
        if self.merging:
            self._flush()
            try:
                self._deleted(snapshot)
            except OutOfOrder as exc:
                self._give_up(exc)
        if not self.merging:
            self._by_index(snapshot)
        self._close_files()
        return self.counts

    @property
    def hashes(self) -> dict[str, str]:
        """The SHA-256 of both delta files, by name, hashed as written (once closed)."""
        return {self.file.path.name: self.file.sha256, self.csv.handle.path.name: self.csv.sha256}

    def _close_files(self) -> None:
        self.parquet.close()
        self.file.close()
        self.csv.close()

    # --- the merge -----------------------------------------------------------------------------

    def _match(self, text: pa.Table) -> np.ndarray:
        """The op code of each row of a snapshot chunk."""
        keys = _key_text(text, self.key)
        self._last = _check_order(keys, self._last)
        codes = np.full(len(keys), _ADD, np.int8)
        if self._old is None or not len(keys):
            return codes
        for old_keys, old_text in self._old.upto(keys[-1].as_py()):
            where = pc.index_in(old_keys, value_set=keys)
            hit = where.is_valid()
            if not pc.any(hit).as_py():
                continue
            at = where.filter(hit).to_numpy(zero_copy_only=False)
            same = _same_rows(text.take(at), old_text.filter(hit))
            codes[at] = np.where(same, _SAME, _MOD)
        return codes

    def _deleted(self, snapshot: Path) -> None:
        """Write the DEL rows: keys of the previous snapshot the new one lacks."""
        if self.previous is None:
            return
        current = _KeyOrdered(snapshot, self.key, self.chunk_rows, key_only=True)
        last = None
        try:
            for batch in _batches(self.previous, self.chunk_rows, self.key):
                keys = _key_text(as_text(pa.Table.from_batches([batch])), self.key)
                last = _check_order(keys, last)
                found = np.zeros(len(keys), bool)
                for new_keys, _ in current.upto(keys[-1].as_py()):
                    found |= pc.is_in(keys, value_set=new_keys).to_numpy(zero_copy_only=False)
                self._write_deleted(batch, ~found)
        finally:
            current.close()

    # --- writing -------------------------------------------------------------------------------

    def _collect(self, table: pa.Table, safe: list[pa.Array], codes: np.ndarray) -> None:
        """Write the ADD and MOD rows of a snapshot chunk: to the CSV at once, to Parquet one row
        group per `chunk_rows` stretch of the snapshot."""
        keep = codes != _SAME
        if keep.any():
            ops = _OP_TEXT.take(pa.array(codes[keep]))
            mask = None if keep.all() else pa.array(keep)
            self.csv.write_safe([ops, *(s if mask is None else s.filter(mask) for s in safe)])
            self.counts["ADD"] += int((codes == _ADD).sum())
            self.counts["MOD"] += int((codes == _MOD).sum())
        start, n, cut = self._position, table.num_rows, 0
        while cut < n:
            end = min(n, ((start + cut) // self.chunk_rows + 1) * self.chunk_rows - start)
            part = keep[cut:end]
            if part.any():
                rows = table.slice(cut, end - cut)
                if not part.all():
                    rows = rows.filter(pa.array(part))
                self._pending.append(self._with_op(rows, codes[cut:end][part]))
            cut = end
            if (start + cut) % self.chunk_rows == 0:
                self._flush()
        self._position += n

    def _flush(self) -> None:
        if self._pending:
            rows = pa.concat_tables(self._pending).combine_chunks()
            self.parquet.write_table(rows, row_group_size=max(rows.num_rows, 1))
            self._pending = []

    def _write_deleted(self, batch: pa.RecordBatch, gone: np.ndarray) -> None:
        """DEL rows of a stretch of the previous snapshot: the key columns, the rest null."""
        if not gone.any():
            return
        rows = pa.Table.from_batches([batch]).filter(pa.array(gone))
        blank = [
            rows.column(c.name) if c.name in self.key else pa.nulls(rows.num_rows, c.type)
            for c in self.columns
        ]
        table = self._with_op(
            pa.Table.from_arrays(blank, schema=self.table_schema),
            np.full(rows.num_rows, _DEL, np.int8),
        )
        self.parquet.write_table(table, row_group_size=max(table.num_rows, 1))
        self.csv.write(as_text(table))
        self.counts["DEL"] += rows.num_rows

    def _with_op(self, rows: pa.Table, codes: np.ndarray) -> pa.Table:
        ops = _OP_TEXT.take(pa.array(codes))
        return pa.Table.from_arrays([ops, *rows.columns], schema=self.schema)

    # --- when the files are not in key order ---------------------------------------------------

    def _give_up(self, exc: OutOfOrder) -> None:
        log.warning("%s 增量：%s；改用内存索引计算（内存随行数增长）", self.dataset, exc)
        self.merging = False
        self._close_files()

    def _by_index(self, snapshot: Path) -> None:
        """The delta from both written files with a hash index of every row (any order)."""
        self._open()  # starts the delta files again
        keys, hashes = _hashes_of(snapshot, self.key, self.chunk_rows)
        if self.previous is not None:
            old_keys, old_hashes = _hashes_of(self.previous, self.key, self.chunk_rows)
        else:
            old_keys, old_hashes = np.array([], np.uint64), np.array([], np.uint64)
        position = pd.Index(old_keys).get_indexer(keys) if len(old_keys) else np.full(len(keys), -1)
        is_add = position < 0
        before = old_hashes[position] if len(old_hashes) else hashes  # −1: masked below
        is_mod = ~is_add & (before != hashes)
        codes = np.where(is_add, _ADD, np.where(is_mod, _MOD, _SAME)).astype(np.int8)
        for batch in _batches(snapshot, self.chunk_rows):
            table = pa.Table.from_batches([batch])
            text = as_text(table)
            safe = [neutralise(text.column(i).combine_chunks()) for i in range(text.num_columns)]
            self._collect(table, safe, codes[self._position : self._position + len(table)])
        self._flush()
        if self.previous is not None:
            gone, offset = ~np.isin(old_keys, keys), 0
            for batch in _batches(self.previous, self.chunk_rows, self.key):
                self._write_deleted(batch, gone[offset : offset + batch.num_rows])
                offset += batch.num_rows


class _KeyOrdered:
    """A snapshot's Parquet file read in batches, handed out in pieces up to a key; raises
    OutOfOrder when its keys are not strictly increasing."""

    def __init__(self, path: Path, key: list[str], chunk_rows: int, *, key_only: bool = False):
        self.key = key
        # Without pre-buffering and threads the reader holds a column's pages at a time, not
        # whole row groups of every column (12 MB instead of 36 for a wide snapshot).
        self._file = pq.ParquetFile(path, pre_buffer=False)
        self._batches = self._file.iter_batches(
            batch_size=chunk_rows, columns=key if key_only else None, use_threads=False
        )
        self._carry: tuple[pa.Array, pa.Table] | None = None
        self._last: str | None = None

    def upto(self, bound: str) -> Iterator[tuple[pa.Array, pa.Table]]:
        """The next rows whose key is at most `bound`: (keys, rows as text)."""
        while True:
            if self._carry is None:
                self._carry = self._read()
                if self._carry is None:
                    return
            keys, text = self._carry
            below = pc.sum(pc.less_equal(keys, pa.scalar(bound, pa.string()))).as_py() or 0
            if below == len(keys):
                self._carry = None
                yield keys, text
                continue
            self._carry = keys.slice(below), text.slice(below)
            if below:
                yield keys.slice(0, below), text.slice(0, below)
            return

    def _read(self) -> tuple[pa.Array, pa.Table] | None:
        for batch in self._batches:
            if batch.num_rows:
                text = as_text(pa.Table.from_batches([batch]))
                keys = _key_text(text, self.key)
                self._last = _check_order(keys, self._last)
                return keys, text
        return None

    def close(self) -> None:
        self._file.close()


def _key_text(text: pa.Table, key: list[str]) -> pa.Array:
    """Each row's key as one string that sorts like the key's columns in turn."""
    parts = [text.column(name).combine_chunks() for name in key]
    for name, part in zip(key, parts, strict=True):
        if pc.any(pc.match_substring(part, _SEPARATOR)).as_py():
            raise OutOfOrder(f"键列 {name} 含有 NUL 字符")
    if len(parts) == 1:
        return parts[0]
    joined: pa.Array = pc.binary_join_element_wise(*parts, _SEPARATOR)
    return joined


def _check_order(keys: pa.Array, last: str | None) -> str | None:
    """Raise OutOfOrder unless `keys` strictly increase and follow `last`; the new last key."""
    n = len(keys)
    if not n:
        return last
    rising = pc.all(pc.greater(keys.slice(1), keys.slice(0, n - 1))).as_py() if n > 1 else True
    if not rising or (last is not None and not keys[0].as_py() > last):
        raise OutOfOrder("行未按主键严格递增排列")
    result: str = keys[-1].as_py()
    return result


def _same_rows(new: pa.Table, old: pa.Table) -> np.ndarray:
    """Row by row: do the two text tables hold the same cells, column by column?"""
    if new.num_columns != old.num_columns:
        return np.zeros(new.num_rows, bool)
    same = np.ones(new.num_rows, bool)
    for a, b in zip(new.columns, old.columns, strict=True):
        same &= pc.equal(a, b).to_numpy(zero_copy_only=False)
    return same


def _batches(
    path: Path, chunk_rows: int, columns: list[str] | None = None
) -> Iterator[pa.RecordBatch]:
    with pq.ParquetFile(path, pre_buffer=False) as source:
        yield from source.iter_batches(batch_size=chunk_rows, columns=columns, use_threads=False)


def _hashes_of(path: Path, key: list[str], chunk_rows: int) -> tuple[np.ndarray, np.ndarray]:
    keys, hashes = [], []
    for batch in _batches(path, chunk_rows):
        k, h = row_hashes(as_text(pa.Table.from_batches([batch])), key)
        keys.append(k)
        hashes.append(h)
    if not keys:
        return np.array([], np.uint64), np.array([], np.uint64)
    return np.concatenate(keys), np.concatenate(hashes)


def row_hashes(text: pa.Table, key: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A 64-bit hash of each row's key and of its whole content (pandas' vectorised hashing)."""
    frame = text.to_pandas()
    keys = pd.util.hash_pandas_object(frame[key], index=False).to_numpy(np.uint64)
    content = pd.util.hash_pandas_object(frame, index=False).to_numpy(np.uint64)
    return keys, content
