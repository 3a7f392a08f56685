"""Batch-level quality checks with Great Expectations 1.x, called from our own code.

The suite (`expectations/<dataset>.json`) is generated from the contract by `build_suite` and
written with `creditpipe expectations generate`; a test fails if the file and the contract
drift apart. The row rules (etl.checks) decide acceptance; the suite then checks every accepted
batch as an independent second guard, so a gap in the row rules shows up as a quality warning
on the receipt instead of bad rows reaching the store.

GX's pandas engine costs about a third of checking a file (and ~2 s of imports), so for a large
file it runs in a second process (`QualityProcess`) that receives each accepted batch as Arrow
IPC over a pipe while the checking (or loading) process reads and validates the next chunk: on
two cores the guard costs little wall time. `CREDITPIPE_QUALITY=inline` runs it in the checking
process (`QualityRun`); both give the same summary.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import json
import logging
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
import traceback
import types
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from etl import settings
from etl.checks.identifiers import USCC_PATTERN
from etl.contracts import Contract
from etl.errors import ConfigError

GENERATOR = "creditpipe expectations generate"
log = logging.getLogger(__name__)


def build_suite(contract: Contract) -> dict[str, Any]:
    """The GX expectation suite of a contract, as GX's own JSON form (deterministic)."""
    expectations: list[dict[str, Any]] = [
        _exp(
            "expect_table_columns_to_match_set",
            {"column_set": [f.name for f in contract.fields], "exact_match": False},
            "every contract field is present",
        )
    ]
    for f in contract.fields:
        if f.required:
            expectations.append(
                _exp("expect_column_values_to_not_be_null", {"column": f.name}, f"{f.title} 必填")
            )
        if f.max_length is not None and f.type in ("text", "uscc", "personal_id"):
            expectations.append(
                _exp(
                    "expect_column_value_lengths_to_be_between",
                    {"column": f.name, "min_value": 1, "max_value": f.max_length},
                    f"{f.title} ≤ {f.max_length} 字符",
                )
            )
        if f.type in ("enum", "district") and f.enum:
            expectations.append(
                _exp(
                    "expect_column_values_to_be_in_set",
                    {"column": f.name, "value_set": list(f.enum)},
                    f"{f.title} 取值范围",
                )
            )
        if f.type == "uscc":
            pattern = USCC_PATTERN
            if f.placeholder:
                pattern = f"(?:{USCC_PATTERN[1:-1]}|{f.placeholder})"
                pattern = f"^{pattern}$"
            expectations.append(
                _exp(
                    "expect_column_values_to_match_regex",
                    {"column": f.name, "regex": pattern},
                    f"{f.title} GB 32100 格式",
                )
            )
        if f.type == "amount":
            expectations.append(
                _exp(
                    "expect_column_values_to_be_between",
                    {"column": f.name, "min_value": 0},
                    f"{f.title} 非负",
                )
            )
    expectations.append(
        _exp(
            "expect_compound_columns_to_be_unique",
            {"column_list": list(contract.natural_key)},
            "自然键在批次内唯一",
        )
    )
    return {
        "name": contract.name,
        "meta": {"contract": f"schemas/{contract.name}.yaml", "generated_by": GENERATOR},
        "expectations": expectations,
    }


def _exp(kind: str, kwargs: dict[str, Any], rule: str) -> dict[str, Any]:
    return {"type": kind, "kwargs": kwargs, "meta": {"rule": rule}}


def suite_path(dataset: str) -> Path:
    """Where the suite of `dataset` lives."""
    return settings.expectations_dir() / f"{dataset}.json"


def render_suite(suite: dict[str, Any]) -> str:
    """The suite as it is written to disk (stable formatting, so diffs stay readable)."""
    return json.dumps(suite, ensure_ascii=False, indent=2) + "\n"


