"""`creditpipe check` and friends as a clerk or a script sees them: output and exit status."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etl.cli import app
from tests.conftest import FIXTURES
from tests.fixtures.build import org_row

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_all_rows_accepted_exits_0() -> None:
    code, out = run("check", str(FIXTURES / "penalty_gbk.csv"), "--as-of", "2026-11-21")
    assert code == 0
    assert "接受 3 行，拒绝 0 行" in out and "GBK" in out


def test_rejections_exit_1_and_are_listed() -> None:
    code, out = run(
        "check", str(FIXTURES / "penalty_title_merged_bad.xlsx"), "--as-of", "2026-11-21"
    )
    assert code == 1
    assert "E_USCC_CHECKSUM" in out and "被拒绝的行" in out


def test_json_prints_exactly_one_object() -> None:
    code, out = run("check", str(FIXTURES / "penalty_undecodable.csv"), "--json")
    assert code == 1
    body = json.loads(out)  # one object, nothing else on stdout
    assert body["file_errors"][0]["code"] == "E_ENCODING"


@pytest.mark.parametrize(
    "args",
    [
        ("check", "/no/such/file.csv"),
        ("check", str(FIXTURES / "penalty_gbk.csv"), "--office", "no-such-office"),
        ("check", str(FIXTURES / "penalty_gbk.csv"), "--as-of", "21/11/2026"),
        ("check",),
        ("check", str(FIXTURES / "penalty_gbk.csv"), "--no-such-option"),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    code, _ = run(*args)
    assert code == 2


def test_unknown_dataset_is_a_configuration_error() -> None:
    code, out = run("check", str(FIXTURES / "penalty_gbk.csv"), "--dataset", "nope")
    assert code == 3 and "未知的数据集" in out


def test_office_and_receipt_dir(tmp_path: Path, write_csv: Callable[..., Path]) -> None:
    path = write_csv([org_row("C1")])
    code, _ = run(
        "check", str(path), "--office", "yangpu-amr", "--receipt-dir", str(tmp_path / "r"), "--json"
    )
    assert code == 1  # jingan rows dropped by yangpu: not authorised
    receipts = sorted(p.suffix for p in (tmp_path / "r").iterdir())
    assert receipts == [".csv", ".html", ".json"]


def test_expectations_file_is_current() -> None:
    code, out = run("expectations", "generate", "--check")
    assert code == 0, out


def test_contracts_validate_and_show() -> None:
    assert run("contracts", "validate")[0] == 0
    code, out = run("contracts", "show", "penalty")
    assert code == 0 and "CF_XDR_SHXYM" in out


def test_generate_is_seeded(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    for path in (a, b):
        assert (
            run("generate", "penalty", "--rows", "500", "--out", str(path), "--seed", "7")[0] == 0
        )
    assert a.read_bytes() == b.read_bytes()
    code, out = run("check", str(a), "--json", "--as-of", "2026-11-21")
    body = json.loads(out)
    assert body["rows_read"] == 500 and 0 < body["rejected"] < 60
