"""Text normalisation shared by headers, look-ups and cell values.

Scalar helpers serve the (small) header row and contract look-ups. The Series helpers serve the
data path: they call pyarrow compute kernels directly (RE2 regexes, Unicode trimming and NFKC in
C++), because pandas falls back to per-value Python `re` for patterns with `\\s` or `\\u`
escapes and for `str.extract` on non-ASCII text (bench/: 40% of check time before this).
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# Whitespace as clerks type it: ASCII, U+3000 (ideographic space), NBSP, zero-width characters
# and a stray BOM that Excel leaves in the first cell. Unicode White_Space covers the first
# three; the zero-width ones are listed.
_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
_ALL_SPACE_CLASS = "[\\s\u00a0\u3000" + _ZERO_WIDTH + "]+"  # literal characters: RE2-safe
_ALL_SPACE = re.compile(_ALL_SPACE_CLASS)
_SAMPLE_ROWS = 1024


def fold(text: str) -> str:
    """NFKC (full-width → half-width) and drop every whitespace character."""
    return _ALL_SPACE.sub("", unicodedata.normalize("NFKC", text))


def normalise_header(text: str) -> str:
    """The comparison form of a header cell.

    Trims, removes inner whitespace and newlines, unifies full-width and half-width brackets and
    letters (NFKC), drops the required-field asterisks templates put in front, and lower-cases
    ASCII, so that `＊罚款金额（万元）`, `罚款金额(万元)` and `罚款金额\\n(万元)` compare equal.
    """
    return fold(text).strip("*").lower()


def lookup_key(text: str) -> str:
    """The comparison form of a category value (for contract look-ups)."""
    return fold(text).lower()


def _arrow(values: pd.Series) -> pa.Array:
    return pa.array(values.astype("str"))


def _series(array: pa.Array | pa.ChunkedArray, like: pd.Series) -> pd.Series:
    return pd.Series(array, index=like.index, dtype="str")


def trim(values: pd.Series) -> pd.Series:
    """Trim leading and trailing whitespace (incl. U+3000 and NBSP); characters stay as typed."""
    trimmed = pc.utf8_trim(pc.utf8_trim_whitespace(_arrow(values)), characters=_ZERO_WIDTH)
    return _series(pc.utf8_trim_whitespace(trimmed), values)


def nfkc(values: pd.Series) -> pd.Series:
    """Full-width → half-width (and the other compatibility foldings)."""
    return _series(pc.utf8_normalize(_arrow(values), form="NFKC"), values)


def canonical(values: pd.Series) -> pd.Series:
    """Identifier form: full-width → half-width (NFKC) and no whitespace anywhere."""
    folded = pc.utf8_normalize(_arrow(values), form="NFKC")
    return _series(
        pc.replace_substring_regex(folded, pattern=_ALL_SPACE_CLASS, replacement=""), values
    )


def lookup_keys(values: pd.Series) -> pd.Series:
    """Vectorised `lookup_key`."""
    return _series(pc.utf8_lower(_arrow(canonical(values))), values)


def arrow_strings(values: pd.Series) -> pa.Array:
    """The values as one Arrow string array (chunks combined)."""
    array = _arrow(values)
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def factorize(values: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """Codes (row → distinct value) and the distinct values, in order of first appearance.

    Arrow's hash kernel: several times faster than `pd.factorize`, which also builds an Index.
    """
    encoded = pc.dictionary_encode(arrow_strings(values), null_encoding="encode")
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    return codes, pd.Series(encoded.dictionary, dtype="str")


def distinct_values(values: pd.Series) -> tuple[np.ndarray, pd.Series] | None:
    """`factorize(values)` when a column repeats its values (at most one distinct value in two
    rows), else None. A column whose first rows are (almost) all different is not tried: a
    sample says little more (dates: 92 % distinct in 1,024 rows, 5 % in 100,000), but a
    sample this unique is a name or a case number."""
    if len(values) < _SAMPLE_ROWS:
        return None
    _, sampled = factorize(values.iloc[:_SAMPLE_ROWS])
    if len(sampled) > _SAMPLE_ROWS * 0.95:
        return None
    codes, distinct = factorize(values)
    return (codes, distinct) if len(distinct) <= len(values) // 2 else None


def extract(values: pd.Series, pattern: str) -> pd.DataFrame:
    """Named groups of an RE2 `pattern` as columns; rows that do not match are NA throughout."""
    names = re.compile(pattern).groupindex
    matched = pc.extract_regex(_arrow(values), pattern=pattern)
    valid = pc.is_valid(matched).to_numpy(zero_copy_only=False)
    out = {}
    for name in names:
        column = pd.Series(pc.struct_field(matched, name), index=values.index, dtype="str")
        out[name] = column.where(valid & (column != ""))
    return pd.DataFrame(out, index=values.index)


def split_explode(values: pd.Series, pattern: str) -> pd.Series:
    """Split each value on an RE2 `pattern`; one row per non-empty part, indexed by its row."""
    parts = pc.split_pattern_regex(_arrow(values.fillna("")), pattern=pattern)
    parents = pc.list_parent_indices(parts).to_numpy(zero_copy_only=False)
    flat = pd.Series(pc.list_flatten(parts), index=values.index[parents], dtype="str")
    return flat[flat != ""]
