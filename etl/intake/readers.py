"""Readers: CSV (UTF-8, UTF-8 BOM, GBK, GB18030, UTF-16) and spreadsheets (XLSX, XLS, ODS).

A reader opens a file, finds its header (etl.intake.header) and yields raw chunks: the data rows
as text, one column per bound field, with each row's number as a spreadsheet program shows it.
CSV is streamed in chunks of rows, so memory does not grow with the file. Spreadsheets are read
through calamine (Rust), whose cell range is bounded by the format's 1,048,576-row limit.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import hashlib
import io
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, NoReturn, Protocol

import charset_normalizer
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import python_calamine as calamine

from etl.checks.codes import column_letter, message
from etl.contracts import Contract
from etl.errors import InputFileError
from etl.intake.header import HEADER_SEARCH_ROWS, HeaderMap, find_header
from etl.text import STR, trim

ROW = "_row"  # the spreadsheet row number of a data row
EXTRA = "_extra"  # text of cells beyond the header's width (CSV rows with stray commas)
CSV_SUFFIXES = {".csv", ".txt", ".tsv"}
SHEET_SUFFIXES = {".xlsx", ".xlsm", ".xls", ".xlsb", ".ods"}
DELIMITERS = [",", "\t", ";", "|"]
EXTRA_COLUMNS = 16  # room for rows wider than the header, so they are rejected, not lost
END_MARK = "\x00creditpipe: end of file\x00"  # a record appended to a CSV to find open quotes
_BLOCK = 1 << 20
_SAMPLE = 256 * 1024  # bytes read to find the header and delimiter
# From this size on, a CSV whose first `_SAMPLE` bytes are UTF-8 is read as UTF-8 while a thread
# scans it whole (CsvReader): the scan (hash and UTF-8 check, ~1 s per 500 MB) overlaps the
# header search and the first chunk instead of coming before them. Smaller files scan first.
SCAN_BESIDE_BYTES = 8 << 20
_CALAMINE_ERRORS = (
    calamine.CalamineError,
    calamine.PasswordError,
    calamine.ZipError,
    calamine.XmlError,
    calamine.WorksheetNotFound,
)

# Label shown to the office → Python codec used to read. GBK files are read with the GB18030
# codec, a strict superset, so a rare 4-byte character further down cannot break the read.
_ENCODINGS = {"UTF-8-BOM": "utf-8-sig", "UTF-8": "utf-8", "GBK": "gb18030", "GB18030": "gb18030"}
# Python codec → Arrow's: Arrow reads UTF-8 itself (and skips a BOM); other codecs are
# transcoded through Python's codec, block by block.
_ARROW_ENCODINGS = {"utf-8": "utf8", "utf-8-sig": "utf8"}


@dataclass
class RawChunk:
    """Data rows of one chunk: bound fields as text, plus `_row` and `_extra` columns."""

    frame: pd.DataFrame
    blank_rows: int = 0


@dataclass
class FileScan:
    """What one pass over the bytes tells: checksum, size and (for text files) encoding."""

    sha256: str
    size: int
    encoding: str = ""  # label: UTF-8, UTF-8-BOM, GBK, GB18030, UTF-16
    codec: str = ""  # Python codec name


class TableReader(Protocol):
    """What the check stage needs from a reader."""

    header: HeaderMap
    warnings: list[tuple[str, str]]

    def confirm(self) -> FileScan:
        """The file's scan. Raises the scan's InputFileError, or ReadAgain when the reader
        assumed an encoding the scan disproves: call it before anything read leaves the check."""
        ...

    def chunks(self, rows: int) -> Iterator[RawChunk]: ...

    def progress(self) -> float: ...


class ReadAgain(Exception):
    """The encoding a reader assumed from the file's first bytes is not the file's (say a GBK
    file whose first 256 KiB are ASCII): open it again with `scan`, which is."""

    def __init__(self, scan: FileScan) -> None:
        super().__init__(scan.encoding)
        self.scan = scan


def open_table(path: Path, contract: Contract, scan: FileScan | None = None) -> TableReader:
    """Open `path` for `contract`; raises InputFileError for a file that cannot be read, and
    ReadAgain (see TableReader.confirm). `scan`: the file's, when known (after ReadAgain)."""
    if not path.is_file():
        raise InputFileError(message("E_FILE_NOT_FOUND", path=path), code="E_FILE_NOT_FOUND")
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return CsvReader(path, contract, scan)
    if suffix in SHEET_SUFFIXES:
        return SheetReader(path, contract)
    raise InputFileError(
        message("E_FILE_TYPE", suffix=suffix or "（无扩展名）"), code="E_FILE_TYPE"
    )


