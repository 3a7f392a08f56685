"""Data contracts: `schemas/<dataset>.v<N>.yaml` loaded into typed, validated models.

The contract is the one place a field is declared (DESIGN.md "one fact in one place"): its
Chinese title, exchange code, snake_case name, type, length, required rules, enumeration,
look-ups and header aliases. The readers, row rules, Arrow schema and GX suite all derive from it.
A broken contract fails loudly, naming the file and the key.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from etl import settings
from etl.errors import ContractError
from etl.text import lookup_key, normalise_header

FieldType = Literal[
    "text",  # free text: trimmed, characters kept as typed
    "enum",  # one value of `enum`, variants mapped through `lookup`
    "multi_enum",  # one or more values of `enum`, separated by `separators`
    "uscc",  # 统一社会信用代码, GB 32100-2015
    "personal_id",  # 证件号码; GB 11643-1999 checked when `check_when` holds
    "date",  # calendar date
    "amount",  # decimal(18,6) in the field's `unit`
    "patent_appno",  # 专利申请号, SPEC.md §3
    "district",  # 6-digit 行政区划 code
]
Unit = Literal["万元", "元"]
SourceTag = Literal["LAW", "OFFICIAL-COPY", "PRACTICE", "OURS"]

_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


class Strict(BaseModel):
    """Configuration models: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Condition(Strict):
    """A predicate over one row, used by conditional rules.

    Either a test on one field, compared with the field's canonical value, or a combination
    (`all_of`, `any_of`, `not`). The tests:
    `in` (the value is one of), `equals`, `empty`, `contains_any` (a multi-value cell holds one
    of), `only` (a multi-value cell holds nothing but these, e.g. a warning-only penalty) and
    `matches_any` (free text contains one of these keywords, e.g. an IP violation type).
    """

    field: str | None = None
    in_: list[str] | None = Field(default=None, alias="in")
    contains_any: list[str] | None = None
    only: list[str] | None = None
    matches_any: list[str] | None = None
    equals: str | None = None
    empty: bool | None = None
    all_of: list[Condition] | None = None
    any_of: list[Condition] | None = None
    not_: Condition | None = Field(default=None, alias="not")

    @model_validator(mode="after")
    def _one_form(self) -> Condition:
        tests = [self.in_, self.contains_any, self.only, self.matches_any, self.equals, self.empty]
        n_tests = sum(t is not None for t in tests)
        n_combos = sum(c is not None for c in (self.all_of, self.any_of, self.not_))
        if self.field is not None and n_tests == 1 and n_combos == 0:
            return self
        if self.field is None and n_tests == 0 and n_combos == 1:
            return self
        raise ValueError(
            "a condition is either `field` with exactly one of in/contains_any/only/matches_any/"
            "equals/empty, or exactly one of all_of/any_of/not"
        )

    def fields(self) -> set[str]:
        """Every field name the condition reads."""
        names = {self.field} if self.field else set()
        subs = (self.all_of or []) + (self.any_of or []) + ([self.not_] if self.not_ else [])
        for sub in subs:
            names |= sub.fields()
        return names

    def describe(self, titles: dict[str, str]) -> str:
        """The condition in plain Chinese, for rejection messages."""
        if self.all_of is not None:
            return "且".join(c.describe(titles) for c in self.all_of)
        if self.any_of is not None:
            return "或".join(c.describe(titles) for c in self.any_of)
        if self.not_ is not None:
            return f"并非（{self.not_.describe(titles)}）"
        title = f"「{titles.get(self.field or '', self.field)}」"
        if self.in_ is not None:
            return f"{title}为{'/'.join(self.in_)}"
        if self.contains_any is not None:
            return f"{title}包含{'/'.join(self.contains_any)}"
        if self.only is not None:
            return f"{title}仅为{'/'.join(self.only)}"
        if self.matches_any is not None:
            return f"{title}含有“{'/'.join(self.matches_any)}”之一"
        if self.equals is not None:
            return f"{title}为{self.equals}"
        return f"{title}为空" if self.empty else f"{title}不为空"


