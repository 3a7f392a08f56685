"""Flag evaluation gives the same flags whether the matching records fit in memory or spill to
partition files (a large store), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy.engine import Engine

from etl.flags import engine as flag_engine
from etl.flags.engine import evaluate
from etl.flags.policy import load_policy
from etl.generate import generate_file
from etl.run import RunSummary

AS_OF = date(2026, 11, 21)
OFFICES = {"penalty": "jingan-amr", "abnormal_patent": "sh-ipa"}  # schemas/offices.yaml


def test_spilled_evaluation_equals_in_memory_evaluation(
    engine: Engine,
    _isolated_home: Path,
    run: Callable[..., RunSummary],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for dataset, rows in (("penalty", 6_000), ("abnormal_patent", 3_000)):
        folder = _isolated_home / "inbox" / OFFICES[dataset] / dataset
        folder.mkdir(parents=True)
        generate_file(dataset, rows, folder / f"{dataset}.csv", seed=5, error_rate=0.0)
    summary = run(AS_OF)
    assert not summary.failed
    policy = load_policy()
    with engine.connect() as conn:
        held = evaluate(conn, AS_OF, policy, chunk_rows=1_000)
        monkeypatch.setattr(flag_engine, "SPILL_ROWS", 100)  # spills from the second chunk on
        monkeypatch.setattr(flag_engine, "PARTITIONS", 7)
        spilled = evaluate(conn, AS_OF, policy, chunk_rows=1_000)
    fired = set(held.flags["rule_id"])
    assert {"SD-IP-REPEAT", "SD-PATENT-MASS", "GD-PATENT-UNCORRECTED"} <= fired, fired
    pd.testing.assert_frame_equal(spilled.flags, held.flags)
    pd.testing.assert_frame_equal(spilled.evidence, held.evidence)
    assert spilled.unidentified == held.unidentified