def scan_text_file(path: Path) -> FileScan:
    """Hash the file and find the encoding that decodes all of it.

    UTF-8 is tried first (a BOM decides at once), then GBK, then GB18030; the first codec that
    decodes every byte wins. A file none of them decodes is a file-level error naming the byte
    offset where decoding failed (the furthest any codec got), with charset-normalizer's guess
    as a hint for the office.

    One pass hashes the file and validates UTF-8 in Arrow, without building text (decoding
    every file three ways in Python cost 7 % of a 1,000,000-row check). GBK and GB18030 can
    only win once UTF-8 has failed, so only then is the file read again for them (rare).
    """
    with path.open("rb") as fh:
        first = fh.read(_BLOCK)
        if not first:
            raise InputFileError(message("E_FILE_EMPTY"), code="E_FILE_EMPTY")
        fh.seek(0)
        if first.startswith(codecs.BOM_UTF16_LE) or first.startswith(codecs.BOM_UTF16_BE):
            sha, size, failed_at = _hash_and_decode(fh, ["utf-16"])
            if not failed_at:
                return FileScan(sha, size, "UTF-16", "utf-16")
            _raise_undecodable(path, failed_at["utf-16"])
        sha, size, utf8_failed_at = _hash_and_validate_utf8(fh)
        if utf8_failed_at is None:
            label = "UTF-8-BOM" if first.startswith(codecs.BOM_UTF8) else "UTF-8"
            return FileScan(sha, size, label, _ENCODINGS[label])
        fh.seek(0)
        _, _, failed_at = _hash_and_decode(fh, ["gbk", "gb18030"], stop_when_all_failed=True)
    for label, codec in (("GBK", "gbk"), ("GB18030", "gb18030")):
        if codec not in failed_at:
            return FileScan(sha, size, label, _ENCODINGS[label])
    _raise_undecodable(path, max(utf8_failed_at, *failed_at.values()))


class _ScanBeside:
    """`scan_text_file` in a thread (hashlib and Arrow's cast release the GIL, so it takes the
    other core while the caller reads)."""

    def __init__(self, path: Path) -> None:
        self._scan: FileScan | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(path,), name="creditpipe-scan", daemon=True
        )
        self._thread.start()

    def _run(self, path: Path) -> None:
        try:
            self._scan = scan_text_file(path)
        except BaseException as exc:  # noqa: BLE001 -- raised again in the caller's thread
            self._error = exc

    def result(self) -> FileScan:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._scan is not None
        return self._scan


def _assumed_utf8(head: bytes) -> str | None:
    """UTF-8's label when `head` (a file's first bytes, perhaps cut inside a character) is
    UTF-8 with no UTF-16 byte-order mark, else None (the scan decides)."""
    if not head or head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return None
    if not _is_utf8(head, _complete_utf8(head)):
        return None
    return "UTF-8-BOM" if head.startswith(codecs.BOM_UTF8) else "UTF-8"


def _raise_undecodable(path: Path, offset: int) -> NoReturn:
    guess = charset_normalizer.from_path(path).best()
    hint = f"（疑似 {guess.encoding} 编码，请另存为 UTF-8 或 GBK）" if guess else ""
    raise InputFileError(message("E_ENCODING", offset=offset, hint=hint), code="E_ENCODING")


def _hash_and_validate_utf8(fh: BinaryIO) -> tuple[str, int, int | None]:
    """Checksum, size and the offset of the first byte that is not UTF-8 (None: all is)."""
    digest = hashlib.sha256()
    size = 0
    utf8 = _Utf8Validator()
    while block := fh.read(_BLOCK):
        digest.update(block)
        utf8.feed(block)
        size += len(block)
    return digest.hexdigest(), size, utf8.finish()


