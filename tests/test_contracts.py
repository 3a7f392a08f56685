"""Contracts and the offices registry: complete, validated, and loud when broken."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.contracts import load_contract, parse_contract
from etl.errors import ConfigError, ContractError
from etl.offices import load_offices
from etl.quality import build_suite, load_suite

# SPEC.md §2: every exchange code the penalty contract must declare.
SPEC_CODES = {
    "CF_XDR_MC",
    "CF_XDR_LB",
    "CF_XDR_SHXYM",
    "CF_XDR_GSZC",
    "CF_XDR_ZZJG",
    "CF_XDR_SWDJ",
    "CF_XDR_SYDW",
    "CF_XDR_SHZZ",
    "CF_FRDB",
    "CF_FR_ZJLX",
    "CF_FR_ZJHM",
    "CF_XDR_ZJLX",
    "CF_XDR_ZJHM",
    "CF_WSH",
    "CF_WFXW",
    "CF_SY",
    "CF_YJ",
    "CF_CFLB",
    "CF_NR",
    "CF_NR_FK",
    "CF_NR_WFFF",
    "CF_NR_ZKDX",
    "CF_JDRQ",
    "CF_YXQ",
    "CF_GSJZQ",
    "CF_CFJG",
    "CF_CFJGDM",
    "CF_SJLY",
    "CF_SJLYDM",
    "BZ",
}


def test_penalty_contract_covers_the_standard() -> None:
    contract = load_contract("penalty")
    assert {f.code for f in contract.fields if f.code} == SPEC_CODES
    assert contract.natural_key == ["authority_uscc", "decision_no"]
    schema = contract.arrow_schema()
    assert schema.field("fine_amount").type.scale == 6
    assert schema.field("subject_name").metadata[b"title"].decode() == "行政相对人名称"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "broken.v1.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (
            "dataset: x\nversion: 1\ntitle: t\nnatural_key: [a]\nfields:\n  - {name: a, title: A, type: nonsense}\n",
            "fields.0.type",
        ),
        (
            "dataset: x\nversion: 1\ntitle: t\nnatural_key: [b]\nfields:\n  - {name: a, title: A}\n",
            "natural_key",
        ),
        (
            "dataset: x\nversion: 1\ntitle: t\nnatural_key: [a]\nfields:\n  - {name: a, title: A, colour: red}\n",
            "fields.0.colour",
        ),
        (
            "dataset: x\nversion: 1\ntitle: t\nnatural_key: [a]\nfields:\n  - {name: a, title: A}\n  - {name: b, title: A}\n",
            "claimed by both",
        ),
        ("dataset: x\nversion: [\n", "YAML"),
    ],
)
def test_broken_contract_names_file_and_key(tmp_path: Path, body: str, key: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(ContractError) as excinfo:
        parse_contract(path)
    assert str(path) in excinfo.value.message and key in excinfo.value.message


def test_offices_registry_has_the_required_offices() -> None:
    registry = load_offices()
    jingan = registry.get("jingan-amr")
    assert jingan and jingan.uscc == "11310106MB2F00001B" and jingan.district == "310106"
    assert set(jingan.datasets) == {"penalty", "abnormal_patent"}
    yangpu = registry.get("yangpu-amr")
    assert yangpu and yangpu.authorities == ["11310110MB2F000027"]
    ipa = registry.get("sh-ipa")
    assert ipa and ipa.datasets == ["abnormal_patent"] and ipa.covers_all_districts


def test_offices_path_override_and_validation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "offices.yaml"
    path.write_text(
        "offices:\n  - {id: test-office, name: 测试, uscc: 11310106MB2F00001A, district: '310106', datasets: [penalty]}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("CREDITPIPE_OFFICES", str(path))
    with pytest.raises(ConfigError) as excinfo:
        load_offices()
    assert "GB 32100" in excinfo.value.message and str(path) in excinfo.value.message
    path.write_text(path.read_text(encoding="utf-8").replace("00001A", "00001B"), encoding="utf-8")
    assert [o.id for o in load_offices().offices] == ["test-office"]


def test_gx_suite_is_generated_from_the_contract() -> None:
    contract = load_contract("penalty")
    suite = load_suite(contract)  # raises if expectations/penalty.json drifted
    assert suite == build_suite(contract)
    required = {
        e["kwargs"]["column"]
        for e in suite["expectations"]
        if e["type"] == "expect_column_values_to_not_be_null"
    }
    assert required == {f.name for f in contract.fields if f.required}


def test_quality_run_catches_a_bad_batch() -> None:
    import pandas as pd

    from etl.quality import QualityRun

    contract = load_contract("penalty")
    frame = pd.DataFrame({f.name: pd.Series(["x"], dtype="str") for f in contract.fields})
    frame["fine_amount"] = pd.Series([-1.0])
    frame["confiscation_amount"] = pd.Series([0.5])
    run = QualityRun(contract)
    run.validate(frame)
    summary = run.summary()
    assert summary["success"] is False
    failed = {r["expectation"] for r in summary["results"] if not r["success"]}
    assert "expect_column_values_to_match_regex" in failed  # "x" is no USCC
    assert "expect_column_values_to_be_between" in failed  # negative amount
