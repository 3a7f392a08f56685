"""Great Expectations beside the row rules: the quality process gives what the inline run gives."""

from __future__ import annotations

import faulthandler
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from etl import quality
from etl.check import check_file
from etl.contracts import Contract, load_contract
from etl.errors import ConfigError
from etl.generate import generate_file
from etl.offices import load_offices
from etl.quality import QualityError, QualityProcess, QualityRun, quality_run

AS_OF = pd.Timestamp("2026-11-21").date()


@pytest.fixture(autouse=True)
def _no_hang() -> Iterator[None]:
    """A hang (two processes waiting on each other's pipes) fails with every thread's stack
    instead of blocking the suite."""
    faulthandler.dump_traceback_later(180, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def _bad_batch() -> pd.DataFrame:
    """A batch that breaks two expectations (no USCC, a negative amount)."""
    contract = load_contract("penalty")
    frame = pd.DataFrame({f.name: pd.Series(["x", "y"], dtype="str") for f in contract.fields})
    frame["fine_amount"] = pd.Series([-1.0, 2.0])
    frame["confiscation_amount"] = pd.Series([0.5, 0.0])
    return frame


def test_process_summary_equals_inline_summary() -> None:
    contract = load_contract("penalty")
    inline, process = QualityRun(contract, batch_rows=2), QualityProcess(contract, batch_rows=2)
    try:
        for run in (inline, process):
            run.validate(_bad_batch())  # a full batch: validated at once
            run.validate(_bad_batch().iloc[:1])  # waits for the summary
            run.validate(_bad_batch().iloc[:0])  # empty batches are skipped by both
        assert process.summary() == inline.summary()
        assert process.summary()["success"] is False and process.summary()["batches"] == 2
        assert process.summary()["rows"] == 3
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
    assert summary is not None and summary["batches"] == 1  # three chunks, one GX batch
    assert summary["rows"] == results["process"][0]["accepted"]


def test_a_dead_quality_process_is_an_error_not_a_hang() -> None:
    process = QualityProcess(load_contract("penalty"))
    process._process.kill()
    process._process.wait()
    with pytest.raises(QualityError, match="意外退出"):
        for _ in range(50):  # the pipe may take a batch or two before it reports the broken end
            process.validate(_bad_batch())
        process.summary()
    process.close()


def _not_numbers(contract: Contract, value: str = "y") -> pd.DataFrame:
    """Amounts that are not numbers: never handed over by a check, they break the process."""
    return pd.DataFrame({f.name: pd.Series(["x", value], dtype="str") for f in contract.fields})


def test_a_garbled_answer_from_a_dead_process_is_a_quality_error() -> None:
    """Bytes that are not a frame, read while finding out why the pipe broke, are no reason:
    the exit code is, as a QualityError (not the frame reader's own exception)."""
    process = QualityProcess(load_contract("penalty"))
    process._process.kill()
    process._process.wait()
    real = process._stdout
    process._stdout = io.BytesIO(b"not a frame at all, but longer than a header")
    process._broken = BrokenPipeError("the process is gone")
    try:
        with pytest.raises(QualityError, match="意外退出"):
            process.validate(_bad_batch())
    finally:
        process._stdout = real
        process.close()


def test_an_error_in_the_quality_process_is_raised_with_its_message() -> None:
    contract = load_contract("penalty")
    process = QualityProcess(contract, batch_rows=2)
    with pytest.raises(QualityError, match="ArrowInvalid") as first:
        for _ in range(50):  # reported by the first frame sent after the process has failed
            process.validate(_not_numbers(contract))
        process.summary()
    with pytest.raises(QualityError) as again:  # asked again: the same error, not an exit code
        process.summary()
    assert str(again.value) == str(first.value)
    process.close()
    assert process._process.returncode == 0  # it reported, then left


def test_an_error_longer_than_a_pipe_is_reported_not_a_hang() -> None:
    """The process stops reading before it answers: a checking process blocked on a full
    stdin pipe would otherwise wait for ever on a process blocked on a full stdout pipe."""
    contract = load_contract("penalty")
    process = QualityProcess(contract, batch_rows=2)
    huge = "9" * 50_000 + "x"  # the message quotes it, twice: far over a 64 KiB pipe
    with pytest.raises(QualityError, match="ArrowInvalid"):
        for _ in range(200):
            process.validate(_not_numbers(contract, huge))
        process.summary()
    process.close()


def test_close_ends_a_process_that_ignores_sigterm(monkeypatch: pytest.MonkeyPatch) -> None:
    """A child that ignores SIGTERM (inherited) and reads nothing (importing GX) is killed."""
    monkeypatch.setattr(QualityProcess, "STOP_SECONDS", 1.0)
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        process = QualityProcess(load_contract("penalty"))
    finally:
        signal.signal(signal.SIGTERM, previous)
    for _ in range(QualityProcess.IN_FLIGHT):
        process.validate(_bad_batch())  # queued: the pipe's reader is busy importing
    started = time.monotonic()
    process.close()
    assert time.monotonic() - started < 30
    assert process._process.returncode == -signal.SIGKILL
    assert not process._writer.is_alive()


def test_a_process_that_cannot_start_leaves_gx_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITPIPE_QUALITY", "process")
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    assert isinstance(quality_run(load_contract("penalty"), 10**9), QualityRun)


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
    monkeypatch.setenv("CREDITPIPE_QUALITY", "process")
    small = quality_run(contract, 1)
    try:
        assert isinstance(small, QualityProcess)
    finally:
        small.close()


# A checking process, as a script: its own __main__ module, a quality process, then `END`.
_PARENT = """
import os, signal, sys, time
from pathlib import Path
import pandas as pd
from etl.contracts import load_contract
from etl.quality import QualityProcess

with Path(sys.argv[1]).open("a") as marks:
    marks.write("main\\n")  # once per run of this module as __main__
if __name__ == "__main__":
    contract = load_contract("penalty")
    frame = pd.DataFrame({f.name: pd.Series(["x"] * 1000, dtype="str") for f in contract.fields})
    for field in contract.fields:
        if field.type == "amount":  # numbers, as a check hands them over
            frame[field.name] = 1.0
    process = QualityProcess(contract)
    print(process._process.pid, flush=True)
    END = sys.argv[2]
    if END == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    try:
        while END == "interrupt":
            process.validate(frame)
        print(process.summary()["rows"], flush=True)
    finally:
        process.close()
"""


def _parent(tmp_path: Path, end: str) -> subprocess.Popen[str]:
    script = tmp_path / "parent.py"
    script.write_text(_PARENT, encoding="utf-8")
    root = str(Path(quality.__file__).resolve().parent.parent)  # the checkout under test
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "marks"), end],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "PYTHONPATH": root},
    )  # fmt: skip