def _hash_and_decode(
    fh: BinaryIO, codecs_: list[str], *, stop_when_all_failed: bool = False
) -> tuple[str, int, dict[str, int]]:
    """Checksum, size and, per codec that cannot decode the file, where it failed.

    Python's incremental decoders, block by block: the rare paths (UTF-16, GBK, GB18030).
    """
    digest = hashlib.sha256()
    size = 0
    decoders = {c: codecs.getincrementaldecoder(c)() for c in codecs_}
    failed_at: dict[str, int] = {}
    while block := fh.read(_BLOCK):
        digest.update(block)
        for name, decoder in list(decoders.items()):
            pending = len(decoder.getstate()[0])  # bytes of a character the last block split
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                failed_at[name] = size - pending + exc.start
                del decoders[name]
        size += len(block)
        if stop_when_all_failed and not decoders:
            break
    for name, decoder in decoders.items():
        pending = len(decoder.getstate()[0])
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            failed_at[name] = size - pending  # a character cut short by the end of the file
    return digest.hexdigest(), size, failed_at


class _Utf8Validator:
    """Validates UTF-8 block by block in Arrow (a binary → string cast), building no text.

    A character split by a block boundary (at most 3 bytes of it) is carried to the next
    block. Where Arrow finds a block invalid, Python's decoder names the offending byte.
    """

    def __init__(self) -> None:
        self._carry = b""
        self._offset = 0  # file offset of the first byte of `_carry`
        self.failed_at: int | None = None

    def feed(self, block: bytes) -> None:
        if self.failed_at is not None:
            return
        data = self._carry + block if self._carry else block
        whole = _complete_utf8(data)
        if not _is_utf8(data, whole):
            try:
                data[:whole].decode("utf-8")
            except UnicodeDecodeError as exc:
                self.failed_at = self._offset + exc.start
                return
        self._carry = data[whole:]
        self._offset += whole

    def finish(self) -> int | None:
        if self.failed_at is None and self._carry:
            self.failed_at = self._offset  # a character cut short by the end of the file
        return self.failed_at


def _complete_utf8(data: bytes) -> int:
    """Length of `data` without a trailing multibyte character it cuts short (0–3 bytes)."""
    end = len(data)
    for back in range(1, min(3, end) + 1):
        byte = data[end - back]
        if byte & 0xC0 == 0x80:  # a continuation byte: look further back for the lead
            continue
        needs = 2 if 0xC0 <= byte < 0xE0 else 3 if 0xE0 <= byte < 0xF0 else 4 if byte >= 0xF0 else 1
        return end - back if needs > back else end
    return end


def _is_utf8(data: bytes, length: int) -> bool:
    """Whether the first `length` bytes of `data` are valid UTF-8, checked in Arrow (no copy)."""
    offsets = pa.py_buffer(np.array([0, length], dtype=np.int32))
    binary = pa.Array.from_buffers(pa.binary(), 1, [None, offsets, pa.py_buffer(data)])
    try:
        binary.cast(pa.string())
    except pa.ArrowInvalid:
        return False
    return True


def hash_file(path: Path) -> FileScan:
    """Checksum and size of a binary file."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
            size += len(block)
    if size == 0:
        raise InputFileError(message("E_FILE_EMPTY"), code="E_FILE_EMPTY")
    return FileScan(digest.hexdigest(), size)


def _unknown_column_warnings(header: HeaderMap) -> list[tuple[str, str]]:
    if not header.unknown:
        return []
    return [("W_UNKNOWN_COLUMN", message("W_UNKNOWN_COLUMN", columns=header.describe_unknown()))]


def _bind(frame: pd.DataFrame, header: HeaderMap) -> pd.DataFrame:
    """Keep the bound columns, renamed to field names, numbered as a spreadsheet shows them."""
    out = pd.DataFrame({b.field: frame[b.column] for b in header.bindings}, index=frame.index)
    out[ROW] = frame.index.to_numpy() + 1  # 0-based record/sheet-row index → 1-based row
    return out


@dataclass
class _UnnamedColumns:
    """Columns inside the header's width whose header cell is empty: warn once if they hold data."""

    columns: list[int]
    seen: set[int] = field(default_factory=set)

    def observe(self, frame: pd.DataFrame) -> None:
        for col in self.columns:
            if col not in self.seen and col in frame and (frame[col] != "").any():
                self.seen.add(col)

    def warnings(self) -> list[tuple[str, str]]:
        if not self.seen:
            return []
        cols = "、".join(column_letter(c) for c in sorted(self.seen))
        return [("W_UNNAMED_COLUMN", message("W_UNNAMED_COLUMN", columns=cols))]


