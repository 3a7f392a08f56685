"""The vectorised text helpers agree with the plain Unicode operations they shortcut."""

from __future__ import annotations

import unicodedata

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from etl.text import STR, canonical, extract, fold, nfkc

SAMPLES = [
    "沪静市监处〔2024〕0号",  # CJK and CJK punctuation only: already NFKC
    "91310112JL29WQQYTL",  # ASCII
    "ＡＢＣ１２３",  # full-width: changes
    "（罚款）",  # full-width brackets: change
    "e\u0301",  # a combining accent composes
    "〶",  # in the CJK punctuation block, yet changes
    "㈱",  # a compatibility character
    "a\u3000b c\u200b",  # whitespace of every kind
    "",
    None,
]


def test_nfkc_and_canonical_match_unicode_for_every_mix() -> None:
    # A mostly-stable column (partial normalisation) and a mostly-changing one (all of it).
    for values in (SAMPLES + ["中文"] * 20, SAMPLES):
        series = pd.Series(values, dtype=STR)
        expected = [None if v is None else unicodedata.normalize("NFKC", v) for v in values]
        assert [None if pd.isna(v) else v for v in nfkc(series)] == expected
        folded = [None if v is None else fold(v) for v in values]
        assert [None if pd.isna(v) else v for v in canonical(series)] == folded


def test_nfkc_of_a_chunked_column() -> None:
    array = pa.chunked_array([pa.array(["ＡＢ", "中"] * 3), pa.array(["x", "e\u0301"] * 3)])
    series = pd.Series(array, dtype=STR)
    assert nfkc(series).tolist() == [unicodedata.normalize("NFKC", v) for v in series]


def test_extract_is_na_where_no_match_or_empty_group() -> None:
    values = pd.Series(["2024-01", "2024", "x", None, ""], dtype=STR)
    parts = extract(values, r"^(?P<y>\d{4})(?:-(?P<m>\d\d))?$")
    assert parts["y"].tolist()[:2] == ["2024", "2024"]
    assert parts["y"].isna().tolist() == [False, False, True, True, True]
    assert parts["m"].isna().tolist() == [False, True, True, True, True]
    assert parts["y"].dtype == STR
    assert pc.all(pc.is_null(pa.array(parts["m"][1:]))).as_py()