def load_suite(contract: Contract) -> dict[str, Any]:
    """The suite file of a contract; it must be the one the contract generates."""
    path = suite_path(contract.dataset)
    try:
        suite: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: 缺少数据质量规则文件；请运行 `{GENERATOR}`") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: JSON 语法错误：{exc}") from None
    if suite != build_suite(contract):
        raise ConfigError(
            f"{path}: 与数据契约 {contract.name} 不一致；请运行 `{GENERATOR}` 重新生成"
        )
    return suite


class Quality(Protocol):
    """What the check stage needs of a quality run, wherever it runs."""

    def validate(self, frame: pd.DataFrame) -> None: ...

    def summary(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


# From this size on, `auto` checks in a second process: starting one (an interpreter, pandas and
# GX's ~2 s of imports) pays for itself; below, GX runs in the checking process, where it is
# imported once for all the files a run checks. Session 8, interleaved, medians of three: a
# 48 MB file (100,000 rows) checked 3.68 → 3.05 s and loaded 6.89 → 5.74 s in a second
# process; a run of two 32 MB files took the same time either way (8.31 / 8.46 s, +1.8 s of
# CPU). An Airflow task loads one file and imports GX for it anyway.
PROCESS_FROM_BYTES = 32 * 1024 * 1024


def quality_run(contract: Contract, file_size: int) -> Quality:
    """The quality run of one file of `file_size` bytes, where `CREDITPIPE_QUALITY` says:
    `auto` checks a file of `PROCESS_FROM_BYTES` or more in a second process (`QualityProcess`),
    whether it is only checked or loaded too. Beside a load, the 1,000,000-row SQLite run took
    38.1 → 34.5 s (medians of three, interleaved with `inline`, session 8), its own process
    ~150 MB smaller; the quality process (interpreter, GX, a batch) works on the other core.
    """
    mode = settings.quality_mode()
    if mode == "auto":
        mode = "process" if file_size >= PROCESS_FROM_BYTES else "inline"
    if mode == "process":
        try:
            return QualityProcess(contract)
        except OSError as exc:  # no interpreter to start (a frozen or odd launcher)
            log.warning("数据质量检查进程无法启动（%s），改在本进程内检查", exc)
    return QualityRun(contract)


def failed(summary: dict[str, Any]) -> list[str]:
    """Short descriptions of failed expectations, for the receipt's warning."""
    return [
        f"{r['expectation']}（{r['rule']}，{r['unexpected_count']} 行）"
        for r in summary["results"]
        if not r["success"]
    ]


class QualityRun:
    """Validates the accepted rows of one file and keeps a summary for the receipt.

    Rows are validated in batches of about `batch_rows`: GX spends ~10 ms per expectation and
    batch on planning alone, so a 50,000-row chunk paid more for the plan than for the checks.
    The suite is validated in parts (`_suite_parts`), each on the columns it needs: GX's pandas
    engine drops the null rows of a column before checking it by filtering the whole batch,
    every column, once per expectation on a column that has nulls; on one column that filter is
    cheap. Per 244,000 rows in 50,000-row chunks: 4.3 s CPU before either change; 1.3 s in
    parts per chunk, 1.0 s in batches of 100,000 rows, 0.4 s in one batch. A batch is held
    in memory with GX's working set beside it (the 1,000,000-row check peaked at ~1.09 GB with
    200,000-row batches, 0.92–0.99 GB with 100,000), and GX keeps up with the row rules at
    100,000.
    """

    BATCH_ROWS = 100_000

    def __init__(
        self,
        contract: Contract,
        suite: dict[str, Any] | None = None,
        batch_rows: int | None = None,
    ) -> None:
        self.contract = contract
        self.suite_dict = load_suite(contract) if suite is None else suite
        self.batch_rows = self.BATCH_ROWS if batch_rows is None else batch_rows
        self.batches = 0
        self.rows = 0
        self._results: dict[int, dict[str, Any]] = {}
        self._pending: list[pd.DataFrame] = []
        self._pending_rows = 0
        self._definition: Any = None
        self._parts: list[tuple[tuple[str, ...] | None, Any]] = []

    def prepare(self) -> None:
        """Import GX and set up its context now (else the first batch does)."""
        self._batch_definition()

    def _batch_definition(self) -> Any:
        if self._definition is None:
            os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
            gx = _import_gx()

            # GX narrates every ephemeral context at INFO (its module sets that level itself);
            # our logs should carry our story.
            logging.getLogger("great_expectations.data_context.types.base").setLevel(
                logging.WARNING
            )
            from great_expectations.data_context.types.base import ProgressBarsConfig
            from great_expectations.execution_engine import pandas_execution_engine

            # GX fingerprints every batch under 1 GB by hashing all of its values
            # (pd.util.hash_pandas_object) only to label it in the batch markers: a third of
            # its time on our batches, which are labelled by file and chunk anyway. The module
            # constant is the only switch GX has; tests/test_quality.py fails if it goes away.
            pandas_execution_engine.HASH_THRESHOLD = 0
            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(globally=False)
            asset = context.data_sources.add_pandas("creditpipe").add_dataframe_asset(
                self.contract.dataset
            )
            self._parts = [
                (columns, gx.ExpectationSuite(**part))
                for columns, part in _suite_parts(self.suite_dict)
            ]
            self._definition = asset.add_batch_definition_whole_dataframe("accepted")
        return self._definition

    def validate(self, frame: pd.DataFrame) -> None:
        """Take one accepted chunk (typed values, contract column names); a full batch is
        validated at once, the rest by `summary`."""
        if frame.empty:
            return
        self._pending.append(frame)
        self._pending_rows += len(frame)
        if self._pending_rows >= self.batch_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        chunks, self._pending, self._pending_rows = self._pending, [], 0
        frame = chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)
        del chunks
        frame = _gx_friendly(frame, self.contract)
        definition = self._batch_definition()
        for columns, suite in self._parts:
            # A batch without one of the columns is left whole: GX then names what is missing.
            narrow = columns is not None and set(columns).issubset(frame.columns)
            part = frame[list(columns)] if narrow and columns else frame
            batch = definition.get_batch(batch_parameters={"dataframe": part})
            # Pass/fail first; the counts (BASIC) only for a part that fails, which is all the
            # receipt reports. GX's default (SUMMARY) also lists unexpected row indices and
            # values, ~45 % of its time. Nothing in the suite sets `mostly`, so a passing
            # expectation has no unexpected rows to count.
            result = batch.validate(suite, result_format="BOOLEAN_ONLY")
            if not result.success:
                result = batch.validate(suite, result_format="BASIC")
            for r in result.results:
                config = r.expectation_config
                entry = self._results.setdefault(
                    int(config.meta[_SUITE_INDEX]),
                    {
                        "expectation": config.type,
                        "kwargs": _short_kwargs(config.kwargs),
                        "rule": config.meta.get("rule", ""),
                        "success": True,
                        "unexpected_count": 0,
                    },
                )
                entry["success"] = bool(entry["success"] and r.success)
                entry["unexpected_count"] += int((r.result or {}).get("unexpected_count") or 0)
        self.batches += 1
        self.rows += len(frame)

    def summary(self) -> dict[str, Any]:
        """What ran and what failed, in suite order; `success` is None when nothing was
        validated. Validates the rows still waiting first."""
        self._flush()
        results = [self._results[i] for i in sorted(self._results)]
        return {
            "suite": self.suite_dict["name"],
            "engine": "great_expectations",
            "batches": self.batches,
            "rows": self.rows,
            "success": all(r["success"] for r in results) if results else None,
            "results": results,
        }

    def close(self) -> None:
        """Drops the rows not yet validated (the Quality protocol; `summary` validates them)."""
        self._pending, self._pending_rows = [], 0