class CsvReader:
    """Streams a delimited text file in chunks of rows, parsed by Arrow's streaming CSV reader.

    Arrow parses the records that have the usual number of cells, in C++ with no Python per
    row, and hands the rare others (a title row, short or over-wide rows) to `_OddRecords`. Those
    are parsed by pandas against the header's width plus EXTRA_COLUMNS, as the whole file was
    before, so they are padded, rejected as E_ROW_SHAPE or stop the file exactly as they did.
    A chunk holds the same records a pandas chunk of `rows` records did: numbered by record (a
    multi-line cell is one row, a blank line counts), the header and the rows above it dropped.
    A file of `SCAN_BESIDE_BYTES` or more that starts as UTF-8 is read as UTF-8 while its scan
    runs in a thread; `confirm` says whether the scan agrees.
    """

    def __init__(self, path: Path, contract: Contract, scan: FileScan | None = None) -> None:
        self.path = path
        with path.open("rb") as fh:
            head = fh.read(_SAMPLE)  # the encoding's first guess and the header search
        self._scan, self._codec, self._size = self._start_scan(path, scan, head)
        try:
            found = self._find_header(contract, head)
        except InputFileError:
            self.confirm()  # an undecodable file says so first, as when the scan came first
            raise
        self.delimiter, self.header, self._cells, self._record_bytes = found
        self.warnings = _unknown_column_warnings(self.header)
        bound = {b.column for b in self.header.bindings}
        self._unnamed = _UnnamedColumns(
            [
                c
                for c in range(self.header.width)
                if c not in bound and c not in dict(self.header.unknown)
            ]
        )
        self._fh: io.BufferedReader | None = None

    @staticmethod
    def _start_scan(
        path: Path, scan: FileScan | None, head: bytes
    ) -> tuple[FileScan | _ScanBeside, str, int]:
        """The scan (or one under way beside the read), the codec to read with, the size;
        `head` is the file's first `_SAMPLE` bytes."""
        size = path.stat().st_size
        if scan is None and size >= SCAN_BESIDE_BYTES:
            label = _assumed_utf8(head)
            if label is not None:
                return _ScanBeside(path), _ENCODINGS[label], size
        scan = scan or scan_text_file(path)
        return scan, scan.codec, scan.size

    def confirm(self) -> FileScan:
        if isinstance(self._scan, _ScanBeside):
            scan = self._scan.result()
            if scan.codec != self._codec:
                raise ReadAgain(scan)
            self._scan = scan
        return self._scan

    def _find_header(self, contract: Contract, head: bytes) -> tuple[str, HeaderMap, int, float]:
        """Delimiter, header, the usual cell count of a data row and bytes per line, from the
        file's first `_SAMPLE` bytes."""
        sample = head.decode(self._codec, errors="ignore")
        best: tuple[int, str, HeaderMap, list[list[str]]] | None = None
        first_error: InputFileError | None = None
        for delimiter in DELIMITERS:
            records = list(_first_records(sample, delimiter, HEADER_SEARCH_ROWS))
            try:
                header = find_header(records, contract)
            except InputFileError as exc:
                first_error = first_error or exc
                continue
            if best is None or len(header.bindings) > best[0]:
                best = (len(header.bindings), delimiter, header, records)
        if best is None:
            assert first_error is not None
            raise first_error
        _, delimiter, header, records = best
        cells = _usual_cells(records[header.row_index + 1 :], header.width)
        return delimiter, header, cells, len(head) / max(1, head.count(b"\n"))

    def chunks(self, rows: int) -> Iterator[RawChunk]:
        odd = _OddRecords(self.header.width, self.delimiter)
        names = [str(c) for c in range(self._cells)]
        with self.path.open("rb") as fh:
            self._fh = fh
            try:
                stream = pa_csv.open_csv(
                    pa.PythonFile(_EndMarked(fh, self._end_marker()), mode="r"),
                    read_options=pa_csv.ReadOptions(
                        column_names=names,
                        block_size=_block_size(self._record_bytes, rows),
                        use_threads=False,  # serial parsing numbers the odd records
                        encoding=_ARROW_ENCODINGS.get(self._codec, self._codec),
                    ),
                    parse_options=pa_csv.ParseOptions(
                        delimiter=self.delimiter,
                        newlines_in_values=True,
                        ignore_empty_lines=False,  # a blank line is a (blank) row
                        invalid_row_handler=odd,
                    ),
                    convert_options=pa_csv.ConvertOptions(
                        # pandas' "str" columns hold large_string: no conversion later
                        column_types=dict.fromkeys(names, pa.large_string()),
                        strings_can_be_null=False,
                        # The scan validates every byte as UTF-8 (or Python's codec decodes
                        # it; `confirm` before use), and cells split only at ASCII bytes: no
                        # second validation.
                        check_utf8=False,
                    ),
                )
                pending = _Pending(self._cells)
                start = 0  # the first record of the next chunk
                for batch in stream:
                    pending.add(batch, odd.number(batch.num_rows))
                    while pending.last >= start + rows:
                        yield from self._chunk(pending.take(start + rows), odd.take(start + rows))
                        start += rows
                odd.drop_end_marker()
                while start <= max(pending.last, odd.last):
                    yield from self._chunk(pending.take(start + rows), odd.take(start + rows))
                    start += rows
            except (pa.ArrowInvalid, pd.errors.ParserError, ValueError) as exc:
                raise InputFileError(
                    message("E_CSV_STRUCTURE", detail=str(exc).strip()), code="E_CSV_STRUCTURE"
                ) from None
            except UnicodeDecodeError as exc:  # the scan decoded it all; kept as a guard
                raise InputFileError(
                    message("E_ENCODING", offset=exc.start, hint=""), code="E_ENCODING"
                ) from None
            finally:
                self.warnings += self._unnamed.warnings()
                self._fh = None

    def _end_marker(self) -> bytes:
        """The end-of-file marker record, in the file's encoding, on a line of its own."""
        with self.path.open("rb") as fh:
            bom = fh.read(2)
            fh.seek(max(0, self._size - 2))
            tail = fh.read()
        # Without a BOM of its own: UTF-16 in the byte order the file's BOM set.
        codec = {"utf-8-sig": "utf-8", "utf-16": "utf-16-le"}.get(self._codec, self._codec)
        if codec == "utf-16-le" and bom == codecs.BOM_UTF16_BE:
            codec = "utf-16-be"
        ends_line = any(tail.endswith(c.encode(codec)) for c in "\r\n")
        return (END_MARK if ends_line else "\n" + END_MARK).encode(codec)

    def _chunk(self, cells: pd.DataFrame, odd: pd.DataFrame) -> Iterator[RawChunk]:
        """One chunk of records (index: record number) as a RawChunk; none above the header."""
        width = self.header.width
        if not odd.empty:
            cells = pd.concat([cells, odd]).sort_index().fillna("")
        for col in range(len(cells.columns), width):  # data rows narrower than the header
            cells[col] = ""
        # Records before and including the header are not data.
        if len(cells) and cells.index[0] <= self.header.row_index:  # sorted: a slice, no copy
            cells = cells.iloc[cells.index.searchsorted(self.header.row_index, side="right") :]
        if cells.empty:
            return
        self._unnamed.observe(cells)
        extra = sorted(int(c) for c in cells.columns if int(c) >= width)  # columns are numbers
        yield _finish_chunk(cells, self.header, extra)

    def progress(self) -> float:
        if self._fh is None or self._fh.closed or not self._size:
            return 0.0
        return min(1.0, self._fh.tell() / self._size)


