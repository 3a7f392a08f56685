"""The scan beside the read: a large CSV whose first bytes are UTF-8 is read as UTF-8 while a
thread scans it whole. Whatever the scan finds, the check must come out exactly as if the scan
had come first: the same result, the same error, nothing read twice into the outputs."""

from __future__ import annotations

import codecs
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from etl import check
from etl.check import check_file
from etl.errors import InputFileError
from etl.generate import generate_file
from etl.intake import readers
from tests.conftest import AS_OF

ROWS = 1_200
CHUNK = 1_000  # the first chunk (~480 KB) ends past the first 256 KiB, before the last rows


class Sink:
    """Everything a load would be given, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def write(self, frame: pd.DataFrame) -> None:
        self.calls.append(("write", frame["_row"].tolist()))

    def reject(self, rows: np.ndarray, raw: pd.DataFrame) -> None:
        self.calls.append(("reject", rows.tolist()))

    def finish(self, dropped_rows: np.ndarray, headers: dict[str, str]) -> None:
        self.calls.append(("finish", dropped_rows.tolist()))


@pytest.fixture(scope="module")
def utf8(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("beside") / "penalty.csv"
    generate_file("penalty", ROWS, path, seed=7, error_rate=0.05)
    return path.read_bytes()


def _late(data: bytes, bad: bytes, line: int = -1) -> bytes:
    """`data` with `bad` bytes in a cell of a line (default the last: past the first chunk)."""
    starts = [0] + [i + 1 for i, byte in enumerate(data.rstrip(b"\n")) if byte == 0x0A]
    comma = data.index(b",", starts[line])
    return data[:comma] + bad + data[comma:]


def _variants(utf8: bytes) -> dict[str, bytes]:
    text = utf8.decode()
    return {
        "utf-8": utf8,
        "utf-8-bom": codecs.BOM_UTF8 + utf8,
        "gb18030": text.encode("gb18030"),
        "utf-16": text.encode("utf-16"),
        # UTF-8 up front, a GBK character further down: no codec decodes it all, so the
        # scan's error, not what the read of the first chunks made of it
        "gbk-late": _late(utf8, "违法".encode("gbk")),
        # the same inside the first chunk, past the first 256 KiB: read before the scan ends
        "gbk-first-chunk": _late(utf8, "违法".encode("gbk"), line=700),
        "undecodable-late": _late(utf8, b"\xff\xff"),
        "cut-short": utf8 + "中".encode()[:2],
    }


def _checked(path: Path, monkeypatch: pytest.MonkeyPatch, beside: bool) -> tuple[Any, Sink]:
    with monkeypatch.context() as mp:
        mp.setattr(readers, "SCAN_BESIDE_BYTES", 0 if beside else 1 << 62)
        sink = Sink()
        result = check_file(path, "penalty", as_of=AS_OF, sink=sink, chunk_rows=CHUNK)
    return result.to_json(), sink


def _spy_on_open(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """What `check` passes `open_table` beyond the path and contract, call by call."""
    opened: list[tuple[Any, ...]] = []
    real_open = check.open_table

    def spy(*args: Any) -> Any:
        opened.append(args[2:])
        return real_open(*args)

    monkeypatch.setattr(check, "open_table", spy)
    return opened


@pytest.mark.parametrize(
    "variant",
    [
        "utf-8",
        "utf-8-bom",
        "gb18030",
        "utf-16",
        "gbk-late",
        "gbk-first-chunk",
        "undecodable-late",
        "cut-short",
    ],
)
def test_same_check_as_scanning_first(
    variant: str, utf8: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "penalty.csv"
    path.write_bytes(_variants(utf8)[variant])
    opened = _spy_on_open(monkeypatch)

    first, first_sink = _checked(path, monkeypatch, beside=False)
    opened.clear()
    beside, beside_sink = _checked(path, monkeypatch, beside=True)

    assert beside == first
    assert beside_sink.calls == first_sink.calls
    assert opened == [()]  # opened once, no scan handed over: nothing was read again
    if variant in ("utf-8", "utf-8-bom", "gb18030", "utf-16"):
        assert first["rows_read"] == ROWS and not first["file_errors"]
    else:
        assert [e["code"] for e in first["file_errors"]] == ["E_ENCODING"]


def test_a_scan_that_disagrees_after_the_first_chunk_reads_again(
    utf8: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first chunk is read and validated as UTF-8, then the scan names another codec
    (here UTF-8 with a BOM, which reads a BOM-less file the same): the file is read again
    with it, and the outputs hold each row once, as when the scan came first."""
    path = tmp_path / "penalty.csv"
    path.write_bytes(utf8)
    real_scan = readers.scan_text_file

    def bom_scan(p: Path) -> readers.FileScan:
        return dataclasses.replace(real_scan(p), encoding="UTF-8-BOM", codec="utf-8-sig")

    monkeypatch.setattr(readers, "scan_text_file", bom_scan)
    opened = _spy_on_open(monkeypatch)
    expected, expected_sink = _checked(path, monkeypatch, beside=False)
    opened.clear()
    got, got_sink = _checked(path, monkeypatch, beside=True)
    assert [bool(a) for a in opened] == [False, True]
    assert got == expected and got_sink.calls == expected_sink.calls
    assert got["encoding"] == "UTF-8-BOM" and got["rows_read"] == ROWS


