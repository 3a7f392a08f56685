"""`creditpipe flags …` and `creditpipe publish` as a reviewer and an engineer see them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from etl.cli import app
from tests.fixtures.build import ROOT

runner = CliRunner()


def test_review_from_the_command_line(store_url: str, _isolated_home: Path) -> None:
    shutil.copytree(ROOT / "samples" / "inbox", _isolated_home / "inbox")
    run = runner.invoke(app, ["run", "--as-of", "2026-11-21"])
    assert run.exit_code == 0, run.output
    assert "失信标记（截至 2026-11-21）" in run.output and "公开数据 penalty" in run.output

    listed = json.loads(runner.invoke(app, ["flags", "list", "--json"]).stdout)
    assert listed and {f["state"] for f in listed} == {"candidate"}
    agency = next(f for f in listed if f["rule_id"] == "SD-AGENCY")

    shown = runner.invoke(app, ["flags", "show", agency["id"][:-4]])
    assert shown.exit_code == 0, shown.output
    assert (
        "总局令第44号" in shown.output and "证据 1" in shown.output and "申请号：" in shown.output
    )

    ok = runner.invoke(
        app,
        [
            "flags",
            "confirm",
            agency["id"],
            "--by",
            "李审核",
            "--decision-no",
            "沪市监信〔2026〕9号",
        ],
    )
    assert ok.exit_code == 0 and "已确认" in ok.output
    again = runner.invoke(app, ["flags", "reject", agency["id"], "--by", "王", "--reason", "误报"])
    assert again.exit_code == 1 and "E_FLAG_DECIDED" in again.output
    assert "Traceback" not in again.output
    missing = runner.invoke(app, ["flags", "show", "SD-NOTHING"])
    assert missing.exit_code == 1 and "E_FLAG_UNKNOWN" in missing.output
    bad_state = runner.invoke(app, ["flags", "list", "--state", "maybe"])
    assert bad_state.exit_code == 2

    confirmed = runner.invoke(app, ["flags", "list", "--state", "confirmed"])
    assert agency["id"] in confirmed.output and "已确认" in confirmed.output
    evaluated = runner.invoke(app, ["flags", "evaluate", "--as-of", "2026-11-21", "--json"])
    assert json.loads(evaluated.stdout)["changed"] == 0

    published = runner.invoke(app, ["publish", "--as-of", "2026-11-21", "--json"])
    assert published.exit_code == 0, published.output
    body = json.loads(published.stdout)
    flags = next(d for d in body["datasets"] if d["dataset"] == "serious_dishonesty")
    assert flags["rows"] == 1 and flags["result"] == "published"  # confirmed after the run
    assert {d["result"] for d in body["datasets"] if d["dataset"] != "serious_dishonesty"} == {
        "unchanged"
    }
