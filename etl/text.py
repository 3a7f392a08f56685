"""Text normalisation shared by headers, look-ups and cell values.

Scalar helpers serve the (small) header row and contract look-ups; the Series helpers serve the
data path and are vectorised (pandas string methods backed by pyarrow).
"""

from __future__ import annotations

import re
import unicodedata

import pandas as pd

# Whitespace as clerks type it: ASCII, U+3000 (ideographic space), NBSP, zero-width characters
# and a stray BOM that Excel leaves in the first cell.
_SPACE_CHARS = r"\s\u00a0\u3000\u200b\u200c\u200d\u2060\ufeff"
_TRIM_RE = rf"^[{_SPACE_CHARS}]+|[{_SPACE_CHARS}]+$"
_ALL_SPACE_RE = rf"[{_SPACE_CHARS}]+"
_ALL_SPACE = re.compile(_ALL_SPACE_RE)


def fold(text: str) -> str:
    """NFKC (full-width → half-width) and drop every whitespace character."""
    return _ALL_SPACE.sub("", unicodedata.normalize("NFKC", text))


def normalise_header(text: str) -> str:
    """The comparison form of a header cell.

    Trims, removes inner whitespace and newlines, unifies full-width and half-width brackets and
    letters (NFKC), drops the required-field asterisks templates put in front, and lower-cases
    ASCII, so that `＊罚款金额（万元）`, `罚款金额(万元)` and `罚款金额\n(万元)` compare equal.
    """
    return fold(text).strip("*").lower()


def lookup_key(text: str) -> str:
    """The comparison form of a category value (for contract look-ups)."""
    return fold(text).lower()


def trim(values: pd.Series) -> pd.Series:
    """Trim leading and trailing whitespace (incl. U+3000 and NBSP); characters stay as typed."""
    return values.str.replace(_TRIM_RE, "", regex=True)


def canonical(values: pd.Series) -> pd.Series:
    """Identifier form: full-width → half-width (NFKC) and no whitespace anywhere."""
    return values.str.normalize("NFKC").str.replace(_ALL_SPACE_RE, "", regex=True)


def lookup_keys(values: pd.Series) -> pd.Series:
    """Vectorised `lookup_key`."""
    return canonical(values).str.lower()