class _EndMarked(io.RawIOBase):
    """A file's bytes, then the end-of-file marker record.

    Arrow parses a quoted cell left open at the end of the file as if it were closed, where
    pandas stopped with "EOF inside string": when the marker comes back as a record of its own,
    every quote was closed; when it does not, the open cell swallowed it.
    """

    def __init__(self, fh: io.BufferedReader, marker: bytes) -> None:
        super().__init__()
        self._fh = fh
        self._marker = marker

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        data = self._fh.read(size)
        if data or not self._marker:
            return data
        if size is None or size < 0:
            size = len(self._marker)
        data, self._marker = self._marker[:size], self._marker[size:]
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _usual_cells(records: list[list[str]], width: int) -> int:
    """The most common cell count of the sampled data rows (the header's width if none).

    Arrow takes this many cells per row; other rows go the slower odd-record way. A count
    beyond what pandas allowed (width + EXTRA_COLUMNS) is not taken, so such rows still fail.
    """
    counts = Counter(len(r) for r in records if r)
    cells = counts.most_common(1)[0][0] if counts else width
    return cells if 1 < cells <= width + EXTRA_COLUMNS else width


def _block_size(record_bytes: float, rows: int) -> int:
    """Arrow block size in bytes: small (1 MiB, or a tenth of a chunk if that is less).

    Arrow reads blocks ahead and its allocator keeps what it freed: with blocks of half a
    chunk (24 MiB here) a 1,000,000-row check peaked ~340 MB higher, for no time saved.
    """
    return int(max(64 << 10, min(1 << 20, record_bytes * rows / 10)))


