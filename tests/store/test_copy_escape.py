"""PostgreSQL COPY escapes: a column skips the replacements only when no value can need one."""

from __future__ import annotations

import pyarrow as pa
import pytest

from etl.store.load import _copy_escaped


def test_plain_text_is_passed_through_unchanged() -> None:
    values = pa.array(["行政处罚", None, "plain text, 42"], pa.string())
    assert _copy_escaped(values) is values


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("back\\slash", "back\\\\slash"),
        ("tab\there", "tab\\there"),
        ("line\nfeed", "line\\nfeed"),
        ("carriage\rreturn", "carriage\\rreturn"),
        ("unit \x1f separator", "unit \x1f separator"),  # COPY takes it as it is
    ],
)
def test_a_value_needing_an_escape_gets_it(value: str, escaped: str) -> None:
    values = pa.array(["plain", value, None], pa.string())
    assert _copy_escaped(values).to_pylist() == ["plain", escaped, None]


def test_a_slice_is_judged_on_its_own_values_or_more() -> None:
    values = pa.array(["a\tb", "plain", "also plain"], pa.string()).slice(1)
    assert _copy_escaped(values).to_pylist() == ["plain", "also plain"]


def test_all_null_and_empty_columns() -> None:
    assert _copy_escaped(pa.array([None, None], pa.string())).to_pylist() == [None, None]
    assert _copy_escaped(pa.array(["", ""], pa.string())).to_pylist() == ["", ""]
