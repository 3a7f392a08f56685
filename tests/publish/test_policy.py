"""The publication policy file: its profiles, and loud, precise errors when it is wrong."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from etl.errors import ConfigError
from etl.publish.policy import load_publicity_policy, parse_publicity_policy, policy_path
from etl.settings import schemas_dir


def test_default_profile_is_samr_45() -> None:
    profile = load_publicity_policy()
    assert profile.name == "samr-45" and profile.dataset == "penalty"
    assert profile.short.period.total_months == 3 and profile.standard.period.total_months == 36
    assert profile.simple_procedure.max_fine_yuan == {
        "自然人": Decimal(200),
        "法人及非法人组织": Decimal(3000),
        "个体工商户": Decimal(200),
    }
    assert profile.short.max_fine_yuan["法人及非法人组织"] == Decimal(50000)
    assert profile.serious is None and "责令关闭" not in profile.no_early_end
    assert profile.masking.keep_first == 3 and profile.masking.keep_last == 4


def test_ndrc_profile_differs_where_it_should() -> None:
    samr, ndrc = load_publicity_policy("samr-45"), load_publicity_policy("ndrc-2026")
    assert ndrc.name == "ndrc-2026"
    assert ndrc.standard.period.total_months == 12 and ndrc.standard.repair_after is not None
    assert ndrc.standard.repair_after.total_months == 3
    assert ndrc.serious is not None and ndrc.serious.period.total_months == 36
    # shared through YAML anchors: one fact in one place
    assert ndrc.simple_procedure == samr.simple_procedure and ndrc.masking == samr.masking
    assert ndrc.no_early_end == samr.no_early_end


def test_unknown_profile_names_file_and_key() -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_publicity_policy("samr-99")
    message = excinfo.value.message
    assert str(policy_path()) in message and "profiles" in message and "samr-99" in message
    assert "samr-45" in message and "ndrc-2026" in message


@pytest.fixture
def broken(tmp_path: Path) -> Callable[[Callable[[dict[str, Any]], None]], Path]:
    """Write a copy of the real policy after `change` edits it; return its path."""

    def write(change: Callable[[dict[str, Any]], None]) -> Path:
        data = yaml.safe_load(policy_path().read_text(encoding="utf-8"))
        change(data)
        path = tmp_path / "publicity.v1.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        return path

    return write


def _samr(data: dict[str, Any]) -> dict[str, Any]:
    profile: dict[str, Any] = data["profiles"]["samr-45"]
    return profile


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda d: _samr(d).update(colour="red"), "profiles.samr-45.colour"),
        (lambda d: _samr(d)["short"].update(period={}), "profiles.samr-45.short.period"),
        (lambda d: d.update(default_profile="nope"), "default_profile"),
        (
            lambda d: _samr(d)["masking"].update(fill="**"),
            "profiles.samr-45.masking.fill",
        ),
        (
            lambda d: _samr(d)["warning_only"].update(categories=["警 告"]),
            "profiles.samr-45.warning_only.categories",
        ),
        (
            lambda d: _samr(d)["fields"].update(fine="decision_date"),
            "profiles.samr-45.fields.fine",
        ),
        (
            lambda d: _samr(d)["fields"].update(procedure="procedure"),
            "profiles.samr-45.fields.procedure",
        ),
        (
            lambda d: _samr(d)["short"]["max_fine_yuan"].pop("个体工商户"),
            "profiles.samr-45.short.max_fine_yuan",
        ),
        (
            lambda d: _samr(d)["simple_procedure"].update(value="当场"),
            "profiles.samr-45.simple_procedure.value",
        ),
        (
            lambda d: _samr(d)["masking"]["datasets"]["penalty"]["mask"][0].update(
                field="id_numbr"
            ),
            "profiles.samr-45.masking.datasets.penalty.mask.0.field",
        ),
        (
            lambda d: _samr(d)["masking"]["datasets"]["penalty"].update(drop=["legal_rep_id"]),
            "profiles.samr-45.masking.datasets.penalty.drop.0",
        ),
        (
            lambda d: _samr(d)["masking"]["datasets"]["penalty"]["mask"][0].update(
                subject_types=["个人"]
            ),
            "profiles.samr-45.masking.datasets.penalty.mask.0.subject_types",
        ),
        (lambda d: _samr(d).update(dataset="penalties"), "profiles.samr-45.dataset"),
    ],
)
def test_broken_policy_names_file_and_key(
    broken: Callable[[Callable[[dict[str, Any]], None]], Path],
    change: Callable[[dict[str, Any]], None],
    key: str,
) -> None:
    path = broken(change)
    with pytest.raises(ConfigError) as excinfo:
        parse_publicity_policy(path)
    assert str(path) in excinfo.value.message and key in excinfo.value.message


def test_yaml_syntax_error_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "publicity.v1.yaml"
    path.write_text("profiles: [\n", encoding="utf-8")
    with pytest.raises(ConfigError) as excinfo:
        parse_publicity_policy(path)
    assert str(path) in excinfo.value.message and "YAML" in excinfo.value.message


def test_loader_reads_the_schemas_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "schemas"
    shutil.copytree(schemas_dir(), folder)
    policy = folder / "policy" / "publicity.v1.yaml"
    text = policy.read_text(encoding="utf-8").replace(
        "default_profile: samr-45", "default_profile: ndrc-2026"
    )
    policy.write_text(text, encoding="utf-8")
    monkeypatch.setenv("CREDITPIPE_SCHEMAS", str(folder))
    assert load_publicity_policy().name == "ndrc-2026"
    empty = tmp_path / "empty"
    (empty / "policy").mkdir(parents=True)
    monkeypatch.setenv("CREDITPIPE_SCHEMAS", str(empty))
    with pytest.raises(ConfigError, match="文件不存在"):
        load_publicity_policy()