class _Pending:
    """Parsed records not yet handed out, with their record numbers."""

    def __init__(self, cells: int) -> None:
        self.cells = cells
        self.batches: list[pa.RecordBatch] = []
        self.numbers: list[np.ndarray] = []
        self.last = -1  # the number of the last record held (or seen), -1 before any

    def add(self, batch: pa.RecordBatch, numbers: np.ndarray) -> None:
        if batch.num_rows:
            self.batches.append(batch)
            self.numbers.append(numbers)
            self.last = int(numbers[-1])

    def take(self, end: int) -> pd.DataFrame:
        """The held records numbered below `end`, as text columns 0, 1, … indexed by number."""
        if not self.batches:
            return pd.DataFrame(
                {c: pd.Series(dtype=STR) for c in range(self.cells)},
                index=pd.Index([], dtype="int64"),
            )
        table = pa.Table.from_batches(self.batches)
        numbers = np.concatenate(self.numbers)
        cut = int(np.searchsorted(numbers, end))
        rest = table.slice(cut)
        self.batches = rest.to_batches() if rest.num_rows else []
        self.numbers = [numbers[cut:]] if rest.num_rows else []
        index = pd.Index(numbers[:cut])
        part = table.slice(0, cut)
        return pd.DataFrame(  # one contiguous array per column, not one piece per block
            {
                c: pd.Series(part.column(c).combine_chunks(), index=index, dtype=STR)
                for c in range(self.cells)
            }
        )