# GX imports these only for what our suites never run: the KL-divergence and KS-test
# expectations (scipy.stats: ~490 scipy modules, ~1.1 s under -X importtime), their Altair charts
# (with narwhals and the ~2 MB Vega-Lite schema, ~0.4 s), JSON-schema matching, Markdown and
# local-time rendering. Left to load on first use, importing GX after pandas takes 2.1-2.2 s
# instead of 3.8-4.8 s (1.8-1.9 s CPU, was 3.3-3.5 s) and the 100,000-row check 6.1-7.4 s
# instead of 7.7-9.2 s (interleaved, 2026-11-21). Whatever does touch one loads it for real.
_GX_LAZY_MODULES = frozenset({"scipy.stats", "altair", "jsonschema", "mistune", "tzlocal"})


def _import_gx() -> Any:
    """`great_expectations`, imported with `_GX_LAZY_MODULES` (those not imported yet) lazy."""
    with _LAZY_GX_IMPORTS.lock:
        first = "great_expectations" not in sys.modules
        # Put in place once and never taken out: taking a finder out of sys.meta_path could
        # make another thread's import, iterating that list, skip the finder after it.
        if first and _LAZY_GX_IMPORTS not in sys.meta_path:
            sys.meta_path.insert(0, _LAZY_GX_IMPORTS)
        _LAZY_GX_IMPORTS.active = first
        try:
            import great_expectations as gx
        finally:
            _LAZY_GX_IMPORTS.active = False
    return gx


