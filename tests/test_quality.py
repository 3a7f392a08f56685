"""Great Expectations beside the row rules: the quality process gives what the inline run gives."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from etl import quality
from etl.check import check_file
from etl.contracts import load_contract
from etl.errors import ConfigError
from etl.generate import generate_file
from etl.offices import load_offices
from etl.quality import QualityError, QualityProcess, QualityRun, quality_run

AS_OF = pd.Timestamp("2026-11-21").date()


def _bad_batch() -> pd.DataFrame:
    """A batch that breaks two expectations (no USCC, a negative amount)."""
    contract = load_contract("penalty")
    frame = pd.DataFrame({f.name: pd.Series(["x", "y"], dtype="str") for f in contract.fields})
    frame["fine_amount"] = pd.Series([-1.0, 2.0])
    frame["confiscation_amount"] = pd.Series([0.5, 0.0])
    return frame


def test_process_summary_equals_inline_summary() -> None:
    contract = load_contract("penalty")
    inline, process = QualityRun(contract), QualityProcess(contract)
    try:
        for run in (inline, process):
            run.validate(_bad_batch())
            run.validate(_bad_batch().iloc[:1])
            run.validate(_bad_batch().iloc[:0])  # empty batches are skipped by both
        assert process.summary() == inline.summary()
        assert process.summary()["success"] is False and process.summary()["batches"] == 2
    finally:
        process.close()


def test_check_file_gives_the_same_result_in_either_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "p.csv"
    generate_file("penalty", 3_000, path, seed=7, error_rate=0.05)
    office = load_offices().get("jingan-amr")
    results = {}
    for mode in ("inline", "process"):
        monkeypatch.setenv("CREDITPIPE_QUALITY", mode)
        result = check_file(path, office=office, as_of=AS_OF, chunk_rows=1_000)
        results[mode] = (result.to_json(), result.quality)
    assert results["process"] == results["inline"]
    summary = results["process"][1]
    assert summary is not None and summary["batches"] >= 3  # several chunks went over the pipe
    assert summary["rows"] == results["process"][0]["accepted"]


def test_a_dead_quality_process_is_an_error_not_a_hang() -> None:
    process = QualityProcess(load_contract("penalty"))
    process._process.kill()
    process._process.join()
    with pytest.raises(QualityError, match="意外退出"):
        for _ in range(50):  # the pipe may take a batch or two before it reports the broken end
            process.validate(_bad_batch())
        process.summary()
    process.close()


def test_auto_uses_a_process_for_large_files_only(monkeypatch: pytest.MonkeyPatch) -> None:
    contract = load_contract("penalty")
    monkeypatch.delenv("CREDITPIPE_QUALITY", raising=False)
    assert isinstance(quality_run(contract, quality.PROCESS_FROM_BYTES - 1), QualityRun)
    large = quality_run(contract, quality.PROCESS_FROM_BYTES)
    try:
        assert isinstance(large, QualityProcess)
    finally:
        large.close()
    monkeypatch.setenv("CREDITPIPE_QUALITY", "inline")
    assert isinstance(quality_run(contract, 10**12), QualityRun)


def test_unknown_quality_mode_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITPIPE_QUALITY", "sometimes")
    with pytest.raises(ConfigError, match="CREDITPIPE_QUALITY"):
        quality_run(load_contract("penalty"), 1)


def test_batches_are_not_fingerprinted() -> None:
    """GX would hash every value of every batch just to label it (see QualityRun)."""
    from great_expectations.execution_engine import pandas_execution_engine

    engine = pandas_execution_engine.PandasExecutionEngine
    assert "HASH_THRESHOLD" in engine.get_batch_data_and_markers.__code__.co_names  # still read
    run = QualityRun(load_contract("penalty"))
    run.validate(_bad_batch())
    assert pandas_execution_engine.HASH_THRESHOLD == 0