def test_a_wrong_guess_before_the_header_reads_again(
    utf8: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Assumed UTF-8 (forced here), a GBK header is not found: the scan's GBK reads it."""
    path = tmp_path / "penalty.csv"
    path.write_bytes(utf8.decode().encode("gb18030"))
    expected, expected_sink = _checked(path, monkeypatch, beside=False)
    monkeypatch.setattr(readers, "_assumed_utf8", lambda head: "UTF-8")
    got, got_sink = _checked(path, monkeypatch, beside=True)
    assert got == expected and got_sink.calls == expected_sink.calls
    assert got["encoding"] in ("GBK", "GB18030") and got["rows_read"] == ROWS


def test_the_scan_runs_beside_the_read(
    utf8: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The header is found and the first chunk read before the scan has finished."""
    path = tmp_path / "penalty.csv"
    path.write_bytes(utf8)
    release = readers.threading.Event()
    real_scan = readers.scan_text_file

    def slow_scan(p: Path) -> readers.FileScan:
        assert release.wait(30), "the read waited for the scan"
        return real_scan(p)

    monkeypatch.setattr(readers, "scan_text_file", slow_scan)
    monkeypatch.setattr(readers, "SCAN_BESIDE_BYTES", 0)
    reader = readers.open_table(path, check.load_contract("penalty"))
    first = next(reader.chunks(CHUNK))
    assert len(first.frame) == CHUNK - 1  # the header is the first record of the first chunk
    release.set()
    assert reader.confirm().encoding == "UTF-8"


def test_an_error_before_the_scan_has_spoken_yields_to_it(
    utf8: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytes that are not UTF-8 may break a text kernel in the first chunk before the scan
    ends: the scan's E_ENCODING is the outcome, as when the scan came first, not a crash."""
    path = tmp_path / "penalty.csv"
    path.write_bytes(utf8)

    def undecodable(p: Path) -> readers.FileScan:
        raise InputFileError("无法识别文件编码", code="E_ENCODING")

    def broken(*args: Any) -> Any:
        raise pa.ArrowInvalid("Invalid UTF8 payload")

    monkeypatch.setattr(readers, "scan_text_file", undecodable)
    monkeypatch.setattr(check, "validate_chunk", broken)
    expected, _ = _checked(path, monkeypatch, beside=False)
    got, _ = _checked(path, monkeypatch, beside=True)
    assert got == expected
    assert [e["code"] for e in got["file_errors"]] == ["E_ENCODING"]