class _LazyGxImports(importlib.abc.MetaPathFinder):
    """While `active`, finds `_GX_LAZY_MODULES` as usual but loads them lazily."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = False

    def find_spec(
        self, name: str, path: Any = None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not self.active or name not in _GX_LAZY_MODULES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                # Only plain source modules: an extension module runs its code on creation.
                if isinstance(spec.loader, importlib.machinery.SourceFileLoader):
                    spec.loader = _LazyLoader(spec.loader)
                    return spec
                return None  # the rest of sys.meta_path imports it as usual
        return None


class _LazyLoader(importlib.abc.Loader):
    """importlib.util.LazyLoader made thread-safe as CPython later did (gh-114763): on 3.11 a
    second thread touching the module while the first runs its code sees it half-initialised."""

    def __init__(self, loader: importlib.machinery.SourceFileLoader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        spec = module.__spec__
        assert spec is not None
        spec.loader = module.__loader__ = self.loader
        spec.loader_state = {
            "dict": module.__dict__.copy(),
            "class": module.__class__,
            "lock": threading.RLock(),
            "loading": False,
        }
        module.__class__ = _LazyModule


class _LazyModule(types.ModuleType):
    """A module whose code runs on its first attribute access, once, in whichever thread."""

    def __getattribute__(self, attr: str) -> Any:
        spec = object.__getattribute__(self, "__spec__")
        state = spec.loader_state
        with state["lock"]:
            if type(self) is _LazyModule:
                if state["loading"]:  # the module's own code and imports, as in any import
                    return types.ModuleType.__getattribute__(self, attr)
                state["loading"] = True
                try:
                    before = state["dict"]
                    now = types.ModuleType.__getattribute__(self, "__dict__")
                    # What was set on the module meanwhile stays, as it would have eagerly.
                    kept = {k: v for k, v in now.items() if k not in before or before[k] is not v}
                    spec.loader.exec_module(self)
                    now.update(kept)
                finally:
                    state["loading"] = False
                if type(self) is _LazyModule:  # unless the module set its own class
                    object.__setattr__(self, "__class__", state["class"])
        return getattr(self, attr)

    def __delattr__(self, attr: str) -> None:
        self.__getattribute__(attr)  # loads it (and raises if there is no such attribute)
        delattr(self, attr)


_LAZY_GX_IMPORTS = _LazyGxImports()


# Where an expectation sits in the whole suite, carried in its meta through a part's results.
_SUITE_INDEX = "creditpipe_suite_index"


def _suite_parts(suite: dict[str, Any]) -> list[tuple[tuple[str, ...] | None, dict[str, Any]]]:
    """The suite split by the columns each part needs (None: the whole batch).

    Expectations on required columns stay with the table-level ones on the whole batch: those
    columns have no nulls, so GX filters nothing for them. Each optional column and each
    compound key gets a part of its own, validated on just its columns.
    """
    expectations = suite["expectations"]
    required = {
        e["kwargs"]["column"]
        for e in expectations
        if e["type"] == "expect_column_values_to_not_be_null"
    }
    parts: dict[tuple[str, ...] | None, list[dict[str, Any]]] = {}
    for i, e in enumerate(expectations):
        kwargs = e["kwargs"]
        columns: tuple[str, ...] | None = None
        if "column" in kwargs and kwargs["column"] not in required:
            columns = (kwargs["column"],)
        elif "column_list" in kwargs:
            columns = tuple(kwargs["column_list"])
        parts.setdefault(columns, []).append(
            {**e, "meta": {**(e.get("meta") or {}), _SUITE_INDEX: i}}
        )
    return [
        (
            columns,
            {
                **suite,
                "name": f"{suite['name']}[{'+'.join(columns or ('*',))}]",
                "expectations": part,
            },
        )
        for columns, part in parts.items()
    ]


class QualityProcess:
    """`QualityRun` in a second interpreter, fed each accepted chunk over its stdin.

    The process is `python -P -c` importing this module only (`_serve_command`): not a
    multiprocessing child, which re-imports the parent's `__main__` (under Airflow, Airflow
    itself: +1.1 s and +52 MB per load). Its stdin carries frames (`_write_frame`): the contract
    and suite first, then each chunk as an LZ4 Arrow IPC stream, then an empty frame for the
    end; its stdout carries one frame back, the summary or the error. Nothing is written to disk
    or to /dev/shm (a default container has 64 MB there, which concurrent loads filled), so
    nothing is left behind when either side is killed.

    `validate` serialises a chunk (LZ4: ~6 MB per 50,000 rows) and queues it; a thread writes
    the queue to the pipe, so the checking process never waits on a busy quality process
    until `IN_FLIGHT` chunks wait. Eight may: the checking process is ready for its third chunk
    ~2 s before the quality process has imported GX, and with two it stood idle that long (1M
    check ~9.9 → ~8.8 s wall, interleaved, session 6).

    Ending: the process runs in a session of its own, so a Ctrl-C in a terminal reaches only
    the checking process, whose `close` then ends it quietly. Whatever else ends the checking
    process (SIGKILL; Airflow's supervisor, which resets a task's SIGINT to its default and so
    kills it at once), the quality process sees the end of its input and leaves, unheard.
    """

    IN_FLIGHT = 8
    STOP_SECONDS = 10.0  # `close`: how long the writer and the process get before a kill

    def __init__(self, contract: Contract, batch_rows: int | None = None) -> None:
        suite = load_suite(contract)  # a broken suite file is reported here, by the caller
        self._process = subprocess.Popen(
            _serve_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._stdin, self._stdout = self._process.stdin, self._process.stdout
        self._queue: queue.Queue[bytes | pa.Buffer | None] = queue.Queue(self.IN_FLIGHT)
        self._stop = threading.Event()
        self._broken: BaseException | None = None  # why the writer stopped early
        self._error: QualityError | None = None  # the failure, once known
        self._writer = threading.Thread(
            target=self._write, name=f"creditpipe-quality-{contract.dataset}", daemon=True
        )
        self._writer.start()
        self._put(pickle.dumps((contract, suite, batch_rows)))
        self._summary: dict[str, Any] | None = None

    def validate(self, frame: pd.DataFrame) -> None:
        """Hand one accepted chunk to the quality process (waits while `IN_FLIGHT` wait)."""
        if frame.empty:
            return
        table = pa.Table.from_pandas(frame, preserve_index=False)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema, options=_IPC_OPTIONS) as out:
            out.write_table(table)
        self._put(sink.getvalue())

    def summary(self) -> dict[str, Any]:
        """Ends the process after the last chunk and returns its summary (once computed, kept)."""
        if self._summary is None:
            try:
                self._put(None)
                self._writer.join()
                if self._broken is not None:
                    raise self._failure()
                status, payload = self._answer()
                if status == "error":
                    self._error = QualityError(payload)
                    raise self._error
                self._summary = payload
            finally:
                self.close()
        return self._summary

    def close(self) -> None:
        """Stops the process (after `summary`, or early) and the writer; idempotent."""
        self._stop.set()
        if self._process.poll() is None and self._summary is None:
            self._process.terminate()  # given up early: no need to hear the rest
        self._writer.join(self.STOP_SECONDS)
        if self._writer.is_alive():  # blocked on a pipe the process does not read
            self._process.kill()
            self._writer.join()
        for stream in (self._stdin, self._stdout):
            with contextlib.suppress(OSError):
                stream.close()
        try:
            self._process.wait(timeout=self.STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def _put(self, payload: bytes | pa.Buffer | None) -> None:
        """Queue a frame for the writer, waiting while the queue is full; raises the quality
        process's error once the writer could not deliver."""
        while True:
            if self._broken is not None or self._error is not None:
                raise self._failure()
            try:
                self._queue.put(payload, timeout=0.5)
                return
            except queue.Full:
                continue

    def _write(self) -> None:
        """The writer thread: the queue's frames to the pipe, until the end, a broken pipe, or
        `close`."""
        try:
            while not self._stop.is_set():
                try:
                    payload = self._queue.get(timeout=0.2)
                except queue.Empty:
                    continue
                if payload is None:
                    _write_frame(self._stdin, b"")
                    self._stdin.close()  # the quality process sees the end of its input
                    return
                _write_frame(self._stdin, payload)
        except (OSError, ValueError) as exc:  # the process is gone, or close() closed the pipe
            self._broken = exc

    def _read_answer(self) -> tuple[str, Any] | None:
        """The process's one answer, ("ok", summary) or ("error", text); None if it sent none."""
        frame = _read_frame(self._stdout)
        return pickle.loads(frame) if frame else None

    def _answer(self) -> tuple[str, Any]:
        try:
            answer = self._read_answer()
        except _UNREADABLE as exc:
            self._error = QualityError(f"数据质量检查进程的应答无法识别：{exc}")
            raise self._error from None
        if answer is None:
            raise self._failure()
        return answer

    def _failure(self) -> QualityError:
        """The error the quality process reported before it went away, else its exit code;
        the same error every time it is asked for."""
        if self._error is None:
            with contextlib.suppress(OSError, *_UNREADABLE):
                answer = self._read_answer()
                if answer is not None and answer[0] == "error":
                    self._error = QualityError(answer[1])
            if self._error is None:
                code = self._process.wait()
                self._error = QualityError(f"数据质量检查进程意外退出（退出码 {code}）")
        return self._error


