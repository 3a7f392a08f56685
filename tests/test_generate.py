"""The seeded generator: reproducible files that check clean except for the injected defects,
with subjects that repeat enough for the repeat-offence rules to flag a minority."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from etl import generate
from etl.check import CheckResult, check_file
from etl.checks.rules import evaluate
from etl.cli import app
from etl.flags.policy import load_policy
from etl.generate import DATASETS, DISTRICTS, generate_chunks, generate_file
from etl.offices import load_offices
from tests.conftest import AS_OF
from tests.test_check import CollectingSink

OFFICES = {"penalty": "jingan-amr", "abnormal_patent": "sh-ipa"}  # schemas/offices.yaml
ROWS = 2_000
ERROR_RATE = 0.05
SEED = 11
SMALL_CHUNK = 700  # several chunks per file: pools and row ids must carry across them


@dataclass(frozen=True)
class Checked:
    expected: pd.DataFrame  # the generator's own list of defects (0-based row, code)
    result: CheckResult
    accepted: pd.DataFrame  # typed rows the checker accepted


def _check(
    dataset: str, path: Path, rows: int, error_rate: float, *, quality: bool = True
) -> Checked:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(generate, "CHUNK", SMALL_CHUNK)
        for name in ("CREDITPIPE_OFFICES", "CREDITPIPE_SCHEMAS", "CREDITPIPE_CHUNK_ROWS"):
            mp.delenv(name, raising=False)
        assert generate_file(dataset, rows, path, seed=SEED, error_rate=error_rate) == rows
        chunks = generate_chunks(dataset, rows, seed=SEED, error_rate=error_rate)
        expected = pd.concat([c.defects for c in chunks], ignore_index=True)
        office = load_offices().get(OFFICES[dataset])
        assert office is not None and dataset in office.datasets
        sink = CollectingSink()
        result = check_file(path, dataset, office=office, as_of=AS_OF, sink=sink, quality=quality)
    return Checked(expected, result, sink.accepted())


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Checked]:
    """Each dataset generated (2,000 rows, 5% defects) and checked once for the module."""
    folder = tmp_path_factory.mktemp("generated")
    return {d: _check(d, folder / f"{d}.csv", ROWS, ERROR_RATE) for d in DATASETS}


def _pairs(c: Checked) -> tuple[set[tuple[int, str]], set[tuple[int, str]]]:
    """(line, code) of each rejection the checker found, and of each the generator injected.
    The checker numbers file lines: the header is line 1, data row 0 is line 2."""
    rejections = c.result.rejections
    found = set(zip(rejections["row"].astype(int), rejections["code"], strict=True))
    wanted = set(zip(c.expected["row"].astype(int) + 2, c.expected["code"], strict=True))
    return found, wanted


@pytest.mark.parametrize("dataset", DATASETS)
def test_same_seed_same_bytes_other_seed_other_bytes(
    dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(generate, "CHUNK", SMALL_CHUNK)
    paths = [tmp_path / f"{name}.csv" for name in ("a", "b", "c")]
    for path, seed in zip(paths, (7, 7, 8), strict=True):
        generate_file(dataset, 1_500, path, seed=seed, error_rate=0.05)
    a, b, c = (p.read_bytes() for p in paths)
    assert a == b
    assert a != c
    assert a.count(b"\r\n") == 1_501  # the header and every row


@pytest.mark.parametrize("dataset", DATASETS)
def test_only_the_injected_rows_are_rejected(dataset: str, checked: dict[str, Checked]) -> None:
    c = checked[dataset]
    assert not c.result.file_errors
    assert c.result.warnings == []  # the GX suite passes on the accepted rows too
    assert c.result.rows_read == ROWS
    found, wanted = _pairs(c)
    assert wanted <= found, sorted(wanted - found)[:5]  # each defect reported with its code
    assert set(c.result.rejections["row"]) == {r for r, _ in wanted}  # and nothing else
    # About the share asked for (a repeated key rejects its partner row as well).
    assert abs(c.result.rejected / ROWS - ERROR_RATE) < 0.02
    assert len(c.accepted) == c.result.accepted == ROWS - c.result.rejected
    assert set(c.expected["code"]) >= {"E_REQUIRED", "E_USCC_CHECKSUM", "E_DUPLICATE_IN_FILE"}


@pytest.mark.parametrize("dataset", DATASETS)
def test_dense_defects_still_match_exactly(dataset: str, tmp_path: Path) -> None:
    """Half the rows bad: defects fall on neighbouring rows and chunk edges, and a repeated
    key must still pair with a valid row."""
    c = _check(dataset, tmp_path / "dense.csv", 600, 0.5, quality=False)
    found, wanted = _pairs(c)
    assert wanted <= found, sorted(wanted - found)[:5]
    assert set(c.result.rejections["row"]) == {r for r, _ in wanted}
    assert c.result.rejected > 300


def test_accepted_patent_rows_are_well_formed(checked: dict[str, Checked]) -> None:
    rows = checked["abnormal_patent"].accepted
    assert rows["application_no"].str.fullmatch(r"20\d\d[123]\d{7}\.[0-9X]").all()
    assert rows["district"].isin(DISTRICTS).all()
    assert rows["source_uscc"].eq(generate.IP_OFFICE[1]).all()
    statuses = rows["handling_status"].value_counts(normalize=True)
    assert set(statuses.index) == {
        "待处理",
        "已撤回",
        "申诉中",
        "申诉成立",
        "申诉驳回",
        "逾期未处理",
    }
    assert statuses["已撤回"] > 0.4 and statuses.min() > 0.02
    handled = rows["handling_status"] != "待处理"
    assert rows.loc[handled, "handling_date"].notna().all()
    assert rows.loc[~handled, "handling_date"].isna().all()
    assert (rows["handling_date"] >= rows["notice_date"]).where(handled, True).all()
    assert rows["abnormal_types"].str.contains(";").any()  # several types in one cell


def test_penalty_dates_and_violations_look_real(checked: dict[str, Checked]) -> None:
    rows = checked["penalty"].accepted
    span = rows["decision_date"].max() - rows["decision_date"].min()
    assert span.days > 2.5 * 365 and rows["decision_date"].max() <= pd.Timestamp(AS_OF)
    ip = rows["violation_type"].str.contains("商标|专利|商业秘密|商业诋毁")
    assert 0.1 < ip.mean() < 0.3
    heavy = rows["penalty_categories"].str.contains(
        "吊销许可证件|责令停产停业|限制从业|降低资质等级"
    )
    assert 0.01 < heavy.mean() < 0.1
    licence = rows["penalty_categories"].str.contains("吊销许可证件")
    assert rows.loc[licence, "licence_name_no"].notna().all() and licence.any()


def _subject(rows: pd.DataFrame, identifiers: list[str]) -> pd.Series:
    key = rows[identifiers[-1]]
    for name in reversed(identifiers[:-1]):
        key = rows[name].where(rows[name].notna(), key)
    return key


@pytest.mark.parametrize(
    ("dataset", "identifiers", "name"),
    [
        ("penalty", ["subject_uscc", "id_number"], "subject_name"),
        ("abnormal_patent", ["applicant_uscc", "applicant_id_number"], "applicant_name"),
        ("abnormal_patent", ["agency_code"], "agency_name"),
    ],
)
def test_subjects_repeat_and_keep_their_identity(
    dataset: str, identifiers: list[str], name: str, checked: dict[str, Checked]
) -> None:
    rows = checked[dataset].accepted
    key = _subject(rows, identifiers)
    assert key.notna().mean() > 0.5
    counts = key.value_counts()
    assert counts.max() >= 3 and (counts >= 3).sum() >= 5
    assert (counts <= 2).any()  # and others rarely
    assert rows.groupby(key)[name].nunique().max() == 1  # one name per identifier
    organisations = rows.loc[rows[identifiers[0]].notna()]  # people may share a name
    assert organisations.groupby(name)[identifiers[0]].nunique().max() == 1  # and vice versa


def _flagged_share(rows: pd.DataFrame, rule_id: str) -> float:
    """Share of a rule's subjects with `min_count` matching records within `window_days`,
    the policy's window_count shape, on the checker's typed rows."""
    policy = load_policy()
    rule = policy.rule(rule_id)
    subject = policy.subjects[rule.subject]
    key = _subject(rows, [i.field for i in subject.identifiers])
    matching = evaluate(rule.where, {c: rows[c] for c in rows.columns}, rows.index)
    frame = pd.DataFrame({"key": key, "date": rows[rule.date_field]})[matching].dropna()
    frame = frame.sort_values(["key", "date"])
    later = frame.groupby("key")["date"].shift(-(rule.min_count - 1))
    assert rule.window_days is not None
    hit = ((later - frame["date"]).dt.days <= rule.window_days).to_numpy()
    return frame.loc[hit, "key"].nunique() / key.nunique()


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("large")
    return {
        d: _check(d, folder / f"{d}.csv", 20_000, 0.0, quality=False).accepted for d in DATASETS
    }


@pytest.mark.parametrize(
    ("dataset", "rule_id", "low", "high"),
    [
        ("penalty", "SD-IP-REPEAT", 0.02, 0.15),
        ("abnormal_patent", "SD-PATENT-MASS", 0.01, 0.08),
        ("abnormal_patent", "SD-AGENCY", 0.05, 0.35),
    ],
)
def test_repeat_offence_rules_fire_for_a_minority(
    dataset: str, rule_id: str, low: float, high: float, large: dict[str, pd.DataFrame]
) -> None:
    assert low < _flagged_share(large[dataset], rule_id) < high


def test_cli_generates_abnormal_patent(tmp_path: Path) -> None:
    path = tmp_path / "ap.csv"
    args = ["generate", "abnormal_patent", "--rows", "300", "--out", str(path), "--seed", "3"]
    result = CliRunner().invoke(app, [*args, "--error-rate", "0"])
    assert result.exit_code == 0, result.output
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 301 and lines[0].startswith("申请号,")
    bad = CliRunner().invoke(app, ["generate", "nope", "--out", str(tmp_path / "x.csv")])
    assert bad.exit_code == 2 and not (tmp_path / "x.csv").exists()


def test_generated_names_are_distinct_within_the_vocabulary() -> None:
    sole = np.zeros(5_000, dtype=bool)
    names = generate._organisation_names(np.random.default_rng(1), sole)
    assert names.is_unique
