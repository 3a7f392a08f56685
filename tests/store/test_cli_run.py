"""`creditpipe run` and `creditpipe db` as an engineer sees them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etl.cli import app
from tests.fixtures.build import ROOT

runner = CliRunner()


def test_run_prints_a_line_per_file_and_totals(store_url: str, _isolated_home: Path) -> None:
    shutil.copytree(ROOT / "samples" / "inbox", _isolated_home / "inbox")
    result = runner.invoke(app, ["run", "--as-of", "2026-11-21"])
    assert result.exit_code == 0, result.output
    assert "jingan-amr/penalty/静安区行政处罚_2026-11.csv：已入库" in result.output
    assert "合计 4 个文件：入库 4" in result.output and "回执：" in result.output


def test_run_json_is_one_object_and_a_rerun_is_all_duplicates(
    store_url: str, _isolated_home: Path
) -> None:
    shutil.copytree(ROOT / "samples" / "inbox", _isolated_home / "inbox")
    first = runner.invoke(app, ["run", "--as-of", "2026-11-21", "--json"])
    assert first.exit_code == 0
    body = json.loads(first.stdout)
    assert body["totals"]["files"] == 4 and body["totals"]["loaded"] == 4
    assert body["totals"]["rows_read"] == body["totals"]["accepted"] + body["totals"]["rejected"]
    shutil.copytree(ROOT / "samples" / "inbox", _isolated_home / "inbox", dirs_exist_ok=True)
    again = json.loads(runner.invoke(app, ["run", "--json"]).stdout)
    assert again["totals"]["duplicate"] == 4 and again["totals"]["inserted"] == 0


def test_empty_inbox_says_so(store_url: str) -> None:
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 0 and "收件箱为空" in result.output


def test_db_upgrade_and_current(store_url: str) -> None:
    before = runner.invoke(app, ["db", "current"])
    assert before.exit_code == 0 and "需要升级" in before.output
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    after = runner.invoke(app, ["db", "current"])
    assert "（最新）" in after.output


def test_unreachable_store_exits_5(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITPIPE_DB_URL", "postgresql+psycopg://x@127.0.0.1:1/none")
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 5 and "无法连接数据库" in result.output
