"""Identifier check algorithms (SPEC.md §3), vectorised over whole columns.

Each function takes a Series of already-normalised strings (NFKC, no whitespace, upper-case)
and returns boolean masks plus the expected check character, computed with numpy over a
fixed-width byte matrix: no per-row Python.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from etl.text import STR, arrow_strings, distinct_values, extract, spread

# GB 32100-2015: alphabet without I O S V Z; a character's value is its index.
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = np.array([1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28])
USCC_PATTERN = r"^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$"

# GB 11643-1999: 17 digits weighted, check = "10X98765432"[sum mod 11].
ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
ID_CHECK = "10X98765432"
ID_PATTERN = r"^[0-9]{17}[0-9X]$"

# Patent application numbers from 2003-10: year(4) + type(1) + serial(7), check character.
PATENT_WEIGHTS = np.array([2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5])
PATENT_TYPES = "12389"  # 发明, 实用新型, 外观设计, PCT发明, PCT实用新型
PATENT_PATTERN = r"^(?:CN|ZL)?(?P<body>[0-9]{4}[12389][0-9]{7})\.?(?P<check>[0-9X])$"

_USCC_BYTES = np.frombuffer(USCC_ALPHABET.encode("ascii"), dtype=np.uint8)
_USCC_CHARS = pa.array([*USCC_ALPHABET, ""])
_USCC_VALUE = np.full(256, -1, dtype=np.int64)
for _i, _c in enumerate(USCC_ALPHABET):
    _USCC_VALUE[ord(_c)] = _i


def _byte_matrix(values: pd.Series, width: int) -> np.ndarray:
    """Stack equal-width ASCII strings into an (n, width) uint8 matrix."""
    if values.empty:
        return np.empty((0, width), dtype=np.uint8)
    joined = "".join(values.tolist()).encode("ascii")
    return np.frombuffer(joined, dtype=np.uint8).reshape(-1, width)


@dataclass(frozen=True)
class CheckOutcome:
    """Per-row result of an identifier check (index aligned with the input)."""

    format_ok: pd.Series  # well-formed (length, alphabet, structure)
    checksum_ok: pd.Series  # well-formed and the check character matches
    expected: pd.Series  # the check character the first characters call for ("" if malformed)


def uscc_check_char(body: pd.Series) -> pd.Series:
    """GB 32100 check characters for 17-character USCC bodies from the alphabet."""
    values = _USCC_VALUE[_byte_matrix(body, 17)]
    remainder = (31 - (values @ USCC_WEIGHTS) % 31) % 31
    alphabet = np.array(list(USCC_ALPHABET))
    return pd.Series(alphabet[remainder], index=body.index, dtype=STR)


_Outcome = TypeVar("_Outcome", bound=CheckOutcome)


def _per_distinct(values: pd.Series, check: Callable[[pd.Series], _Outcome]) -> _Outcome:
    """`check` once per distinct value, spread back to the rows, when values repeat a lot
    (an authority's code on every row of its file): the same outcome for less work."""
    repeated = distinct_values(values)
    if repeated is None:
        return check(values)
    codes, distinct = repeated
    outcome = check(distinct)
    return replace(
        outcome,
        **{f.name: spread(getattr(outcome, f.name), codes, values.index) for f in fields(outcome)},
    )


def check_uscc(values: pd.Series) -> CheckOutcome:
    """GB 32100-2015 format and check character."""
    return _per_distinct(values, _check_uscc)


def _check_uscc(values: pd.Series) -> CheckOutcome:
    """Arrow's regex kernel for the format, numpy over the well-formed codes' bytes for the
    check character: no pandas masked assignment (which copied the column per call)."""
    text = arrow_strings(values)
    format_ok = pc.fill_null(pc.match_substring_regex(text, USCC_PATTERN), False)
    codes = _fixed_width_bytes(pc.filter(text, format_ok), 18)  # the pattern: 18 ASCII bytes
    remainder = (31 - (_USCC_VALUE[codes[:, :17]] @ USCC_WEIGHTS) % 31) % 31
    ok = format_ok.to_numpy(zero_copy_only=False)
    checksum_ok = np.zeros(len(ok), dtype=bool)
    checksum_ok[ok] = codes[:, 17] == _USCC_BYTES[remainder]
    # "" for a malformed code: index len(alphabet) of the dictionary below.
    which = np.full(len(ok), len(USCC_ALPHABET), dtype=np.int8)
    which[ok] = remainder
    expected = pa.DictionaryArray.from_arrays(pa.array(which), _USCC_CHARS).cast(pa.string())
    index = values.index
    return CheckOutcome(
        pd.Series(ok, index=index),
        pd.Series(checksum_ok, index=index),
        pd.Series(expected, index=index, dtype=STR),
    )


def _fixed_width_bytes(text: pa.Array, width: int) -> np.ndarray:
    """An (n, width) uint8 matrix of strings that are all `width` bytes long, without copies."""
    if not len(text):
        return np.empty((0, width), dtype=np.uint8)
    _, offsets, data_buffer = text.buffers()
    offset_type = np.int64 if pa.types.is_large_string(text.type) else np.int32
    start = int(np.frombuffer(offsets, dtype=offset_type)[text.offset])
    data = np.frombuffer(data_buffer, dtype=np.uint8)
    return data[start : start + len(text) * width].reshape(-1, width)


def id_check_char(body: pd.Series) -> pd.Series:
    """GB 11643 check characters for 17-digit bodies."""
    digits = _byte_matrix(body, 17).astype(np.int64) - ord("0")
    check = np.array(list(ID_CHECK))[(digits @ ID_WEIGHTS) % 11]
    return pd.Series(check, index=body.index, dtype=STR)


@dataclass(frozen=True)
class IdOutcome(CheckOutcome):
    """GB 11643 outcome; `birth_ok` says positions 7–14 are a real calendar date."""

    birth_ok: pd.Series


def check_resident_id(values: pd.Series, latest_birth: pd.Timestamp) -> IdOutcome:
    """GB 11643-1999: 18 characters, a real birth date no later than `latest_birth`, check."""
    return _per_distinct(values, lambda distinct: _check_resident_id(distinct, latest_birth))


def _check_resident_id(values: pd.Series, latest_birth: pd.Timestamp) -> IdOutcome:
    format_ok = values.str.fullmatch(ID_PATTERN).fillna(False).astype(bool)
    good = values[format_ok]
    birth = pd.to_datetime(good.str.slice(6, 14), format="%Y%m%d", errors="coerce")
    birth_ok = pd.Series(False, index=values.index)
    birth_ok[format_ok] = (birth.notna() & (birth <= latest_birth)).to_numpy()
    expected = pd.Series("", index=values.index, dtype=STR)
    expected[format_ok] = id_check_char(good.str.slice(0, 17))
    checksum_ok = format_ok & (values.str.slice(17, 18) == expected).fillna(False)
    return IdOutcome(format_ok, checksum_ok.astype(bool), expected, birth_ok)


def patent_check_char(body: pd.Series) -> pd.Series:
    """Check characters for 12-digit application-number bodies (Σ mod 11, 10 → X)."""
    digits = _byte_matrix(body, 12).astype(np.int64) - ord("0")
    remainder = (digits @ PATENT_WEIGHTS) % 11
    chars = np.array([str(d) for d in range(10)] + ["X"])
    return pd.Series(chars[remainder], index=body.index, dtype=STR)


def check_patent_appno(values: pd.Series) -> tuple[CheckOutcome, pd.Series]:
    """Check application numbers; also returns the canonical `YYYYTNNNNNNN.C` form."""
    parts = extract(values, PATENT_PATTERN)
    body, check = parts["body"], parts["check"]
    format_ok = body.notna() & (body.str.slice(0, 4).astype("float").fillna(0) >= 2003)
    format_ok = format_ok.astype(bool)
    expected = pd.Series("", index=values.index, dtype=STR)
    expected[format_ok] = patent_check_char(body[format_ok])
    checksum_ok = format_ok & (check == expected).fillna(False)
    canonical = (body + "." + check).where(format_ok)
    return CheckOutcome(format_ok, checksum_ok.astype(bool), expected), canonical
