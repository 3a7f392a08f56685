"""Writing one dataset's publication for one date: files, delta, descriptors, atomic commit.

`publish/<dataset>/<D>/` holds `<dataset>.parquet`, `<dataset>.csv`, `<dataset>.delta.parquet`,
`<dataset>.delta.csv`, `datapackage.json` and `manifest.json` (DESIGN.md, “Published extract
contract”). Everything is written into `.tmp-<D>-<pid>/` beside it, fsynced, then renamed into
place; `LATEST` is replaced last with an atomic `os.replace`. A crash leaves either the previous
state or the new complete folder; the next run removes stale temporary folders.

Reproducible: no wall-clock time goes into any file, rows come in a fixed order, Parquet row
groups follow the chunk size, so publishing D again gives byte-identical files and checksums.
Memory is bounded by the chunk: the snapshot is streamed, and the delta (`delta.py`) is a merge
of the new snapshot's chunks with the previous snapshot's Parquet file, both in key order.
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
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from etl.overlap import WriteBehind
from etl.publish.delta import OPS, Delta
from etl.publish.extract import Column, arrow_column, column_values
from etl.publish.files import HashedFile
from etl.publish.text import CsvFile, neutralise, text_column

# Chunks prepared and waiting for the write-behind thread, per snapshot (memory: each holds its
# columns typed, as text and as CSV cells).
WRITE_BACKLOG = 1

DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


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


@dataclass(frozen=True)
class Prepared:
    """One column of a chunk in the three forms the files need: typed (Parquet), text (what the
    delta compares) and CSV cells (`neutralise`d text); `source` says where the frame column it
    came from lives in memory (`_memory`)."""

    source: tuple[object, ...] | None
    typed: pa.Array | pa.ChunkedArray
    text: pa.Array
    safe: pa.Array


class Snapshot:
    """Streams chunks into `<dataset>.parquet` and `<dataset>.csv` in a temporary folder, and
    the delta against the publication in `previous` into `<dataset>.delta.parquet|csv`
    (`delta.py`); chunks come in key order. Every file is hashed as it is written (`hashes`)."""

    def __init__(
        self,
        folder: Path,
        dataset: str,
        columns: list[Column],
        key: list[str],
        previous: Path | None,
        chunk_rows: int,
        *,
        behind: bool = True,
    ) -> None:
        self.folder, self.dataset, self.columns, self.key = folder, dataset, columns, key
        self.schema = pa.schema([c.arrow_field() for c in columns]).with_metadata(
            {"dataset": dataset}
        )
        self.path = folder / f"{dataset}.parquet"
        self.file = HashedFile(self.path)
        self.parquet = pq.ParquetWriter(self.file, self.schema)
        self.csv = CsvFile(folder / f"{dataset}.csv", columns)
        self.delta = Delta(folder, dataset, columns, key, previous, chunk_rows)
        self.chunk_rows = chunk_rows
        self.rows = 0
        self.counts: dict[str, int] = {}
        # `behind`: the files are encoded and written (Parquet, CSV, the delta's merge: mostly
        # without the GIL) in a thread of their own, one chunk behind the preparing of the next
        # in the caller's, so that on two cores the two overlap; else in the caller's thread.
        self._behind = (
            WriteBehind(f"creditpipe-write-{folder.name}", backlog=WRITE_BACKLOG)
            if behind
            else None
        )

    def write(
        self, frame: pd.DataFrame, like: dict[str, Prepared] | None = None
    ) -> dict[str, Prepared]:
        """One Parquet row group per call; the CSV and delta work a chunk at a time (the flag
        extract comes in one piece). `like`: what another audience's snapshot made of the same
        chunk; a column still holding the very same values (not masked, not redacted) is
        taken from it rather than converted, formatted and neutralised a second time. Returns
        this chunk's columns, for the next audience."""
        prepared = {c.name: _prepare(frame, c, (like or {}).get(c.name)) for c in self.columns}
        if self._behind is not None:
            self._behind.submit(self._emit, list(prepared.values()))
        else:
            self._emit(list(prepared.values()))
        self.rows += len(frame)
        return prepared

    def _emit(self, prepared: list[Prepared]) -> None:
        """Write one chunk's prepared columns to the files (in the write-behind thread, if
        any)."""
        table = pa.Table.from_arrays([p.typed for p in prepared], schema=self.schema)
        self.parquet.write_table(table, row_group_size=max(len(table), 1))
        names = table.column_names
        for start in range(0, len(table), self.chunk_rows):
            part = table.slice(start, self.chunk_rows)
            text = pa.Table.from_arrays(
                [p.text.slice(start, self.chunk_rows) for p in prepared], names=names
            )
            safe = [p.safe.slice(start, self.chunk_rows) for p in prepared]
            self.csv.write_safe(safe)
            self.delta.add(part, text, safe)

    def close(self) -> dict[str, int]:
        """Write what is still behind, close the files; the delta's count of rows per op."""
        if self._behind is not None:
            self._behind.close()
        self.parquet.close()
        self.file.close()
        self.csv.close()
        self.counts = self.delta.close(self.path)
        return self.counts

    def discard(self) -> None:
        """Give up (the publication failed): stop writing, so the folder can be removed."""
        if self._behind is not None:
            self._behind.discard()

    @property
    def hashes(self) -> dict[str, str]:
        """The SHA-256 of each data file, by name (once closed)."""
        return {
            self.path.name: self.file.sha256,
            self.csv.handle.path.name: self.csv.sha256,
            **self.delta.hashes,
        }


def _prepare(frame: pd.DataFrame, column: Column, like: Prepared | None) -> Prepared:
    """A column of the chunk in its three forms; `like`'s when it came from the same memory."""
    values = column_values(frame, column)
    source = _memory(values)
    same = like is not None and source is not None and like.source == source
    if like is not None and same and like.typed.type == column.type:
        return like
    typed = arrow_column(values, column)
    text = text_column(typed)
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    return Prepared(source, typed, text, neutralise(text))


def _memory(values: pd.Series) -> tuple[object, ...] | None:
    """Where an Arrow-backed column's values live: type, offset, length and buffer addresses of
    each chunk. Arrow buffers are immutable, so two columns with the same answer hold the same
    values; masking and redaction make new buffers. None (never reused) for other columns."""
    if not isinstance(values.dtype, pd.StringDtype | pd.ArrowDtype):
        return None
    if isinstance(values.dtype, pd.StringDtype) and values.dtype.storage != "pyarrow":
        return None
    array = pa.array(values.array)
    chunks = array.chunks if isinstance(array, pa.ChunkedArray) else [array]
    return tuple(
        (str(c.type), c.offset, len(c), *(b.address if b is not None else 0 for b in c.buffers()))
        for c in chunks
    )


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
    folder: Path,
    dataset: str,
    columns: list[Column],
    key: list[str],
    counts: dict[str, int],
    hashes: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Frictionless Data Package (v2) describing the four data files. `hashes`: their SHA-256
    as computed while writing (`Snapshot.hashes`); a file missing there is read and hashed."""
    known = hashes or {}
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
            "hash": f"sha256:{known[name] if name in known else sha256_of(path)}",
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
