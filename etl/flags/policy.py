"""The serious-dishonesty policy file: rules as data, validated like the data contracts.

`schemas/policy/serious_dishonesty.v1.yaml` declares every rule (SPEC.md §5); this module only
checks that the file is coherent (ids unique, subjects declared, fields present in the dataset's
contract) so a mistake there is a clear configuration error, never a wrong flag.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from etl import settings
from etl.contracts import Condition, Strict, explain, load_contract, read_yaml
from etl.errors import ConfigError

Severity = Literal["serious", "general"]
SEVERITY_TITLES: dict[str, str] = {"serious": "严重失信", "general": "一般失信"}
POLICY_FILE = "serious_dishonesty.v1.yaml"


class Identifier(Strict):
    """One way of naming a subject; the first non-empty identifier of a record wins."""

    field: str
    kind: str  # shown to reviewers: 统一社会信用代码, 证件号码, 名称 …


class Subject(Strict):
    """Who a rule's flags are about, read from the records of one dataset."""

    dataset: str
    identifiers: list[Identifier] = Field(min_length=1)
    name: str
    type_field: str | None = None  # the record's subject type column, or
    type_value: str | None = None  # one type for every subject (e.g. 专利代理机构)

    def fields(self) -> set[str]:
        names = {i.field for i in self.identifiers} | {self.name}
        return names | ({self.type_field} if self.type_field else set())


class Rule(Strict):
    """One rule. `each_record`: every matching record is a flag. `window_count`: a subject with
    `min_count` matching records at most `window_days` apart (no window: ever)."""

    id: str = Field(pattern=r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)*$")
    title: str
    severity: Severity
    shape: Literal["each_record", "window_count"]
    dataset: str
    subject: str
    date_field: str
    where: Condition
    basis: str
    min_count: int = Field(default=1, ge=1)
    window_days: int | None = Field(default=None, ge=0)
    listing_years: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _shape(self) -> Rule:
        if self.shape == "each_record" and (self.min_count != 1 or self.window_days is not None):
            raise ValueError("each_record rules take no min_count or window_days")
        return self


class Policy(Strict):
    policy: Literal["serious_dishonesty"]
    version: int
    title: str
    vocabularies: dict[str, list[str]] = Field(default_factory=dict)
    listing_years: dict[Severity, int]
    subjects: dict[str, Subject]
    rules: list[Rule] = Field(min_length=1)

    @field_validator("listing_years")
    @classmethod
    def _every_severity(cls, value: dict[str, int]) -> dict[str, int]:
        missing = set(SEVERITY_TITLES) - set(value)
        if missing:
            raise ValueError(f"listing_years needs {sorted(missing)}")
        return value

    @model_validator(mode="after")
    def _references(self) -> Policy:
        ids = [r.id for r in self.rules]
        if len(ids) != len(set(ids)):
            raise ValueError(f"rule ids must be unique: {ids}")
        for rule in self.rules:
            subject = self.subjects.get(rule.subject)
            if subject is None:
                raise ValueError(f"{rule.id}: subject {rule.subject!r} is not declared")
            if subject.dataset != rule.dataset:
                raise ValueError(f"{rule.id}: subject {rule.subject!r} reads {subject.dataset}")
        return self

    def listing_years_of(self, rule: Rule) -> int:
        return rule.listing_years or self.listing_years[rule.severity]

    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise ConfigError(f"失信规则 {rule_id} 不在当前规则文件中")


def policy_path() -> Path:
    return settings.schemas_dir() / "policy" / POLICY_FILE


def load_policy(path: Path | None = None) -> Policy:
    """Load and check the policy; every field a rule reads must exist in its dataset's contract."""
    return _load(path or policy_path())


@cache
def _load(path: Path) -> Policy:
    try:
        policy = Policy.model_validate(read_yaml(path))
    except ValidationError as exc:
        raise ConfigError(explain(path, exc, "失信规则文件无效")) from None
    for rule in policy.rules:
        contract = load_contract(rule.dataset)
        known = {f.name for f in contract.fields}
        wanted = rule.where.fields() | {rule.date_field} | policy.subjects[rule.subject].fields()
        unknown = sorted(wanted - known)
        if unknown:
            raise ConfigError(
                f"{path}: 规则 {rule.id} 引用了 {rule.dataset} 中不存在的字段 {unknown}"
            )
        if contract.field(rule.date_field).type != "date":
            raise ConfigError(f"{path}: 规则 {rule.id} 的 date_field 不是日期字段")
    return policy
