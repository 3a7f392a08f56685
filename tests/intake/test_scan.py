"""The encoding scan: UTF-8 validated in blocks, GBK/GB18030 only after UTF-8 fails, offsets."""

from __future__ import annotations

import codecs
import hashlib
from pathlib import Path

import pytest

from etl.errors import InputFileError
from etl.intake import readers
from etl.intake.readers import _Utf8Validator, scan_text_file

# One character of each UTF-8 length, so every block boundary splits one somewhere.
MIXED = "a,中文,é,𠮷田,〔2026〕,ＡＢ\n".encode() * 5


def _utf8_error(data: bytes) -> int | None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start
    return None


def _validate(data: bytes, block: int) -> int | None:
    validator = _Utf8Validator()
    for start in range(0, len(data), block):
        validator.feed(data[start : start + block])
    return validator.finish()


@pytest.mark.parametrize("block", [1, 2, 3, 4, 5, 7, 64])
def test_characters_split_across_blocks_are_utf8(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    monkeypatch.setattr(readers, "_BLOCK", block)
    path = tmp_path / "mixed.csv"
    path.write_bytes(MIXED)
    scan = scan_text_file(path)
    assert (scan.encoding, scan.codec) == ("UTF-8", "utf-8")
    assert (scan.sha256, scan.size) == (hashlib.sha256(MIXED).hexdigest(), len(MIXED))


@pytest.mark.parametrize(
    "data",
    [
        MIXED[:20] + b"\xff" + MIXED,  # an invalid start byte
        MIXED[:5] + "中".encode()[:2] + b"," + MIXED,  # a character missing its last byte
        MIXED + "𠮷".encode()[:3],  # cut short by the end of the file
        MIXED + b"\x80abc",  # a lone continuation byte
        MIXED + b"\xed\xa0\x80",  # an encoded surrogate
        MIXED + b"\xc0\xaf",  # an overlong form
        MIXED + b"\xf4\x90\x80\x80",  # beyond U+10FFFF
        MIXED,
    ],
)
def test_utf8_validation_names_the_byte_python_would(data: bytes) -> None:
    for block in (1, 2, 3, 4, 5, 8, 13, len(data)):
        assert _validate(data, block) == _utf8_error(data), block


@pytest.mark.parametrize("block", [1, 3, 4, 16, 1 << 20])
def test_undecodable_file_names_the_offset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    monkeypatch.setattr(readers, "_BLOCK", block)
    path = tmp_path / "bad.csv"
    path.write_bytes(b"name,code\n" * 3 + b"\xff\xff" + b"tail\n")  # no codec decodes 0xFF
    with pytest.raises(InputFileError) as err:
        scan_text_file(path)
    assert err.value.code == "E_ENCODING"
    assert "第 30 字节处无法解码" in err.value.message


@pytest.mark.parametrize("block", [3, 1 << 20])
def test_gbk_and_gb18030_are_found_once_utf8_fails_late(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    monkeypatch.setattr(readers, "_BLOCK", block)
    ascii_head = b"name,code\n" * 50  # UTF-8 fails only after several blocks
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes(ascii_head + "静安区,市场监督管理局\n".encode("gbk"))
    gb18030 = tmp_path / "gb18030.csv"
    gb18030.write_bytes(ascii_head + "𠮷田花子,静安\n".encode("gb18030"))
    assert scan_text_file(gbk).encoding == "GBK"
    scan = scan_text_file(gb18030)
    assert (scan.encoding, scan.codec) == ("GB18030", "gb18030")
    assert scan.sha256 == hashlib.sha256(gb18030.read_bytes()).hexdigest()


def test_bom_files(tmp_path: Path) -> None:
    bom = tmp_path / "bom.csv"
    bom.write_bytes(codecs.BOM_UTF8 + MIXED)
    assert scan_text_file(bom).encoding == "UTF-8-BOM"
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes(MIXED.decode().encode("utf-16"))
    assert scan_text_file(utf16).encoding == "UTF-16"


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(InputFileError) as err:
        scan_text_file(path)
    assert err.value.code == "E_FILE_EMPTY"
