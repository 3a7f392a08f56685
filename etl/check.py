"""The check stage: read a file, normalise and validate every row, account for each one.

Used by `creditpipe check` (the offices' pre-flight tool) and by the pipeline's intake. Rows
stream through in chunks; what stays in memory for the whole file is the rejections and one
64-bit hash per keyed row (for E_DUPLICATE_IN_FILE across chunks), never the file's rows.

Invariant, checked on every file: accepted + distinct rejected rows = rows read.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from etl import settings
from etl.checks.codes import message
from etl.checks.rules import REJECTION_COLUMNS, ChunkContext, empty_rejections, validate_chunk
from etl.contracts import Contract, load_contract
from etl.errors import InputFileError
from etl.intake.header import HeaderMap
from etl.intake.readers import EXTRA, ROW, ReadAgain, TableReader, open_table
from etl.offices import Office
from etl.quality import Quality, failed, quality_run
from etl.text import arrow_strings


@dataclass(frozen=True)
class Notice:
    """A file-level error or warning: a stable code and a Chinese message."""

    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


EXTRA_TITLE = "（表头以外的单元格）"  # the key of cells beyond the header in a rejected row


class AcceptedSink(Protocol):
    """Where rows go when a file is loaded (the store's staging); `check` alone needs none.

    `write` gets each chunk's accepted rows, typed, with a `_row` column. `reject` gets the
    rejected rows' numbers and their cells as the file had them (columns named by the file's
    headers). `finish` lists rows written earlier whose key reappeared further down the file:
    they are rejected after all and must be dropped; `headers` maps field names to the file's
    headers, so those rows can be kept under the same names as the other rejected rows.
    """

    def write(self, frame: pd.DataFrame) -> None: ...

    def reject(self, rows: np.ndarray, raw: pd.DataFrame) -> None: ...

    def finish(self, dropped_rows: np.ndarray, headers: dict[str, str]) -> None: ...


@dataclass
class CheckResult:
    """Everything known about one checked file; `to_json` is the `check --json` object."""

    file: str
    dataset: str
    contract: str = ""
    office: str | None = None
    sha256: str = ""
    size: int = 0
    encoding: str = ""
    rows_read: int = 0
    accepted: int = 0
    rejected: int = 0
    blank_rows: int = 0
    header_row: int | None = None
    file_errors: list[Notice] = field(default_factory=list)
    warnings: list[Notice] = field(default_factory=list)
    rejections: pd.DataFrame = field(default_factory=empty_rejections)
    quality: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """True when the file was read and every row accepted."""
        return not self.file_errors and self.rejected == 0

    def to_json(self) -> dict[str, Any]:
        """The `creditpipe check --json` object (exactly these keys; `row` is 1-based)."""
        return {**self._json_head(), "rejections": self._rejection_dicts(self.rejections)}

    def write_json(
        self,
        write: Callable[[str], Any],
        *,
        indent: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """`json.dumps({**to_json(), **extra}, ensure_ascii=False, indent=indent)`, the same
        text, handed to `write` in pieces: the rejections `_JSON_BATCH` at a time. A file with
        116,000 rejected rows made ~200 MB of dicts and text at once in a 5,000,000-row run."""
        body = {**self._json_head(), "rejections": _PLACEHOLDER, **(extra or {})}
        text = json.dumps(body, ensure_ascii=False, indent=indent)
        head, tail = text.split(f'"rejections": "{_PLACEHOLDER}"', 1)
        write(head + '"rejections": [')
        rej, wrote = self.rejections, False
        for start in range(0, len(rej), _JSON_BATCH):
            batch = self._rejection_dicts(rej.iloc[start : start + _JSON_BATCH])
            items = json.dumps(batch, ensure_ascii=False, indent=indent)
            if indent is None:  # [{…}, {…}]
                write((", " if wrote else "") + items[1:-1])
            else:  # "[\n  {\n    …\n  }\n]", one level deeper in the body
                write(("," if wrote else "") + items[1:-2].replace("\n", "\n" + " " * indent))
            wrote = True
        if wrote and indent is not None:
            write("\n" + " " * indent)
        write("]" + tail)

    def _json_head(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "dataset": self.dataset,
            "sha256": self.sha256,
            "encoding": self.encoding,
            "rows_read": self.rows_read,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "file_errors": [n.as_dict() for n in self.file_errors],
            "warnings": [n.as_dict() for n in self.warnings],
        }

    @staticmethod
    def _rejection_dicts(rej: pd.DataFrame) -> list[dict[str, Any]]:
        return [
            {"row": int(r), "field": f, "code": c, "message": m, "value": v}
            for r, f, c, m, v in zip(
                rej["row"], rej["field"], rej["code"], rej["message"], rej["value"], strict=True
            )
        ]


_JSON_BATCH = 10_000  # rejections per piece of `CheckResult.write_json`
_PLACEHOLDER = "\ue000creditpipe-rejections\ue000"  # a private-use character: in no real text


class _KeyIndex:
    """Natural-key hashes of the rows seen so far, to find duplicates across chunks.

    Sorted runs of uint64 hashes with their uint32 row numbers (12 bytes per keyed row), merged
    like a log-structured tree whenever a run is no smaller than the one before it: a chunk is
    searched against O(log chunks) runs, not against every earlier chunk. Two runs merge
    linearly (both are sorted), holding both and the result at once (~25 bytes per entry; a
    stable argsort of the concatenation held ~44), and runs stop merging at `RUN_CAP` entries,
    so the last merges of a 5,000,000-row file do not briefly need ~200 MB more; the cost is a
    search in one more run per million rows.

    A run of more than half the cap can never merge again (a later run would have to be at
    least as long): it goes to a temporary file, read back while a chunk is searched against
    it and for the final rejections. In memory, the index grew by 12 bytes a row, ~48 MB more
    at 5,000,000 rows than at 1,000,000 (issue #8 wants memory flat in the file's size);
    reading a run back costs ~2 ms per chunk from the page cache.
    Equal 64-bit hashes are taken as equal keys; a false match needs ~2^32 rows.
    """

    RUN_CAP = 1_000_000

    def __init__(self) -> None:
        self.hashes: list[np.ndarray] = []
        self.rows: list[np.ndarray] = []
        self.spilled: list[Path] = []  # final runs on disk: <stem>.hashes, <stem>.rows
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self.dupes: list[tuple[np.ndarray, np.ndarray, pd.Series]] = []  # hashes, rows, key text

    def add(self, key: pd.DataFrame, rows: pd.Series) -> pd.Series:
        """Register a chunk's keys; returns the mask of its rows that repeat any key."""
        complete = key.notna().all(axis=1)
        hashes = _key_hashes(key[complete])
        order = np.argsort(hashes)  # sorted, so earlier chunks are searched, not re-sorted
        hashes = hashes[order]
        chunk_rows = rows[complete].to_numpy().astype(np.uint32)[order]
        repeated = pd.Series(hashes).duplicated(keep=False).to_numpy().copy()
        for earlier in self.hashes:
            repeated |= _contains(earlier, hashes)
        for stem in self.spilled:
            repeated |= _contains(np.fromfile(stem.with_suffix(".hashes"), np.uint64), hashes)
        self._push(hashes, chunk_rows)
        mask = pd.Series(False, index=key.index)
        mask[complete[complete].index[order[repeated]]] = True
        if repeated.any():
            text = _joined(key[complete].iloc[order[repeated]])
            self.dupes.append((hashes[repeated], chunk_rows[repeated], text))
        return mask

    def runs(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every run's hashes and rows, those on disk read back one at a time."""
        yield from zip(self.hashes, self.rows, strict=True)
        for stem in self.spilled:
            yield (
                np.fromfile(stem.with_suffix(".hashes"), np.uint64),
                np.fromfile(stem.with_suffix(".rows"), np.uint32),
            )

    def close(self) -> None:
        """Remove the runs on disk."""
        if self._folder is not None:
            self._folder.cleanup()
            self._folder, self.spilled = None, []

    def _push(self, hashes: np.ndarray, rows: np.ndarray) -> None:
        self.hashes.append(hashes)
        self.rows.append(rows)
        while (
            len(self.hashes) > 1
            and len(self.hashes[-1]) >= len(self.hashes[-2])
            and len(self.hashes[-2]) + len(self.hashes[-1]) <= self.RUN_CAP
        ):
            later_hashes, later_rows = self.hashes.pop(), self.rows.pop()
            earlier_hashes, earlier_rows = self.hashes.pop(), self.rows.pop()
            # Both runs are sorted: each later entry goes after the earlier ones it is not
            # below (a linear merge, no sort of the whole).
            at = np.searchsorted(earlier_hashes, later_hashes, side="right")
            at += np.arange(len(later_hashes))
            merged = np.empty(len(earlier_hashes) + len(later_hashes), dtype=np.uint64)
            rows_merged = np.empty(len(merged), dtype=np.uint32)
            from_earlier = np.ones(len(merged), dtype=bool)
            from_earlier[at] = False
            merged[at], rows_merged[at] = later_hashes, later_rows
            merged[from_earlier], rows_merged[from_earlier] = earlier_hashes, earlier_rows
            self.hashes.append(merged)
            self.rows.append(rows_merged)
        if len(self.hashes[-1]) > self.RUN_CAP // 2:
            self._spill()

    def _spill(self) -> None:
        """The last run, final now, to disk."""
        if self._folder is None:
            self._folder = tempfile.TemporaryDirectory(prefix="creditpipe-keys-")
        stem = Path(self._folder.name) / f"run-{len(self.spilled):04d}"
        self.hashes.pop().tofile(stem.with_suffix(".hashes"))
        self.rows.pop().tofile(stem.with_suffix(".rows"))
        self.spilled.append(stem)

    def rejections(self, field_label: str, key_label: str) -> tuple[pd.DataFrame, np.ndarray]:
        """Every row sharing a key with another, earlier ones included, with its partners."""
        if not self.dupes:
            return empty_rejections(), np.array([], dtype="int64")
        dup_hashes = np.unique(np.concatenate([h for h, _, _ in self.dupes]))
        hits = []
        for hashes, rows in self.runs():
            where = np.isin(hashes, dup_hashes)
            hits.append(pd.DataFrame({"hash": hashes[where], "row": rows[where].astype(np.int64)}))
        all_rows = pd.concat(hits, ignore_index=True).sort_values(["hash", "row"])
        texts = (
            pd.concat([pd.Series(t.to_numpy(), index=h) for h, _, t in self.dupes])
            .groupby(level=0)
            .first()
        )
        partners = all_rows.groupby("hash")["row"].agg(lambda r: "、".join(map(str, r)))
        frame = pd.DataFrame(
            {
                "row": all_rows["row"].to_numpy(),
                "field": field_label,
                "code": "E_DUPLICATE_IN_FILE",
                "message": [
                    message("E_DUPLICATE_IN_FILE", key=key_label, rows=partners[h])
                    for h in all_rows["hash"]
                ],
                "value": texts.reindex(all_rows["hash"]).to_numpy(),
            }
        )
        return frame, all_rows["row"].to_numpy()


_MIX = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / the golden ratio: spreads a word before mixing
_LONG_KEY_BYTES = 256


def _key_hashes(key: pd.DataFrame) -> np.ndarray:
    """A 64-bit hash of each row's key (no value missing), from the UTF-8 bytes of its values.

    pd.util.hash_pandas_object made a Python string of every Arrow value first: ~42 ms per
    50,000-row chunk of two key fields, against ~12 ms here, 8 bytes of every value at a time
    for all rows at once, each step through MurmurHash3's 64-bit finaliser. Only equality
    within one check matters (the hashes never leave it)."""
    hashes = np.zeros(len(key), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for name in key.columns:
            hashes = _fmix64((hashes ^ _text_hashes(arrow_strings(key[name]))) * _MIX)
    return hashes


def _text_hashes(values: pa.Array) -> np.ndarray:
    """Each value's length, then its bytes as little-endian 64-bit words (the last one zero-
    padded), mixed in turn; overflow wraps (callers silence numpy's warning)."""
    if not len(values):
        return np.zeros(0, dtype=np.uint64)
    binary = values.cast(pa.large_binary())
    offsets = np.frombuffer(binary.buffers()[1], dtype=np.int64)[binary.offset :][: len(binary) + 1]
    data = binary.buffers()[2]
    padded = np.zeros((0 if data is None else data.size) + 8, dtype=np.uint8)
    padded[: len(padded) - 8] = np.frombuffer(data, dtype=np.uint8) if data is not None else []
    # The 64-bit word starting at every byte: an overlapping view, nothing copied.
    words = np.ndarray((len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))
    starts, lengths = offsets[:-1], np.diff(offsets)
    hashes = _fmix64(lengths.astype(np.uint64) * _MIX)
    # A step per 8 bytes of the longest value: a stray 2 MB cell would cost seconds a chunk.
    # Values that long (rare, and rejected as too long anyway) are hashed one by one.
    long = np.flatnonzero(lengths > _LONG_KEY_BYTES)
    for i in long:
        value = padded[starts[i] : starts[i] + lengths[i]].tobytes()
        hashes[i] = int.from_bytes(hashlib.blake2b(value, digest_size=8).digest(), "little")
    rows = np.flatnonzero(lengths <= _LONG_KEY_BYTES)
    for word in range(int(lengths[rows].max(initial=0) + 7) // 8):
        left = lengths[rows] - 8 * word  # bytes still to mix, > 0
        if (left <= 0).any():
            rows, left = rows[left > 0], left[left > 0]
        chunk = words[starts[rows] + 8 * word]
        tail = left < 8
        if tail.any():
            chunk[tail] &= (np.uint64(1) << (left[tail].astype(np.uint64) * np.uint64(8))) - 1
        hashes[rows] = _fmix64((hashes[rows] ^ chunk) * _MIX)
    return hashes


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's finaliser: every input bit flips each output bit with probability ~1/2."""
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


def _joined(key: pd.DataFrame) -> pd.Series:
    """A key's values as one text, " / " between them (no value is missing): what a duplicate's
    rejection shows."""
    columns = [key[name].astype("str") for name in key.columns]
    text = columns[0]
    for column in columns[1:]:
        text = text + " / " + column
    return text


def _compact(rejections: pd.DataFrame) -> pd.DataFrame:
    """A chunk's rejections kept until the end of the file with each repeated text (field,
    code, message, value) stored once: most rejections of a file share a handful of texts."""
    return rejections.astype(dict.fromkeys(REJECTION_COLUMNS[1:], "category"))


def _contains(haystack: np.ndarray, needles: np.ndarray) -> np.ndarray:
    """Which of the sorted `needles` are in the sorted `haystack`: a binary search, ~9× faster
    than np.isin, which sorts both arrays again for every earlier chunk of the file."""
    if not len(haystack):
        return np.zeros(len(needles), dtype=bool)
    found = np.searchsorted(haystack, needles).clip(max=len(haystack) - 1)
    return np.asarray(haystack[found] == needles)


def _raw_names(header: HeaderMap) -> dict[str, str]:
    """Field → the header as written (made unique), for keeping rejected rows as they were."""
    names: dict[str, str] = {}
    for b in header.bindings:
        name, n = b.header or b.field, 2
        while name in names.values():
            name, n = f"{b.header}（{n}）", n + 1
        names[b.field] = name
    names[EXTRA] = EXTRA_TITLE
    return names


def _raw_cells(raw: pd.DataFrame, names: dict[str, str]) -> pd.DataFrame:
    cells = raw[[c for c in names if c in raw.columns]].rename(columns=names)
    if EXTRA_TITLE in cells.columns:
        cells[EXTRA_TITLE] = cells[EXTRA_TITLE].replace("", None)
    return cells


def check_file(
    path: Path,
    dataset: str = "penalty",
    *,
    office: Office | None = None,
    as_of: date | None = None,
    sink: AcceptedSink | None = None,
    progress: Callable[[float, int], None] | None = None,
    chunk_rows: int | None = None,
    quality: bool = True,
) -> CheckResult:
    """Check one file against the dataset's contract; never raises for bad input."""
    contract = load_contract(dataset)
    result = CheckResult(
        file=str(path),
        dataset=dataset,
        contract=contract.name,
        office=office.id if office else None,
    )
    try:
        _run(
            path,
            contract,
            result,
            office,
            as_of or settings.today_shanghai(),
            sink,
            progress,
            chunk_rows or settings.chunk_rows(),
            quality,
        )
    except InputFileError as exc:
        result.file_errors.append(Notice(exc.code, exc.message))
        result.rows_read = result.accepted = result.rejected = 0
        result.rejections = empty_rejections()
    return result


def _run(
    path: Path,
    contract: Contract,
    result: CheckResult,
    office: Office | None,
    as_of: date,
    sink: AcceptedSink | None,
    progress: Callable[[float, int], None] | None,
    chunk_rows: int,
    quality: bool,
) -> None:
    # The quality run starts first: a quality process imports GX while the file is scanned.
    size = path.stat().st_size
    checker = quality_run(contract, size) if quality else None
    args = (office, as_of, sink, progress, chunk_rows, checker)
    try:
        try:
            _read(path, contract, result, open_table(path, contract), *args)
            return
        except ReadAgain as again:  # raised before anything read left the check: start over
            scan = again.scan
        # Outside the handler: its traceback would keep the first attempt's chunk alive.
        _read(path, contract, result, open_table(path, contract, scan), *args)
    finally:
        if checker is not None:
            checker.close()


def _read(
    path: Path,
    contract: Contract,
    result: CheckResult,
    reader: TableReader,
    office: Office | None,
    as_of: date,
    sink: AcceptedSink | None,
    progress: Callable[[float, int], None] | None,
    chunk_rows: int,
    checker: Quality | None,
) -> None:
    result.header_row = reader.header.row_index + 1
    ctx = ChunkContext(contract, reader.header, office, as_of)
    try:
        _stream(path, contract, result, reader, ctx, sink, progress, chunk_rows, checker)
    except Exception:
        # Whatever went wrong, a file that is not what the read assumed says so first (as
        # when scanned first): bytes that are not UTF-8 may break a text kernel (ArrowInvalid)
        # before the scan has spoken. Once confirmed, this returns and the error stands.
        _confirm(reader, result)
        raise


def _confirm(reader: TableReader, result: CheckResult) -> None:
    """The file's scan into `result`; ReadAgain or the scan's own error when it says so."""
    scan = reader.confirm()
    result.sha256, result.size, result.encoding = scan.sha256, scan.size, scan.encoding


def _stream(
    path: Path,
    contract: Contract,
    result: CheckResult,
    reader: TableReader,
    ctx: ChunkContext,
    sink: AcceptedSink | None,
    progress: Callable[[float, int], None] | None,
    chunk_rows: int,
    checker: Quality | None,
) -> None:
    keys = _KeyIndex()
    raw_names = _raw_names(reader.header)
    rejections: list[pd.DataFrame] = []
    withheld: list[np.ndarray] = []  # rows not written to the sink when their chunk was
    written = 0
    confirmed = False
    for chunk in reader.chunks(chunk_rows):
        raw = chunk.frame
        outcome = validate_chunk(raw, ctx) if not raw.empty else None
        if not confirmed:  # the scan ran beside the first chunk; nothing has left the check
            _confirm(reader, result)
            confirmed = True
        result.blank_rows += chunk.blank_rows
        if outcome is None:
            continue
        typed = outcome.typed
        repeated = keys.add(typed[list(contract.natural_key)], typed[ROW])
        rejections.append(_compact(outcome.rejections))
        bad = typed[ROW].isin(outcome.rejections["row"]) | repeated
        withheld.append(typed[ROW][bad].to_numpy())
        accepted = typed[~bad]
        result.rows_read += len(raw)
        written += len(accepted)
        if checker is not None:
            checker.validate(accepted)
        if sink is not None:
            sink.write(accepted)
            if bad.any():
                rejected = raw[raw[ROW].isin(typed[ROW][bad])]
                sink.reject(rejected[ROW].to_numpy(), _raw_cells(rejected, raw_names))
                del rejected
        if progress is not None:
            progress(reader.progress(), result.rows_read)
        # Nothing of a chunk outlives it: after the last one, the quality process's final batch
        # and the gathering of the rejections are the check's peak.
        del chunk, raw, outcome, typed, accepted, bad, repeated
    if not confirmed:
        _confirm(reader, result)
    result.warnings += [Notice(c, m) for c, m in reader.warnings]
    if checker is not None:  # first: it ends the quality process before the rejections gather
        result.quality = checker.summary()
        failures = failed(result.quality)
        if failures:
            result.warnings.append(
                Notice("W_QUALITY", message("W_QUALITY", failed="；".join(failures)))
            )

    titles = contract.titles()
    key_label = "+".join(f"「{titles[k]}」" for k in contract.natural_key)
    key_fields = "、".join(titles[k] for k in contract.natural_key)
    dup_frame, dup_rows = keys.rejections(key_fields, key_label)
    keys.close()
    frames = [r for r in [*rejections, dup_frame] if not r.empty]
    all_rejections = (
        pd.concat(frames, ignore_index=True)
        .astype(empty_rejections().dtypes.to_dict())
        .sort_values(["row", "code"], kind="stable")
        if frames
        else empty_rejections()
    )
    result.rejections = all_rejections.reset_index(drop=True)
    result.rejected = int(all_rejections["row"].nunique())
    result.accepted = result.rows_read - result.rejected
    # Rows written as accepted whose key turned up again further down the file are withdrawn.
    late = np.setdiff1d(dup_rows, np.concatenate([np.array([], dtype="int64"), *withheld]))
    if sink is not None:
        sink.finish(late, raw_names)
    if written - len(late) != result.accepted:
        raise AssertionError(
            f"row accounting broken for {path}: written {written}, withdrawn {len(late)}, "
            f"accepted {result.accepted} of {result.rows_read}"
        )
