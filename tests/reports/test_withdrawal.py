"""The withdrawal-rate report: hand-checked numbers, pooled city average, no division by zero."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from etl.cli import app
from etl.reports.withdrawal import CITY, COUNTS, compute, withdrawal_rate, write_report
from etl.run import RunSummary
from tests.fixtures.build import patent_row

NAMES = {"310106": "静安区", "310110": "杨浦区", "310115": "浦东新区", "310151": "崇明区"}


def test_rates_on_hand_checked_counts() -> None:
    counts = pd.DataFrame(
        [
            # notified, withdrawn, upheld, rejected, pending, overdue
            [10, 6, 2, 1, 1, 0],  # 静安: 6 / (10 − 2) = 75 %
            [5, 1, 0, 2, 1, 1],  # 杨浦: 1 / 5 = 20 %
            [2, 0, 2, 0, 0, 0],  # 浦东: every notice upheld → no eligible notice → "—"
        ],
        index=["310106", "310110", "310115"],
        columns=COUNTS,
    )  # 崇明: no notice at all → "—"
    table = compute(counts, NAMES).set_index("district")
    assert table.loc["310106", "rate"] == pytest.approx(0.75)
    assert table.loc["310110", "rate"] == pytest.approx(0.2)
    assert pd.isna(table.loc["310115", "rate"]) and pd.isna(table.loc["310151", "rate"])
    city = table.loc[CITY]
    assert (city["notified"], city["withdrawn"], city["upheld"], city["eligible"]) == (17, 7, 4, 13)
    assert city["rate"] == pytest.approx(7 / 13)  # pooled, not the mean of 75 % and 20 %
    assert table.loc["310106", "versus_city"] == "高于全市平均"
    assert table.loc["310110", "versus_city"] == "低于全市平均"
    assert table.loc["310115", "versus_city"] == "—"


def test_report_from_the_store(
    engine: Engine,
    drop: Callable[..., Path],
    run: Callable[..., RunSummary],
    tmp_path: Path,
) -> None:
    rows = [
        patent_row(1, "310106", "已撤回"),
        patent_row(2, "310106", "已撤回"),
        patent_row(3, "310106", "申诉成立"),
        patent_row(4, "310106", "待处理", 通知日期="2026-08-01"),  # overdue by 11-21
        patent_row(5, "310110", "申诉驳回"),
        patent_row(6, "310110", "申诉中"),
        patent_row(7, "310115", "申诉成立"),
        patent_row(8, "310106", "已撤回", 通知日期="2026-06-01", 处理日期="2026-06-20"),  # outside
    ]
    drop(rows, name="n.csv", office="sh-ipa", dataset="abnormal_patent")
    run()
    with engine.connect() as conn:
        report = withdrawal_rate(conn, date(2026, 7, 1), date(2026, 10, 31), date(2026, 11, 21))
    table = report.table.set_index("district")
    jingan = table.loc["310106"]
    assert [int(jingan[c]) for c in COUNTS] == [4, 2, 1, 0, 0, 1]
    assert jingan["rate"] == pytest.approx(2 / 3)
    assert table.loc["310110", "rate"] == 0 and pd.isna(table.loc["310115", "rate"])
    assert table.loc[CITY, "rate"] == pytest.approx(2 / 5)
    paths = write_report(report, tmp_path)
    body = json.loads(paths.json.read_text("utf-8"))
    assert body["definition"].startswith("撤回率 = 已撤回 ÷（通知总数 − 申诉成立）")
    assert "—" in paths.csv.read_text("utf-8-sig") and "<svg" in paths.html.read_text("utf-8")


def test_cli_prints_the_table_and_the_definition(store_url: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "report",
            "withdrawal-rate",
            "--from",
            "2026-01-01",
            "--to",
            "2026-12-31",
            "--out",
            str(tmp_path),
        ],  # fmt: skip
    )
    assert result.exit_code == 0, result.output
    assert "全市" in result.output and "口径" in result.output
    assert len(list(tmp_path.glob("withdrawal-rate_*"))) == 3