class Reroute(Strict):
    """Send a combined column's value to another field on the rows where `when` holds."""

    to: str
    when: Condition


class Alias(Strict):
    """A header variant; `unit` says what unit an amount column titled this way is in."""

    name: str
    unit: Unit | None = None
    reroute: Reroute | None = None


class FieldSpec(Strict):
    """One field of a dataset, declared once."""

    name: str = Field(description="snake_case column name used in the store and Parquet")
    title: str = Field(description="Chinese title as in the exchange standard")
    code: str | None = Field(default=None, description="exchange code, e.g. CF_XDR_MC")
    type: FieldType = "text"
    description: str | None = None
    source: SourceTag | None = Field(default=None, description="SPEC.md source tag")
    max_length: int | None = Field(default=None, gt=0, description="in characters")
    required: bool = False
    required_when: Condition | None = None
    required_code: str = Field(
        default="E_REQUIRED", description="code reported when `required_when` holds and empty"
    )
    positive: bool = Field(
        default=False, description="amount: when required, it must be greater than zero"
    )
    enum: list[str] | None = None
    lookup: str | None = Field(default=None, description="name of a look-up in `lookups`")
    expand: dict[str, list[str]] = Field(
        default_factory=dict,
        description="multi_enum: legacy combined labels mapped onto several values, applied "
        "before splitting",
    )
    separators: list[str] = Field(default_factory=lambda: [";", "；", "、", ",", "，"])
    canonical: bool = Field(
        default=False, description="text that is an identifier: NFKC and no whitespace"
    )
    unit: Unit | None = Field(default=None, description="amount: the unit the field holds")
    placeholder: str | None = Field(default=None, description="uscc: accepted placeholder")
    placeholder_when: Condition | None = None
    check_when: Condition | None = Field(
        default=None, description="personal_id: when the GB 11643 check applies"
    )
    not_future: bool = False
    not_before: str | None = Field(default=None, description="date: another date field")
    order_code: str = Field(
        default="E_DATE_ORDER", description="code reported when the date is before `not_before`"
    )
    value_aliases: dict[str, str] = Field(
        default_factory=dict, description="whole-value replacements, e.g. 长期 → 2099-12-31"
    )
    aliases: list[Annotated[str, Field(min_length=1)] | Alias] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> FieldSpec:
        if not _SNAKE.match(self.name):
            raise ValueError(f"name {self.name!r} is not snake_case")
        if self.type in ("enum", "multi_enum") and not self.enum:
            raise ValueError(f"{self.name}: type {self.type} needs `enum`")
        if self.type == "amount" and self.unit is None:
            raise ValueError(f"{self.name}: an amount field needs `unit`")
        if self.positive and self.type != "amount":
            raise ValueError(f"{self.name}: `positive` applies to amounts only")
        if self.not_future and self.type != "date":
            raise ValueError(f"{self.name}: `not_future` applies to dates only")
        return self

    def header_aliases(self) -> list[Alias]:
        """Title and aliases as `Alias` objects; the title carries the field's own unit."""
        out = [Alias(name=self.title, unit=self.unit)]
        out += [a if isinstance(a, Alias) else Alias(name=a, unit=self.unit) for a in self.aliases]
        return out


class Authorisation(Strict):
    """Which fields tie a row to the office that dropped it (E_OFFICE_NOT_AUTHORISED)."""

    source_field: str | None = Field(
        default=None, description="must equal the dropping office's USCC"
    )
    authority_field: str | None = Field(
        default=None, description="must be one of the authorities the office reports for"
    )
    district_field: str | None = Field(
        default=None, description="must be the office's district unless it covers all"
    )


class Revocation(Strict):
    """How a row says that its record is revoked (withdrawn from publication)."""

    field: str | None = None
    values: list[str] = Field(default_factory=list)
    remark_field: str | None = None
    remark_prefixes: list[str] = Field(default_factory=list)


