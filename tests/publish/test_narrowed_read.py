"""The publication reads only the penalties that may be public (`windows.may_be_public`); its
files are byte for byte those of a read of every as-of row, Parquet row groups included."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.publish import publish
from etl.publish.writer import sha256_of
from tests.store.test_bulk_read import _store
from tests.store.test_query_where import _penalties

DAY = date(2026, 11, 21)


def _files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): sha256_of(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def test_narrowing_changes_no_byte(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _store(engine, _penalties(DAY, 400, seed=3))
    narrowed = publish(engine, DAY, home=tmp_path / "narrowed", datasets=("penalty",), chunk_rows=7)
    extract = sys.modules["etl.publish.extract"]  # `etl.publish.extract` is also a function
    monkeypatch.setattr(extract, "may_be_public", lambda table, profile, day: sa.true())
    full = publish(engine, DAY, home=tmp_path / "full", datasets=("penalty",), chunk_rows=7)
    rows = narrowed.datasets[0].rows
    assert rows == full.datasets[0].rows and 0 < rows < 400
    assert _files(tmp_path / "narrowed") == _files(tmp_path / "full")