_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")  # see QualityProcess
# A frame: a mark, its length, then its bytes (length 0: the end of the input). The mark makes
# anything else on the pipe an error, never a length to trust.
_HEAD = struct.Struct("<4sQ")
_MARK = b"CPQ1"


class _BadFrame(Exception):
    """The pipe carried something other than a whole frame."""


# What reading an answer that is not one raises (a closed pipe gives ValueError).
_UNREADABLE = (_BadFrame, pickle.UnpicklingError, EOFError, ValueError)


def _write_frame(stream: IO[bytes], payload: bytes | pa.Buffer) -> None:
    stream.write(_HEAD.pack(_MARK, len(payload)))
    stream.write(payload)
    stream.flush()


def _read_frame(stream: IO[bytes]) -> bytes | None:
    """The next frame's bytes (b"" for the end frame); None when the other side has gone."""
    head = stream.read(_HEAD.size)
    if not head:
        return None
    if len(head) < _HEAD.size:
        raise _BadFrame("帧头不完整")
    mark, length = _HEAD.unpack(head)
    if mark != _MARK:
        raise _BadFrame(f"帧头 {head!r} 不是本程序的")
    payload = stream.read(length)
    if len(payload) < length:
        raise _BadFrame("帧不完整")
    return payload


def _serve_command() -> list[str]:
    """The quality process's command line: this interpreter with its flags (as multiprocessing
    passes them), `-P` so that the working directory cannot shadow a module, and code that
    moves stdout aside before any import can print to it, then imports this very checkout's
    `etl` (the checking process may have found it through a path its environment lacks)."""
    root = str(Path(__file__).resolve().parent.parent)
    code = (
        "import os, sys; answer = os.dup(1); os.dup2(2, 1); "
        f"sys.path.insert(0, {root!r}); from etl.quality import _serve; _serve(answer)"
    )
    # subprocess's own helper, which multiprocessing and the test suite of CPython use too.
    flags: list[str] = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
    return [sys.executable, *flags, "-P", "-c", code]