class Overdue(Strict):
    """A status derived in the as-of state when a deadline passes with nothing done [OURS]."""

    rule: str = Field(description="the rule's id, reported with every derived status")
    title: str
    from_field: str = Field(description="the date field the window starts from")
    months: int = Field(gt=0)
    when: list[str] = Field(min_length=1, description="statuses that become overdue")
    status: str = Field(description="the status reported once overdue")


class Lifecycle(Strict):
    """A status field whose changes between versions of a record must follow `transitions`."""

    field: str
    transitions: dict[str, list[str]]
    overdue: Overdue | None = None

    def allowed_pairs(self) -> list[tuple[str, str]]:
        """(stored, new) status pairs a new version may have; staying put always is."""
        pairs = {(s, s) for s in self.transitions}
        pairs |= {(s, t) for s, targets in self.transitions.items() for t in targets}
        return sorted(pairs)


class Contract(Strict):
    """A dataset's contract, validated; derived artefacts come from here."""

    dataset: str
    version: int = Field(ge=1)
    title: str
    description: str = ""
    standard: str = ""
    sheet: str | None = Field(default=None, description="XLSX sheet name; first sheet if unset")
    natural_key: list[str] = Field(min_length=1)
    authorisation: Authorisation = Authorisation()
    revocation: Revocation = Revocation()
    lifecycle: Lifecycle | None = None
    lookups: dict[str, dict[str, list[str]]] = Field(default_factory=dict)
    fields: list[FieldSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> Contract:
        names = [f.name for f in self.fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"field names declared twice: {dupes}")
        known = set(names)

        def need(name: str | None, where: str) -> None:
            if name is not None and name not in known:
                raise ValueError(f"{where} names unknown field {name!r}")

        for key in self.natural_key:
            need(key, "natural_key")
        auth = self.authorisation
        for attr in ("source_field", "authority_field", "district_field"):
            need(getattr(auth, attr), f"authorisation.{attr}")
        need(self.revocation.field, "revocation.field")
        need(self.revocation.remark_field, "revocation.remark_field")
        if self.lifecycle is not None:
            need(self.lifecycle.field, "lifecycle.field")
            states = set(self.field(self.lifecycle.field).enum or [])
            named = set(self.lifecycle.transitions) | {
                t for ts in self.lifecycle.transitions.values() for t in ts
            }
            if self.lifecycle.overdue is not None:
                need(self.lifecycle.overdue.from_field, "lifecycle.overdue.from_field")
                named |= {self.lifecycle.overdue.status, *self.lifecycle.overdue.when}
            if named - states:
                raise ValueError(
                    f"lifecycle names states not in {self.lifecycle.field}.enum: "
                    f"{sorted(named - states)}"
                )
        headers: dict[str, str] = {}
        for f in self.fields:
            for cond_name in ("required_when", "placeholder_when", "check_when"):
                cond = getattr(f, cond_name)
                for ref in cond.fields() if cond else ():
                    need(ref, f"{f.name}.{cond_name}")
            need(f.not_before, f"{f.name}.not_before")
            if f.lookup is not None and f.lookup not in self.lookups:
                raise ValueError(f"{f.name}.lookup names unknown look-up {f.lookup!r}")
            for alias in f.header_aliases():
                if alias.reroute is not None:
                    need(alias.reroute.to, f"{f.name} alias {alias.name!r} reroute.to")
                    for ref in alias.reroute.when.fields():
                        need(ref, f"{f.name} alias {alias.name!r} reroute.when")
                key = normalise_header(alias.name)
                if headers.get(key, f.name) != f.name:
                    raise ValueError(
                        f"header {alias.name!r} is claimed by both {headers[key]} and {f.name}"
                    )
                headers[key] = f.name
        for lookup_name, table in self.lookups.items():
            seen: dict[str, str] = {}
            for canonical_value, variants in table.items():
                for variant in [canonical_value, *variants]:
                    k = lookup_key(variant)
                    if seen.get(k, canonical_value) != canonical_value:
                        raise ValueError(
                            f"lookups.{lookup_name}: {variant!r} maps to both "
                            f"{seen[k]!r} and {canonical_value!r}"
                        )
                    seen[k] = canonical_value
        return self

    @property
    def name(self) -> str:
        """`<dataset>.v<version>`, the id written into manifests and receipts."""
        return f"{self.dataset}.v{self.version}"

    def field(self, name: str) -> FieldSpec:
        """The field called `name`."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def titles(self) -> dict[str, str]:
        """snake_case name → Chinese title."""
        return {f.name: f.title for f in self.fields}

    def header_index(self) -> dict[str, tuple[str, Alias]]:
        """Normalised header text → (field name, alias), for header detection."""
        return {
            normalise_header(a.name): (f.name, a) for f in self.fields for a in f.header_aliases()
        }

    def value_map(self, field: FieldSpec) -> dict[str, str]:
        """Look-up key of every accepted spelling → canonical value, for an enum-like field."""
        mapping: dict[str, str] = {}
        for value in field.enum or []:
            mapping[lookup_key(value)] = value
        if field.lookup:
            for canonical_value, variants in self.lookups[field.lookup].items():
                for variant in [canonical_value, *variants]:
                    mapping[lookup_key(variant)] = canonical_value
        return mapping

    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema of a normalised batch, with titles and codes as field metadata."""
        return pa.schema(
            [
                pa.field(
                    f.name,
                    _ARROW_TYPES[f.type],
                    nullable=not f.required,
                    metadata={"title": f.title, "code": f.code or "", "type": f.type},
                )
                for f in self.fields
            ],
            metadata={"dataset": self.dataset, "contract": self.name},
        )


_ARROW_TYPES: dict[str, pa.DataType] = {
    "text": pa.string(),
    "enum": pa.string(),
    "multi_enum": pa.string(),
    "uscc": pa.string(),
    "personal_id": pa.string(),
    "date": pa.date32(),
    "amount": pa.decimal128(18, 6),
    "patent_appno": pa.string(),
    "district": pa.string(),
}


def contract_path(dataset: str, version: int | None = None) -> Path:
    """The YAML of `dataset` (highest version unless one is given)."""
    folder = settings.schemas_dir()
    if version is not None:
        path = folder / f"{dataset}.v{version}.yaml"
        if not path.is_file():
            raise ContractError(f"找不到数据集 {dataset} 第 {version} 版的数据契约：{path}")
        return path
    candidates = sorted(
        folder.glob(f"{dataset}.v*.yaml"),
        key=lambda p: int(m.group(1)) if (m := re.search(r"\.v(\d+)\.yaml$", p.name)) else 0,
    )
    if not candidates:
        known = ", ".join(available_datasets()) or "（无）"
        raise ContractError(f"未知的数据集 {dataset!r}；可用的数据集：{known}")
    return candidates[-1]


def available_datasets() -> list[str]:
    """Datasets that have a contract in the schemas folder."""
    folder = settings.schemas_dir()
    return sorted({p.name.split(".v")[0] for p in folder.glob("*.v*.yaml")})


def load_contract(dataset: str, version: int | None = None) -> Contract:
    """Load and validate a dataset's contract (cached per path)."""
    return _load(contract_path(dataset, version))


@cache
def _load(path: Path) -> Contract:
    return parse_contract(path)


def parse_contract(path: Path) -> Contract:
    """Parse one contract file; errors name the file and the key that is wrong."""
    data = read_yaml(path)
    try:
        return Contract.model_validate(data)
    except ValidationError as exc:
        raise ContractError(explain(path, exc)) from None


def read_yaml(path: Path) -> object:
    """Read a YAML configuration file, turning I/O and syntax errors into ConfigError."""
    try:
        with path.open(encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise ContractError(f"{path}: 文件不存在") from None
    except yaml.YAMLError as exc:
        raise ContractError(f"{path}: YAML 语法错误：{exc}") from None


def explain(path: Path, exc: ValidationError, heading: str = "数据契约无效") -> str:
    """A validation error as one line per wrong key, naming the file."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(root)"
        lines.append(f"{path}: {key}: {err['msg']}")
    return f"{heading}：\n" + "\n".join(lines)