class _OddRecords:
    """Records whose cell count is not the usual one, as Arrow hands them over (rare).

    Called by Arrow for each (`invalid_row_handler`), which skips them in its batches; `number`
    then tells which record numbers the rows of a batch have, and `take` parses the odd ones
    of a chunk with pandas, against width + EXTRA_COLUMNS columns as the file was read before.
    """

    def __init__(self, width: int, delimiter: str) -> None:
        self.width = width
        self.delimiter = delimiter
        self.numbers: list[int] = []  # 0-based record numbers, increasing
        self.texts: list[str] = []
        self.cells: list[int] = []
        self._next = 0  # the number of the record after the last parsed row numbered
        self.last = -1

    def __call__(self, row: pa_csv.InvalidRow) -> str:
        if row.number is None:  # pragma: no cover - serial reads always number rows
            raise InputFileError(
                message("E_CSV_STRUCTURE", detail="row number unknown"), code="E_CSV_STRUCTURE"
            )
        self.numbers.append(row.number - 1)
        self.texts.append(row.text)
        self.cells.append(row.actual_columns)
        self.last = row.number - 1
        return "skip"

    def number(self, count: int) -> np.ndarray:
        """Record numbers of the next `count` rows Arrow parsed: the ones no odd record took.

        Arrow reports the odd records of a block while parsing it, so every odd record before
        these rows is known by now (and some after them may be, from reading ahead).
        """
        first = bisect.bisect_left(self.numbers, self._next)
        odd = np.array(self.numbers[first:], dtype=np.int64) - self._next
        # Row i comes after every odd record that has at most i parsed rows before it.
        before = odd - np.arange(len(odd))
        rows = np.arange(count, dtype=np.int64)
        numbers = self._next + rows + np.searchsorted(before, rows, side="right")
        if count:
            self._next = int(numbers[-1]) + 1
        return numbers

    def _check_widths(self, numbers: list[int], cells: list[int]) -> None:
        """Stop at the first record wider than pandas allowed, in pandas' words."""
        limit = self.width + EXTRA_COLUMNS
        for number, count in zip(numbers, cells, strict=True):
            if count > limit:
                raise InputFileError(
                    message(
                        "E_CSV_STRUCTURE",
                        detail=f"Error tokenizing data. C error: Expected {limit} fields in "
                        f"line {number + 1}, saw {count}",
                    ),
                    code="E_CSV_STRUCTURE",
                )

    def drop_end_marker(self) -> None:
        """At the end of the stream: the marker must be the last record (see `_EndMarked`)."""
        if self.texts and self.texts[-1] == END_MARK and self.numbers[-1] == self.last:
            self.numbers.pop()
            self.texts.pop()
            self.cells.pop()
            self.last -= 1  # records are numbered without gaps: this is the file's last
            return
        last = max(self.last, self._next - 1)  # the record left open
        earlier = bisect.bisect_left(self.numbers, last)
        self._check_widths(self.numbers[:earlier], self.cells[:earlier])  # reported first
        raise InputFileError(  # pandas' words, as the file was read with it before
            message(
                "E_CSV_STRUCTURE",
                detail=f"Error tokenizing data. C error: EOF inside string starting at row {last}",
            ),
            code="E_CSV_STRUCTURE",
        )

    def take(self, end: int) -> pd.DataFrame:
        """The odd records numbered below `end`, parsed; index: record number."""
        n = bisect.bisect_left(self.numbers, end)
        numbers, texts, cells = self.numbers[:n], self.texts[:n], self.cells[:n]
        del self.numbers[:n], self.texts[:n], self.cells[:n]
        if not numbers:
            return pd.DataFrame()
        limit = self.width + EXTRA_COLUMNS
        self._check_widths(numbers, cells)
        frame = pd.read_csv(
            io.StringIO("\n".join(texts)),
            sep=self.delimiter,
            header=None,
            names=list(range(limit)),
            dtype=str,
            skip_blank_lines=False,
            na_filter=False,
            keep_default_na=False,
            engine="c",
            index_col=False,
        )
        if len(frame) != len(numbers):  # pragma: no cover - each text is one record
            raise InputFileError(
                message("E_CSV_STRUCTURE", detail="unexpected record split"),
                code="E_CSV_STRUCTURE",
            )
        frame.index = pd.Index(numbers, dtype="int64")
        frame = frame.fillna("").astype(STR)
        beyond = [c for c in frame.columns[self.width :] if (frame[c] != "").any()]
        return frame[list(frame.columns[: self.width]) + beyond]


def _first_records(sample: str, delimiter: str, limit: int) -> Iterator[list[str]]:
    reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter)
    for _ in range(limit):
        try:
            yield next(reader)
        except (StopIteration, csv.Error):
            return


def _finish_chunk(chunk: pd.DataFrame, header: HeaderMap, extra_cols: list[int]) -> RawChunk:
    """Bind columns, number rows (record index + 1) and drop completely blank rows."""
    cells = chunk.astype(STR)
    blank = _blank_rows(cells)
    frame = _bind(cells, header)
    frame[EXTRA] = ""
    if extra_cols:
        extra = cells[extra_cols]
        has_extra = (extra != "").any(axis=1) & ~blank
        if has_extra.any():  # rare rows: a per-row join is fine here
            wide = extra[has_extra]
            frame.loc[has_extra, EXTRA] = wide.apply(
                lambda r: "".join(f"「{v}」" for v in r if v), axis=1
            )
    blank_rows = int(blank.sum())
    if blank_rows:  # rare: filtering copies every cell
        frame = frame[~blank]
    return RawChunk(frame.reset_index(drop=True), blank_rows=blank_rows)


def _blank_rows(cells: pd.DataFrame) -> pd.Series:
    """Rows whose every cell is empty after trimming.

    Column by column over the rows still blank so far: after the first column almost none are,
    so this trims about one column instead of all of them (3 % of a check before).
    """
    blank = pd.Series(True, index=cells.index)
    for col in cells.columns:
        still = blank[blank].index
        if still.empty:
            break
        blank[still] = (trim(cells.loc[still, col]) == "").to_numpy(dtype=bool)
    return blank


