"""Writing one dataset's publication for one date: files, delta, descriptors, atomic commit.

`publish/<dataset>/<D>/` holds `<dataset>.parquet`, `<dataset>.csv`, `<dataset>.delta.parquet`,
`<dataset>.delta.csv`, `datapackage.json` and `manifest.json` (DESIGN.md, “Published extract
contract”). Everything is written into `.tmp-<D>-<pid>/` beside it, fsynced, then renamed into
place; `LATEST` is replaced last with an atomic `os.replace`. A crash leaves either the previous
state or the new complete folder; the next run removes stale temporary folders.

Reproducible: no wall-clock time goes into any file, rows come in a fixed order, Parquet row
groups follow the chunk size, so publishing D again gives byte-identical files and checksums.
Memory is bounded by the chunk: the snapshot is streamed, and the delta keeps two 64-bit hashes
per record (key and content), re-reading the written files for the rows it needs.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from etl.publish.extract import Column, as_arrow

DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")
OPS = ("ADD", "MOD", "DEL")
_FORMULA_STARTS = pa.array(["=", "+", "-", "@", "\t", "\r"])  # a spreadsheet would run these


@dataclass
class Written:
    """One dataset-date folder once committed."""

    dataset: str
    as_of: date
    folder: Path
    rows: int
    delta: dict[str, int]
    result: str  # published · unchanged (the folder already held exactly these files)
    manifest: dict[str, Any] = field(default_factory=dict)
    remote: str | None = None  # the object-store prefix, when CREDITPIPE_PUBLISH_URL is one

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "folder": str(self.folder),
            "manifest": str(self.folder / "manifest.json"),
            "remote": self.remote,
            "rows": self.rows,
            "delta": self.delta,
            "result": self.result,
        }


class Snapshot:
    """Streams chunks into `<dataset>.parquet` and `<dataset>.csv` in a temporary folder and
    keeps, per row, a hash of its key and of its published content (for the delta)."""

    def __init__(self, folder: Path, dataset: str, columns: list[Column], key: list[str]) -> None:
        self.folder, self.dataset, self.columns, self.key = folder, dataset, columns, key
        self.schema = pa.schema([c.arrow_field() for c in columns]).with_metadata(
            {"dataset": dataset}
        )
        self.parquet = pq.ParquetWriter(folder / f"{dataset}.parquet", self.schema)
        self.csv = CsvFile(folder / f"{dataset}.csv", columns)
        self.rows = 0
        self.keys: list[np.ndarray] = []
        self.hashes: list[np.ndarray] = []

    def write(self, frame: pd.DataFrame) -> None:
        table = as_arrow(frame, self.columns)
        self.parquet.write_table(table, row_group_size=max(len(table), 1))
        text = as_text(table)
        self.csv.write(text)
        keys, hashes = row_hashes(text, self.key)
        self.keys.append(keys)
        self.hashes.append(hashes)
        self.rows += len(table)

    def close(self) -> tuple[np.ndarray, np.ndarray]:
        self.parquet.close()
        self.csv.close()
        keys = np.concatenate(self.keys) if self.keys else np.array([], np.uint64)
        hashes = np.concatenate(self.hashes) if self.hashes else np.array([], np.uint64)
        return keys, hashes


class CsvFile:
    """UTF-8 CSV with Chinese headers in the contract's order; formula-leading cells get `'`."""

    def __init__(self, path: Path, columns: list[Column], extra: list[str] | None = None) -> None:
        titles = [*(extra or []), *(c.title for c in columns)]
        self.schema = pa.schema([pa.field(t, pa.string()) for t in titles])
        self.handle: IO[bytes] = path.open("wb")
        options = pacsv.WriteOptions(include_header=True, quoting_style="needed")
        self.writer = pacsv.CSVWriter(self.handle, self.schema, write_options=options)

    def write(self, text: pa.Table) -> None:
        safe = [_neutralise(text.column(i).combine_chunks()) for i in range(text.num_columns)]
        self.writer.write_table(pa.Table.from_arrays(safe, schema=self.schema))

    def close(self) -> None:
        self.writer.close()
        self.handle.close()


def _neutralise(values: pa.Array) -> pa.Array:
    first = pc.utf8_slice_codeunits(values, 0, 1)
    risky = pc.fill_null(pc.is_in(first, value_set=_FORMULA_STARTS), False)
    return pc.if_else(risky, pc.binary_join_element_wise("'", values, ""), values)


def as_text(table: pa.Table) -> pa.Table:
    """Every column as the text a consumer reads: ISO dates, decimals without trailing zeros,
    null as empty. The delta hashes this form, so it compares what consumers see."""
    out = []
    for i, column in enumerate(table.columns):
        kind = table.schema.field(i).type
        text = pc.cast(column, pa.string())
        if pa.types.is_decimal(kind):
            text = pc.replace_substring_regex(text, r"(\.\d*?)0+$", r"\1")
            text = pc.replace_substring_regex(text, r"\.$", "")
        out.append(pc.fill_null(text, ""))
    return pa.Table.from_arrays(out, names=table.column_names)


def row_hashes(text: pa.Table, key: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A 64-bit hash of each row's key and of its whole content (pandas' vectorised hashing)."""
    frame = text.to_pandas()
    keys = pd.util.hash_pandas_object(frame[key], index=False).to_numpy(np.uint64)
    content = pd.util.hash_pandas_object(frame, index=False).to_numpy(np.uint64)
    return keys, content


# --- delta -------------------------------------------------------------------------------------


def write_delta(
    folder: Path,
    dataset: str,
    columns: list[Column],
    key: list[str],
    current: tuple[np.ndarray, np.ndarray],
    previous: Path | None,
    chunk_rows: int,
) -> dict[str, int]:
    """`<dataset>.delta.parquet|csv`: ADD and MOD rows in snapshot order, then DEL rows (key
    only) in the previous publication's order; counts per op."""
    keys, hashes = current
    if previous is not None:
        old_keys, old_hashes = _hashes_of(previous / f"{dataset}.parquet", key, chunk_rows)
    else:
        old_keys, old_hashes = np.array([], np.uint64), np.array([], np.uint64)
    position = pd.Index(old_keys).get_indexer(keys) if len(old_keys) else np.full(len(keys), -1)
    is_add = position < 0
    before = old_hashes[position] if len(old_hashes) else hashes  # position −1: masked below
    is_mod = ~is_add & (before != hashes)
    gone = ~np.isin(old_keys, keys)

    op_column = Column("op", "变更类型", "", pa.string())
    schema = pa.schema([op_column.arrow_field(), *(c.arrow_field() for c in columns)])
    schema = schema.with_metadata({"dataset": dataset, "delta": "true"})
    parquet = pq.ParquetWriter(folder / f"{dataset}.delta.parquet", schema)
    csv = CsvFile(folder / f"{dataset}.delta.csv", columns, extra=[op_column.title])
    ops = np.where(is_add, "ADD", np.where(is_mod, "MOD", ""))
    offset = 0
    for batch in _batches(folder / f"{dataset}.parquet", chunk_rows):
        chosen = ops[offset : offset + batch.num_rows]
        offset += batch.num_rows
        keep = chosen != ""
        if keep.any():
            _write_ops(
                parquet, csv, schema, pa.Table.from_batches([batch]).filter(keep), chosen[keep]
            )
    if previous is not None and gone.any():
        offset = 0
        for batch in _batches(previous / f"{dataset}.parquet", chunk_rows):
            drop = gone[offset : offset + batch.num_rows]
            offset += batch.num_rows
            if drop.any():
                rows = pa.Table.from_batches([batch]).filter(drop)
                blank = [
                    rows.column(c.name) if c.name in key else pa.nulls(rows.num_rows, c.type)
                    for c in columns
                ]
                table = pa.Table.from_arrays(
                    blank, schema=pa.schema([c.arrow_field() for c in columns])
                )
                _write_ops(parquet, csv, schema, table, np.full(rows.num_rows, "DEL"))
    parquet.close()
    csv.close()
    return {"ADD": int(is_add.sum()), "MOD": int(is_mod.sum()), "DEL": int(gone.sum())}


def _write_ops(
    parquet: pq.ParquetWriter, csv: CsvFile, schema: pa.Schema, table: pa.Table, ops: np.ndarray
) -> None:
    with_op = pa.Table.from_arrays(
        [pa.array(ops.astype(object), pa.string()), *table.columns], schema=schema
    )
    parquet.write_table(with_op, row_group_size=max(with_op.num_rows, 1))
    csv.write(as_text(with_op))


def _batches(path: Path, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    with pq.ParquetFile(path) as source:
        yield from source.iter_batches(batch_size=chunk_rows)


def _hashes_of(path: Path, key: list[str], chunk_rows: int) -> tuple[np.ndarray, np.ndarray]:
    keys, hashes = [], []
    for batch in _batches(path, chunk_rows):
        k, h = row_hashes(as_text(pa.Table.from_batches([batch])), key)
        keys.append(k)
        hashes.append(h)
    if not keys:
        return np.array([], np.uint64), np.array([], np.uint64)
    return np.concatenate(keys), np.concatenate(hashes)


# --- descriptors -------------------------------------------------------------------------------

_FRICTIONLESS = {"string": "string", "date32[day]": "date", "int64": "integer"}


def frictionless_type(kind: pa.DataType) -> str:
    if pa.types.is_decimal(kind):
        return "number"
    return _FRICTIONLESS.get(str(kind), "string")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def datapackage(
    folder: Path, dataset: str, columns: list[Column], key: list[str], counts: dict[str, int]
) -> dict[str, Any]:
    """A Frictionless Data Package (v2) describing the four data files."""
    fields = [
        {"name": c.name, "title": c.title, "type": frictionless_type(c.type)}
        | ({"description": f"交换代码 {c.code}"} if c.code else {})
        for c in columns
    ]
    op_field = {
        "name": "op",
        "title": "变更类型",
        "type": "string",
        "constraints": {"enum": list(OPS)},
    }
    resources = []
    for name, fmt, delta in (
        (f"{dataset}.parquet", "parquet", False),
        (f"{dataset}.csv", "csv", False),
        (f"{dataset}.delta.parquet", "parquet", True),
        (f"{dataset}.delta.csv", "csv", True),
    ):
        path = folder / name
        resource: dict[str, Any] = {
            "name": name.replace(".", "-"),
            "type": "table",
            "path": name,
            "format": fmt,
            "mediatype": "text/csv" if fmt == "csv" else "application/vnd.apache.parquet",
            "bytes": path.stat().st_size,
            "hash": f"sha256:{sha256_of(path)}",
            "rows": counts[name],
            "schema": {
                "fields": ([op_field] if delta else []) + fields,
                # A snapshot has one row per key; a delta may repeat none either.
                "primaryKey": list(key),
            },
        }
        if fmt == "csv":
            resource["encoding"] = "utf-8"
            resource["dialect"] = {"header": True, "delimiter": ","}
        resources.append(resource)
    return {
        "$schema": "https://datapackage.org/profiles/2.0/datapackage.json",
        "name": dataset.replace("_", "-"),
        "resources": resources,
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(
        json.dumps(payload, ensure_ascii=False, indent=2, sort_keys=False) + "\n", "utf-8"
    )


# --- folders, lock, atomic commit --------------------------------------------------------------


@contextlib.contextmanager
def dataset_lock(root: Path) -> Iterator[None]:
    """One publisher per dataset folder at a time (also across processes)."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def clean_stale(root: Path) -> list[Path]:
    """Undo what a crashed publisher left (we hold the dataset lock): temporary folders and
    `LATEST` files are removed; a previous version moved aside (`.old-<D>-<pid>`) whose date
    folder is missing — the crash came between the two renames of `commit` — is put back."""
    stale = []
    for old in sorted(root.glob(".old-*")):
        final = root / old.name[len(".old-") :][: len("YYYY-MM-DD")]
        if old.is_dir() and not final.exists():
            os.rename(old, final)
        else:
            shutil.rmtree(old, ignore_errors=True)
        stale.append(old)
    for tmp in sorted(root.glob(".tmp-*")):
        shutil.rmtree(tmp, ignore_errors=True)
        stale.append(tmp)
    for latest in sorted(root.glob(".LATEST.*")):
        latest.unlink(missing_ok=True)
        stale.append(latest)
    return stale


def previous_folder(root: Path, day: date) -> Path | None:
    """The newest complete publication of this dataset before `day`."""
    dates = sorted(
        p.name for p in root.iterdir() if DATE_DIR.match(p.name) and (p / "manifest.json").is_file()
    )
    earlier = [d for d in dates if d < day.isoformat()]
    return root / earlier[-1] if earlier else None


def fsync_folder(folder: Path) -> None:
    for path in folder.iterdir():
        with path.open("rb") as fh:
            os.fsync(fh.fileno())
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(tmp: Path, final: Path) -> str:
    """Rename the finished temporary folder into place; `unchanged` when `final` already holds
    the same data (its manifest's file hashes are equal)."""
    if final.exists():
        if _same_data(tmp, final):
            shutil.rmtree(tmp)
            return "unchanged"
        old = final.parent / f".old-{final.name}-{os.getpid()}"
        os.rename(final, old)  # the date is briefly absent, never partial
        os.rename(tmp, final)
        shutil.rmtree(old)
    else:
        os.rename(tmp, final)
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return "published"


def _same_data(a: Path, b: Path) -> bool:
    try:
        return _hashes(a) == _hashes(b)
    except (OSError, ValueError, KeyError):
        return False


def _hashes(folder: Path) -> dict[str, str]:
    package = json.loads((folder / "datapackage.json").read_text("utf-8"))
    manifest = json.loads((folder / "manifest.json").read_text("utf-8"))
    files = {r["path"]: r["hash"] for r in package["resources"]}
    files["previous"] = str(manifest.get("previous_version"))
    return files


def point_latest(root: Path, day: date) -> bool:
    """Replace `LATEST` atomically with `day`, unless a newer date is already published (a
    backfill never moves LATEST back)."""
    latest = root / "LATEST"
    current = latest.read_text("utf-8").strip() if latest.is_file() else ""
    if current and current > day.isoformat():
        return False
    tmp = root / f".LATEST.{os.getpid()}"
    tmp.write_text(day.isoformat() + "\n", "utf-8")
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, latest)
    return True
