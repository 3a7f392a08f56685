"""The publication policy file: publicity windows and masking, as named profiles.

`schemas/policy/publicity.v1.yaml` holds every number and category the publication rules use
(SPEC.md §4: periods, thresholds and masking vary by regime and province, so they are
configuration, never code). This module validates its shape with pydantic models and then checks
it against the dataset contracts: every field it names must exist with the right type, and every
category, subject type and procedure value must be one the contract accepts. A mistake there is a
ConfigError naming the file and the key, never a record published for the wrong period.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, model_validator

from etl import settings
from etl.contracts import (
    Contract,
    FieldSpec,
    Strict,
    available_datasets,
    explain,
    load_contract,
    read_yaml,
)
from etl.errors import ConfigError

POLICY_FILE = "publicity.v1.yaml"
Yuan = Annotated[Decimal, Field(gt=0, description="an amount in 元, as the rules state it")]


class Period(Strict):
    """A length in whole years and months, counted by 《民法典》第二百零二条 (see windows.py)."""

    years: int = Field(default=0, ge=0)
    months: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _not_empty(self) -> Period:
        if self.years == 0 and self.months == 0:
            raise ValueError("a period needs `years` or `months` greater than zero")
        return self

    @property
    def total_months(self) -> int:
        """The period in months (3 years = 36 months: same last day under 第二百零二条)."""
        return 12 * self.years + self.months


class PenaltyFields(Strict):
    """The contract fields the window rules read, by role."""

    subject_type: str = Field(description="行政相对人类别 (enum): picks the fine thresholds")
    categories: str = Field(description="处罚类别 (multi_enum, `;`-joined canonical values)")
    fine: str = Field(description="罚款金额 (amount, in the contract's unit)")
    decision_date: str = Field(description="处罚决定日期 (date): every period starts here")
    procedure: str | None = Field(default=None, description="程序类型 (enum), when files carry it")
    restriction_end: str | None = Field(
        default=None, description="date a restriction ends (处罚有效期), for the extension rule"
    )
    supplied_until: str | None = Field(
        default=None, description="公示截止期 as sent: used instead of the computed one if present"
    )


class WarningOnly(Strict):
    """Never published: a penalty made of these categories only (总局令第45号 第二条第二款)."""

    categories: list[str] = Field(min_length=1)


class SimpleProcedure(Strict):
    """Never published: 简易程序 penalties (总局令第45号 第二条第一款).

    `value` is the 程序类型 that says so; when a record has no 程序类型, a penalty made only of
    `ceiling_categories` with a fine within `max_fine_yuan` for its subject type is taken to be
    one (《行政处罚法》第五十一条)."""

    value: str
    ceiling_categories: list[str] = Field(min_length=1)
    max_fine_yuan: dict[str, Yuan]


class Window(Strict):
    """How long a class is published, and when credit repair may end that early (None: never)."""

    period: Period
    repair_after: Period | None = None


class ShortClass(Window):
    """Only `categories` (通报批评, 较低数额罚款), the fine within `max_fine_yuan` by subject type."""

    categories: list[str] = Field(min_length=1)
    max_fine_yuan: dict[str, Yuan]


class SeriousClass(Window):
    """Any of `categories` (a profile's 严重失信 proxy)."""

    categories: list[str] = Field(min_length=1)


class RestrictionExtension(Strict):
    """A restriction that lasts longer than the window keeps the record published until it ends
    (总局令第45号 第十三条第三款)."""

    categories: list[str] = Field(min_length=1)


class MaskRule(Strict):
    """Mask one field; on rows whose `subject_field` is one of `subject_types`, or on every row
    when no subject is given."""

    field: str
    subject_field: str | None = None
    subject_types: list[str] | None = Field(default=None, min_length=1)
    mask_when_missing: bool = Field(
        default=True, description="mask rows whose subject_field is empty (cannot be cleared)"
    )

    @model_validator(mode="after")
    def _both_or_neither(self) -> MaskRule:
        if (self.subject_field is None) != (self.subject_types is None):
            raise ValueError("`subject_field` and `subject_types` go together")
        return self


class DatasetMasking(Strict):
    """What a dataset's public extract masks and what it never contains."""

    mask: list[MaskRule] = Field(default_factory=list)
    drop: list[str] = Field(default_factory=list)


class Masking(Strict):
    """Partial masking of identifiers: keep the ends, fill the middle (总局令第45号 第六条)."""

    fill: str = Field(min_length=1, max_length=1)
    keep_first: int = Field(ge=0)
    keep_last: int = Field(ge=0)
    min_masked: int = Field(
        ge=1, description="a value with fewer hidden characters than this is filled completely"
    )
    datasets: dict[str, DatasetMasking]


class PublicityProfile(Strict):
    """One regime's publication rules (a `profiles.<name>` entry)."""

    name: str = Field(description="the profile's key in the file; written into manifests")
    title: str
    basis: str = Field(description="the legal basis, cited in full")
    dataset: str = Field(description="the dataset the window rules apply to")
    fields: PenaltyFields
    warning_only: WarningOnly
    simple_procedure: SimpleProcedure
    short: ShortClass
    serious: SeriousClass | None = None
    standard: Window
    no_early_end: list[str] = Field(default_factory=list)
    extend_to_restriction_end: RestrictionExtension | None = None
    masking: Masking

    @model_validator(mode="after")
    def _extension_has_its_field(self) -> PublicityProfile:
        if self.extend_to_restriction_end is not None and self.fields.restriction_end is None:
            raise ValueError("extend_to_restriction_end needs fields.restriction_end")
        return self


class PublicityPolicy(Strict):
    """The whole file: its profiles and which one applies when none is named."""

    version: int = Field(ge=1)
    default_profile: str
    profiles: dict[str, PublicityProfile] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _name_profiles(cls, data: Any) -> Any:
        """A profile's name is its key; copy it in so a profile alone knows who it is."""
        if isinstance(data, dict) and isinstance(data.get("profiles"), dict):
            profiles = {
                key: {**value, "name": key} if isinstance(value, dict) else value
                for key, value in data["profiles"].items()
            }
            return {**data, "profiles": profiles}
        return data

    @model_validator(mode="after")
    def _default_exists(self) -> PublicityPolicy:
        if self.default_profile not in self.profiles:
            raise ValueError(f"default_profile {self.default_profile!r} is not in profiles")
        return self


def policy_path() -> Path:
    """`<schemas>/policy/publicity.v1.yaml` (CREDITPIPE_SCHEMAS moves the schemas folder)."""
    return settings.schemas_dir() / "policy" / POLICY_FILE


def load_publicity_policy(profile: str | None = None) -> PublicityProfile:
    """The named profile (the file's `default_profile` when None), validated and checked against
    the dataset contracts; ConfigError names the file and key of any problem."""
    path = policy_path()
    policy = _load(path)
    name = profile or policy.default_profile
    if name not in policy.profiles:
        known = "、".join(policy.profiles)
        raise ConfigError(f"{path}: profiles: 没有名为 {name!r} 的公示政策；可用的有：{known}")
    return policy.profiles[name]


@cache
def _load(path: Path) -> PublicityPolicy:
    return parse_publicity_policy(path)


def parse_publicity_policy(path: Path) -> PublicityPolicy:
    """Parse and check one policy file (uncached)."""
    try:
        policy = PublicityPolicy.model_validate(read_yaml(path))
    except ValidationError as exc:
        raise ConfigError(explain(path, exc, "公示政策文件无效")) from None
    problems = [p for profile in policy.profiles.values() for p in _contract_problems(profile)]
    if problems:
        lines = "\n".join(f"{path}: {p}" for p in problems)
        raise ConfigError("公示政策文件与数据契约不一致：\n" + lines)
    return policy


class _Checker:
    """Collects the ways a profile disagrees with a dataset contract, each with its key."""

    def __init__(self, contract: Contract, where: str, problems: list[str]) -> None:
        self.contract = contract
        self.where = where
        self.problems = problems

    def field(self, key: str, name: str | None, *types: str) -> FieldSpec | None:
        """The contract field `name` (None, reported, when absent or of another type)."""
        if name is None:
            return None
        try:
            spec = self.contract.field(name)
        except KeyError:
            self.problems.append(
                f"{self.where}.{key}: 字段 {name!r} 不在数据契约 {self.contract.name} 中"
            )
            return None
        if types and spec.type not in types:
            self.problems.append(
                f"{self.where}.{key}: 字段 {name!r} 的类型是 {spec.type}，应为 {'/'.join(types)}"
            )
            return None
        return spec

    def values(self, key: str, given: list[str], spec: FieldSpec | None) -> None:
        """Every value in `given` must be one of the field's enumerated values."""
        if spec is None:
            return
        lookup = self.contract.lookups.get(spec.lookup or "", {})
        allowed = spec.enum or list(lookup)
        unknown = [v for v in given if v not in allowed]
        if unknown:
            self.problems.append(
                f"{self.where}.{key}: {unknown} 不是 {self.contract.name} 字段 {spec.name} 的取值"
                f"（可用：{'、'.join(allowed)}）"
            )

    def covers(self, key: str, given: dict[str, Yuan], spec: FieldSpec | None) -> None:
        """A threshold per subject type: every type the contract knows, and no other."""
        if spec is None:
            return
        self.values(key, list(given), spec)
        missing = [v for v in spec.enum or [] if v not in given]
        if missing:
            self.problems.append(f"{self.where}.{key}: 缺少这些{spec.title}的金额：{missing}")


def _contract_problems(profile: PublicityProfile) -> list[str]:
    problems: list[str] = []
    where = f"profiles.{profile.name}"
    if profile.dataset not in available_datasets():
        return [f"{where}.dataset: 没有数据集 {profile.dataset!r} 的数据契约"]
    check = _Checker(load_contract(profile.dataset), where, problems)
    f = profile.fields
    subject = check.field("fields.subject_type", f.subject_type, "enum")
    categories = check.field("fields.categories", f.categories, "multi_enum")
    check.field("fields.fine", f.fine, "amount")
    check.field("fields.decision_date", f.decision_date, "date")
    procedure = check.field("fields.procedure", f.procedure, "enum")
    check.field("fields.restriction_end", f.restriction_end, "date")
    check.field("fields.supplied_until", f.supplied_until, "date")

    check.values("warning_only.categories", profile.warning_only.categories, categories)
    simple = profile.simple_procedure
    if procedure is not None:
        check.values("simple_procedure.value", [simple.value], procedure)
    check.values("simple_procedure.ceiling_categories", simple.ceiling_categories, categories)
    check.covers("simple_procedure.max_fine_yuan", simple.max_fine_yuan, subject)
    check.values("short.categories", profile.short.categories, categories)
    check.covers("short.max_fine_yuan", profile.short.max_fine_yuan, subject)
    if profile.serious is not None:
        check.values("serious.categories", profile.serious.categories, categories)
    check.values("no_early_end", profile.no_early_end, categories)
    if profile.extend_to_restriction_end is not None:
        extension = profile.extend_to_restriction_end.categories
        check.values("extend_to_restriction_end.categories", extension, categories)
    problems += _masking_problems(profile.masking, f"{where}.masking")
    return problems


def _masking_problems(masking: Masking, where: str) -> list[str]:
    problems: list[str] = []
    known = available_datasets()
    for dataset, rules in masking.datasets.items():
        key = f"{where}.datasets.{dataset}"
        if dataset not in known:
            problems.append(f"{key}: 没有数据集 {dataset!r} 的数据契约")
            continue
        check = _Checker(load_contract(dataset), key, problems)
        for i, rule in enumerate(rules.mask):
            check.field(f"mask.{i}.field", rule.field)
            # An enum, or a text field whose look-up gives canonical values (证件类型 → 身份证).
            subject = check.field(f"mask.{i}.subject_field", rule.subject_field, "enum", "text")
            check.values(f"mask.{i}.subject_types", rule.subject_types or [], subject)
        for i, name in enumerate(rules.drop):
            check.field(f"drop.{i}", name)
    return problems