def _gone(pid: int, within: float = 60) -> bool:
    """Whether process `pid` has ended (a zombie nobody reaped has) within `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


def test_the_quality_process_does_not_run_the_checking_process_main(tmp_path: Path) -> None:
    """A multiprocessing child would import the parent's __main__ again: under Airflow, all of
    Airflow (+1.1 s, +52 MB a load)."""
    parent = _parent(tmp_path, "summary")
    out, err = parent.communicate(timeout=120)
    assert parent.returncode == 0, err
    assert out.split()[1] == "0"  # a summary came back: no rows were sent
    assert (tmp_path / "marks").read_text() == "main\n"
    assert err == ""


def test_the_quality_process_ends_when_the_checking_process_is_killed(tmp_path: Path) -> None:
    parent = _parent(tmp_path, "kill")
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    parent.wait(timeout=60)
    assert parent.returncode == -signal.SIGKILL
    assert _gone(pid), "the quality process outlived the checking process"


def test_an_interrupted_check_ends_its_quality_process_quietly(tmp_path: Path) -> None:
    """Ctrl-C (the process group) or Airflow's SIGINT reaches the checking process only; it
    ends the quality process, and only its own KeyboardInterrupt is reported."""
    parent = _parent(tmp_path, "interrupt")
    assert parent.stdout is not None and parent.stderr is not None
    pid = int(parent.stdout.readline())
    assert os.getpgid(pid) != parent.pid  # a signal to the check's group misses it
    time.sleep(3)  # GX imported, batches flowing
    os.killpg(parent.pid, signal.SIGINT)
    _, err = parent.communicate(timeout=60)
    assert _gone(pid)
    assert "KeyboardInterrupt" in err
    assert err.count("Traceback") == 1 and "BrokenPipe" not in err, err


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


def _mixed_batch() -> pd.DataFrame:
    """Accepted-looking rows with nulls in optional columns, and one of each kind of failure."""
    contract = load_contract("penalty")
    n = 6
    frame = pd.DataFrame({f.name: pd.Series(["x"] * n, dtype="str") for f in contract.fields})
    uscc = "91310000MA1FL0AB1X"
    for name in ("subject_uscc", "authority_uscc", "source_uscc"):
        frame[name] = pd.Series([uscc] * n, dtype="str")
    frame["subject_type"] = pd.Series(["法人及非法人组织"] * n, dtype="str")
    frame["record_status"] = pd.Series([None] * n, dtype="str")
    frame["procedure_type"] = pd.Series([None] * n, dtype="str")
    frame["decision_no"] = pd.Series([f"沪市监罚〔2026〕{i}号" for i in range(n)], dtype="str")
    frame.loc[1, "decision_no"] = frame.loc[0, "decision_no"]  # a duplicate key
    frame["org_code"] = pd.Series([None, "1234567890", None, "12345678", None, None], dtype="str")
    frame["subject_uscc"] = pd.Series([None, uscc, "bad", None, uscc, None], dtype="str")
    frame["subject_name"] = pd.Series([None, "甲", "乙", "丙", "丁", "戊"], dtype="str")
    frame["fine_amount"] = pd.Series([1.0, None, -2.0, 0.0, None, 3.0])
    frame["confiscation_amount"] = pd.Series([None] * n, dtype="float64")
    return frame


def test_the_summary_is_what_gx_finds_on_the_whole_suite_and_batch() -> None:
    """Validating the suite in parts, each on its own columns, changes nothing GX reports."""
    import great_expectations as gx

    contract = load_contract("penalty")
    frame = _mixed_batch()
    run = QualityRun(contract)
    run.validate(frame.iloc[:4])
    run.validate(frame.iloc[4:])
    summary = run.summary()

    asset = gx.get_context(mode="ephemeral").data_sources.add_pandas("t").add_dataframe_asset("a")
    batch = asset.add_batch_definition_whole_dataframe("b").get_batch(
        batch_parameters={"dataframe": quality._gx_friendly(frame.copy(), contract)}
    )
    whole = batch.validate(gx.ExpectationSuite(**run.suite_dict), result_format="BASIC")

    def key(kind: str, kwargs: dict[str, object]) -> str:
        return f"{kind} {sorted(quality._short_kwargs(kwargs).items())}"

    expected = {
        key(r.expectation_config.type, r.expectation_config.kwargs): (
            r.success,
            int((r.result or {}).get("unexpected_count") or 0),
        )
        for r in whole.results
    }
    got = {
        key(r["expectation"], r["kwargs"]): (r["success"], r["unexpected_count"])
        for r in summary["results"]
    }
    assert got == expected
    assert summary["batches"] == 1 and summary["rows"] == 6
    failed = {k.split()[0] for k, (ok, _) in got.items() if not ok}
    assert {
        "expect_column_values_to_not_be_null",
        "expect_column_value_lengths_to_be_between",
        "expect_column_values_to_match_regex",
        "expect_column_values_to_be_between",
        "expect_compound_columns_to_be_unique",
    } <= failed
    # The summary lists the suite in its own order, whatever order GX ran the parts in.
    assert [r["rule"] for r in summary["results"]] == [
        e["meta"]["rule"] for e in run.suite_dict["expectations"]
    ]


def test_the_suite_parts_hold_every_expectation_once() -> None:
    suite = quality.load_suite(load_contract("penalty"))
    parts = quality._suite_parts(suite)
    indexes = [e["meta"][quality._SUITE_INDEX] for _, part in parts for e in part["expectations"]]
    assert sorted(indexes) == list(range(len(suite["expectations"])))
    required = {f.name for f in load_contract("penalty").fields if f.required}
    for columns, part in parts:
        for e in part["expectations"]:
            column = e["kwargs"].get("column")
            if columns is None:  # the whole batch: table-level and required columns
                assert column is None or column in required
                assert "column_list" not in e["kwargs"]
            else:
                assert column in (None, *columns) and column not in required
                assert e["kwargs"].get("column_list", list(columns)) == list(columns)


def test_the_quality_process_ends_at_once_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """After its summary the process is ended without waiting for its teardown; the check's
    own stderr stays clean (no resource-tracker report of a leaked semaphore)."""
    path = tmp_path / "p.csv"
    generate_file("penalty", 500, path, seed=7, error_rate=0.05)
    env = {**os.environ, "CREDITPIPE_QUALITY": "process"}
    done = subprocess.run(
        [sys.executable, "-m", "etl.cli", "check", str(path), "--office", "jingan-amr",
         "--as-of", "2026-11-21", "--json"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # the file has bad rows
    assert json.loads(done.stdout)["rows_read"] == 500
    assert done.stderr == ""
