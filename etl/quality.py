"""Batch-level quality checks with Great Expectations 1.x, run inside the process.

The suite (`expectations/<dataset>.json`) is generated from the contract by `build_suite` and
written with `creditpipe expectations generate`; a test fails if the file and the contract
drift apart. The row rules (etl.checks) decide acceptance; the suite then checks every accepted
batch as an independent second guard, so a gap in the row rules shows up as a quality warning
on the receipt instead of bad rows reaching the store.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd

from etl import settings
from etl.checks.identifiers import USCC_PATTERN
from etl.contracts import Contract
from etl.errors import ConfigError

GENERATOR = "creditpipe expectations generate"


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


class QualityRun:
    """Validates each accepted batch of one file and keeps a summary for the receipt."""

    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self.suite_dict = load_suite(contract)
        self.batches = 0
        self.rows = 0
        self._results: dict[int, dict[str, Any]] = {}
        self._validator: Any = None

    def _batch_definition(self) -> Any:
        if self._validator is None:
            os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
            import great_expectations as gx

            # GX narrates every ephemeral context at INFO (its module sets that level itself);
            # our logs should carry our story.
            logging.getLogger("great_expectations.data_context.types.base").setLevel(
                logging.WARNING
            )
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(globally=False)
            asset = context.data_sources.add_pandas("creditpipe").add_dataframe_asset(
                self.contract.dataset
            )
            self._suite = gx.ExpectationSuite(**self.suite_dict)
            self._validator = asset.add_batch_definition_whole_dataframe("accepted")
        return self._validator

    def validate(self, frame: pd.DataFrame) -> None:
        """Run the suite on one accepted batch (typed values, contract column names)."""
        if frame.empty:
            return
        batch = self._batch_definition().get_batch(
            batch_parameters={"dataframe": _gx_friendly(frame, self.contract)}
        )
        # Pass/fail first; the counts (BASIC) only for a batch that fails, which is all the
        # receipt reports. GX's default (SUMMARY) also lists unexpected row indices, and to find
        # them it filters the whole batch, every column, once per expectation: that and the
        # unexpected-value lists were ~45 % of its time (bench/e2e_bench.py). Nothing in the
        # suite sets `mostly`, so a passing expectation has no unexpected rows to count.
        result = batch.validate(self._suite, result_format="BOOLEAN_ONLY")
        if not result.success:
            result = batch.validate(self._suite, result_format="BASIC")
        self.batches += 1
        self.rows += len(frame)
        for i, r in enumerate(result.results):
            entry = self._results.setdefault(
                i,
                {
                    "expectation": r.expectation_config.type,
                    "kwargs": _short_kwargs(r.expectation_config.kwargs),
                    "rule": (r.expectation_config.meta or {}).get("rule", ""),
                    "success": True,
                    "unexpected_count": 0,
                },
            )
            entry["success"] = bool(entry["success"] and r.success)
            entry["unexpected_count"] += int((r.result or {}).get("unexpected_count") or 0)

    def summary(self) -> dict[str, Any]:
        """What ran and what failed; `success` is None when nothing was validated."""
        results = [self._results[i] for i in sorted(self._results)]
        return {
            "suite": self.suite_dict["name"],
            "engine": "great_expectations",
            "batches": self.batches,
            "rows": self.rows,
            "success": all(r["success"] for r in results) if results else None,
            "results": results,
        }

    def failed(self) -> list[str]:
        """Short descriptions of failed expectations, for the receipt's warning."""
        return [
            f"{r['expectation']}（{r['rule']}，{r['unexpected_count']} 行）"
            for r in self.summary()["results"]
            if not r["success"]
        ]


def _short_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    keep = ("column", "column_list", "min_value", "max_value", "regex")
    return {k: kwargs[k] for k in keep if k in kwargs and kwargs[k] is not None}


def _gx_friendly(frame: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """Decimal amounts as floats for GX's pandas engine; dates and text stay as they are.

    `assign` shares the other columns with `frame` (copy-on-write) instead of copying a batch.
    """
    amounts = {
        f.name: frame[f.name].astype("float64")
        for f in contract.fields
        if f.type == "amount" and f.name in frame
    }
    return frame.assign(**amounts)