def _decimal_dtype(kind: pa.DataType) -> Any:
    """Amounts stay Arrow decimals in pandas, as in the checking process (not Decimal objects)."""
    return pd.ArrowDtype(kind) if pa.types.is_decimal(kind) else None


class QualityError(RuntimeError):
    """The quality process failed: an internal error, never the file's fault."""


def _serve(answer_fd: int) -> None:
    """The quality process (`QualityProcess`): read the set-up frame and each chunk from stdin
    until the end frame, then write the summary, or the error, to `answer_fd` (stdout's own
    descriptor: stdout itself was pointed at stderr, so that nothing printed on the way can
    garble a frame), and leave."""
    source, answer = sys.stdin.buffer, os.fdopen(answer_fd, "wb")
    try:
        # GX draws its progress bars with tqdm, whose default lock is a semaphore shared across
        # processes (registered with multiprocessing's resource tracker); this process has no
        # children, and leaves without teardown, so tqdm gets a lock of this process only:
        # nothing is left for the tracker to report.
        try:
            import tqdm
        except ImportError:  # a GX without progress bars
            pass
        else:
            tqdm.tqdm.set_lock(threading.RLock())
        setup = _read_frame(source)
        if setup is None:  # the checking process went away: nobody to report to
            os._exit(0)
        contract, suite, batch_rows = pickle.loads(setup)
        run = QualityRun(contract, suite, batch_rows)
        # GX's imports (~2 s) now, while the checking process scans and reads its first
        # chunks, not when the first batch is full and the checking process waits on it.
        run.prepare()
        while chunk := _read_frame(source):
            table = pa.ipc.open_stream(pa.py_buffer(chunk)).read_all()
            del chunk
            run.validate(table.to_pandas(types_mapper=_decimal_dtype))
            del table
        if chunk is None:  # no end frame: the checking process went away, unheard
            os._exit(0)
        result: tuple[str, Any] = ("ok", run.summary())
    except Exception as exc:  # noqa: BLE001 -- reported to the checking process, which raises it
        result = ("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
    # No more reading: a checking process still writing gets a broken pipe and reads this
    # answer, instead of both waiting on full pipes (an error message can exceed one).
    with contextlib.suppress(OSError):
        os.close(0)
    with contextlib.suppress(OSError):  # BrokenPipeError: the checking process has gone
        _write_frame(answer, pickle.dumps(result))
    # Without tearing down GX's thousands of modules (~0.8 s the checking process would wait).
    os._exit(0)


def _short_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    keep = ("column", "column_list", "min_value", "max_value", "regex")
    return {k: kwargs[k] for k in keep if k in kwargs and kwargs[k] is not None}


def _gx_friendly(frame: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """Decimal amounts as floats for GX's pandas engine; dates and text stay as they are.

    `assign` shares the other columns with `frame` (copy-on-write) instead of copying a batch.
    Amounts arrive as Arrow decimals (here and in the quality process, `_decimal_dtype`) and
    are cast by Arrow, without a Decimal object per value.
    """
    amounts = {
        f.name: pd.Series(
            frame[f.name].astype(_FLOAT).to_numpy("float64", na_value=np.nan), index=frame.index
        )
        for f in contract.fields
        if f.type == "amount" and f.name in frame
    }
    return frame.assign(**amounts)


_FLOAT = pd.ArrowDtype(pa.float64())  # Arrow's decimal cast: no Decimal object per value