class SheetReader:
    """Reads the contract's sheet (or the first) of a spreadsheet through calamine."""

    def __init__(self, path: Path, contract: Contract) -> None:
        self.path = path
        self.scan = hash_file(path)
        self.scan.encoding = path.suffix.lower().lstrip(".").upper()
        try:
            workbook = calamine.CalamineWorkbook.from_path(str(path))
            names = workbook.sheet_names
            if contract.sheet and contract.sheet not in names:
                raise InputFileError(
                    message("E_SHEET_NOT_FOUND", sheet=contract.sheet, sheets="、".join(names)),
                    code="E_SHEET_NOT_FOUND",
                )
            sheet = (
                workbook.get_sheet_by_name(contract.sheet)
                if contract.sheet
                else workbook.get_sheet_by_index(0)
            )
            start = sheet.start or (0, 0)
            end = sheet.end or (0, 0)
            merged = sheet.merged_cell_ranges or []
            self._rows = iter(sheet.iter_rows())  # absolute rows from 0, columns from start
        except InputFileError:
            raise
        except (*_CALAMINE_ERRORS, OSError, ValueError) as exc:
            raise InputFileError(
                message("E_XLSX_UNREADABLE", detail=f"{type(exc).__name__}: {exc}"),
                code="E_XLSX_UNREADABLE",
            ) from None
        self._rows_total = end[0] + 1
        self._position = 0
        # Merged ranges, in this reader's column coordinates: every cell of a range takes the
        # value of its top-left cell (a merged title, a header spanning two rows, an authority
        # merged down a block of rows).
        self._merged = [(r0, c0 - start[1], r1, c1 - start[1]) for (r0, c0), (r1, c1) in merged]
        self._anchors: dict[tuple[int, int], str] = {}
        head = self._read(HEADER_SEARCH_ROWS)
        self.header = find_header(head.to_numpy().tolist(), contract)
        self.warnings = _unknown_column_warnings(self.header)
        self._pending = head

    def _read(self, n: int) -> pd.DataFrame:
        """The next `n` rows as text, indexed by 0-based sheet row, merged cells filled."""
        first = self._position
        raw: list[Sequence[object]] = []
        for row in self._rows:
            raw.append(row)
            if len(raw) >= n:
                break
        self._position += len(raw)
        frame = _cells_to_text(raw)
        frame.index = pd.RangeIndex(first, first + len(frame))
        for r0, c0, r1, c1 in self._merged:
            lo, hi = max(r0, first), min(r1, first + len(frame) - 1)
            if lo > hi or c0 < 0:
                continue
            if r0 >= first and c0 in frame.columns:
                self._anchors[(r0, c0)] = str(frame.at[r0, c0])
            for c in range(c0, c1 + 1):
                if c not in frame.columns:
                    frame[c] = ""
            frame.loc[lo:hi, c0:c1] = self._anchors.get((r0, c0), "")
        return frame

    def confirm(self) -> FileScan:
        return self.scan

    def chunks(self, rows: int) -> Iterator[RawChunk]:
        frame, self._pending = self._pending, pd.DataFrame()
        while not frame.empty:
            body = frame[frame.index > self.header.row_index]
            if not body.empty:
                body = body.reindex(columns=range(max(self.header.width, len(body.columns))))
                extra_cols = list(range(self.header.width, len(body.columns)))
                yield _finish_chunk(body.fillna(""), self.header, extra_cols)
            frame = self._read(rows)

    def progress(self) -> float:
        return min(1.0, self._position / max(1, self._rows_total))


def _cells_to_text(rows: list[Sequence[object]]) -> pd.DataFrame:
    """Spreadsheet cells as the text an office meant, converted column by column.

    Integer-valued numbers lose the “.0” calamine gives them (工商注册号 typed as a number);
    date cells become ISO dates (time kept when present) for the date normaliser; Excel serial
    numbers in date columns stay numbers and are converted there.
    """
    frame = pd.DataFrame(rows, dtype=object)
    out: dict[object, pd.Series] = {}
    for col in frame.columns:
        cells = frame[col]
        kinds = cells.map(type)
        text = cells.astype(str)
        is_float = kinds.isin([float])
        if is_float.any():
            text = text.mask(is_float, text.str.replace(r"\.0$", "", regex=True))
        is_datetime = kinds.isin([datetime])
        if is_datetime.any():
            text = text.mask(is_datetime, text.str.replace(" 00:00:00", "", regex=False))
        out[col] = text.mask(cells.isna(), "")
    return pd.DataFrame(out, index=frame.index, dtype=STR)
