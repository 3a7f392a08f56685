"""Row rules: from a raw chunk to typed values and rejections, all derived from the contract.

Order matters only where the contract makes fields depend on each other: category fields are
normalised first (conditions read them), then combined columns are rerouted, then the rest.
A row may carry several rejections; each names the row, field, code, message and raw value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from etl.checks.codes import message
from etl.checks.identifiers import check_resident_id, check_uscc
from etl.contracts import Condition, Contract, FieldSpec
from etl.intake.header import HeaderMap
from etl.intake.normalise import (
    Parsed,
    ParseMemo,
    Problem,
    parse_field,
    positive,
    to_timestamp,
)
from etl.intake.readers import EXTRA, ROW
from etl.offices import Office
from etl.text import STR, arrow_strings

REJECTION_COLUMNS = ["row", "field", "code", "message", "value"]
_FIRST = ("enum", "multi_enum", "district")


@dataclass(frozen=True)
class ChunkContext:
    """Everything the rules need besides the rows themselves."""

    contract: Contract
    header: HeaderMap
    office: Office | None
    as_of: date
    # Parsed distinct values of the file's earlier chunks, per field (normalise.ParseMemo).
    memos: dict[str, ParseMemo] = field(default_factory=dict, compare=False, repr=False)


@dataclass
class ChunkOutcome:
    """Typed values of every row (invalid cells are NA) and the rejections found."""

    typed: pd.DataFrame
    rejections: pd.DataFrame


class _Collector:
    def __init__(self, rows: pd.Series, titles: dict[str, str]) -> None:
        self.rows = rows
        self.titles = titles
        self.frames: list[pd.DataFrame] = []

    def add(
        self,
        mask: pd.Series,
        field: str,
        code: str,
        msg: str | pd.Series,
        value: pd.Series,
        suffix: pd.Series | None = None,
    ) -> None:
        """Reject the rows of `mask`; `suffix` (per row) is appended to their message."""
        if mask.dtype != bool:
            mask = mask.fillna(False).astype(bool)
        if not mask.to_numpy().any():  # most rules reject no row of a chunk
            return
        text = msg[mask] if isinstance(msg, pd.Series) else msg
        if suffix is not None:
            text = text + suffix[mask]
        self.frames.append(
            pd.DataFrame(
                {
                    "row": self.rows[mask],
                    "field": self.titles.get(field, field),
                    "code": code,
                    "message": text,
                    "value": value[mask].astype(STR),
                }
            )
        )

    def problem(self, problem: Problem, field: str, value: pd.Series) -> None:
        self.add(problem.mask, field, problem.code, problem.message, value, problem.suffix)

    def frame(self) -> pd.DataFrame:
        if not self.frames:
            return empty_rejections()
        return pd.concat(self.frames, ignore_index=True)


def empty_rejections() -> pd.DataFrame:
    """A rejections frame with no rows and the standard columns."""
    return pd.DataFrame(
        {
            "row": pd.Series(dtype="int64"),
            **{c: pd.Series(dtype=STR) for c in REJECTION_COLUMNS[1:]},
        }
    )


class _Conditions:
    """`evaluate` against a chunk's final typed values, once per distinct condition.

    Several rules share a condition (自然人 decides three fields' rules): a condition is a
    string comparison over the whole chunk, so it is worked out once.
    """

    def __init__(self, typed: dict[str, pd.Series], index: pd.Index) -> None:
        self.typed = typed
        self.index = index
        self._done: dict[str, pd.Series] = {}

    def holds(self, cond: Condition) -> pd.Series:
        key = cond.model_dump_json()
        if key not in self._done:
            self._done[key] = evaluate(cond, self.typed, self.index)
        return self._done[key]


def evaluate(cond: Condition, typed: dict[str, pd.Series], index: pd.Index) -> pd.Series:
    """Rows where `cond` holds, against canonical values."""
    if cond.all_of is not None:
        result = pd.Series(True, index=index)
        for sub in cond.all_of:
            result &= evaluate(sub, typed, index)
        return result
    if cond.any_of is not None:
        result = pd.Series(False, index=index)
        for sub in cond.any_of:
            result |= evaluate(sub, typed, index)
        return result
    if cond.not_ is not None:
        return ~evaluate(cond.not_, typed, index)
    assert cond.field is not None
    values = typed.get(cond.field, pd.Series(pd.NA, index=index, dtype=STR))
    if cond.empty is not None:
        return values.isna() if cond.empty else values.notna()
    if cond.in_ is not None:
        return values.isin(cond.in_).fillna(False).astype(bool)
    if cond.equals is not None:
        return (values == cond.equals).fillna(False).astype(bool)
    if cond.matches_any is not None:
        wanted = "|".join(re.escape(word) for word in cond.matches_any)
        return values.str.contains(wanted, regex=True).fillna(False).astype(bool)
    if cond.only is not None:
        # `;`-joined canonical values: strip every allowed one, nothing may remain.
        allowed = "|".join(re.escape(value) for value in cond.only)

        def only(distinct: pd.Series) -> pd.Series:
            rest = distinct.str.replace(f"(?:^|;)(?:{allowed})(?=;|$)", "", regex=True)
            return distinct.notna() & (rest.str.strip(";") == "")

        return _per_category(values, only)
    assert cond.contains_any is not None
    wanted = "|".join(re.escape(value) for value in cond.contains_any)
    return _per_category(
        values, lambda distinct: distinct.str.contains(f"(?:^|;)(?:{wanted})(?:;|$)", regex=True)
    )


def _per_category(values: pd.Series, test: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """`test` (a regex over `;`-joined categories) once per distinct value, spread back to the
    rows; NA is False. A multi-category field holds a few dozen combinations in 50,000 rows."""
    encoded = pc.dictionary_encode(arrow_strings(values.astype(STR)))
    outcome = test(pd.Series(encoded.dictionary, dtype=STR)).fillna(False).to_numpy(dtype=bool)
    codes = pc.fill_null(encoded.indices, len(outcome)).to_numpy(zero_copy_only=False)
    return pd.Series(np.append(outcome, False)[codes], index=values.index)


def validate_chunk(raw: pd.DataFrame, ctx: ChunkContext) -> ChunkOutcome:
    """Apply every rule of the contract to one raw chunk."""
    contract = ctx.contract
    titles = contract.titles()
    index = raw.index
    out = _Collector(raw[ROW], titles)
    bindings = ctx.header.by_field()
    texts = {
        f.name: raw[f.name] if f.name in raw else pd.Series("", index=index, dtype=STR)
        for f in contract.fields
    }
    parsed: dict[str, Parsed] = {}

    def parse(spec: FieldSpec) -> None:
        binding = bindings.get(spec.name)
        unit = binding.alias.unit if binding else spec.unit
        memo = ctx.memos.setdefault(spec.name, ParseMemo())
        parsed[spec.name] = parse_field(spec, texts[spec.name], contract, unit=unit, memo=memo)

    for spec in contract.fields:
        if spec.type in _FIRST:
            parse(spec)
    typed = {name: p.values for name, p in parsed.items()}
    for binding in bindings.values():  # combined columns, e.g. 统一社会信用代码/身份证号
        reroute = binding.alias.reroute
        if reroute is None:
            continue
        moved = evaluate(reroute.when, typed, index) & (texts[reroute.to].str.strip() == "")
        texts[reroute.to] = texts[reroute.to].mask(moved, texts[binding.field])
        texts[binding.field] = texts[binding.field].mask(moved, "")
    for spec in contract.fields:
        if spec.type not in _FIRST:
            parse(spec)
    typed = {name: p.values for name, p in parsed.items()}
    conditions = _Conditions(typed, index)

    for spec in contract.fields:
        p = parsed[spec.name]
        raw_value = texts[spec.name]
        _required(spec, p, raw_value, conditions, out, titles)
        if spec.max_length is not None:
            too_long = p.present & _longer_than(p.values, spec.max_length)
            msg = message("E_TOO_LONG", field=spec.title, max_length=spec.max_length)
            out.add(too_long, spec.name, "E_TOO_LONG", msg, raw_value)
        for problem in p.problems:
            out.problem(problem, spec.name, raw_value)
        for problem in _type_rules(spec, p, conditions, ctx):
            out.problem(problem, spec.name, raw_value)
    for problem, field_name in _authorisation(ctx, typed, parsed, index):
        out.problem(problem, field_name, texts[field_name])
    if EXTRA in raw:
        extra = raw[EXTRA]
        shape_msg = message("E_ROW_SHAPE", extra="")
        out.add(extra != "", "（整行）", "E_ROW_SHAPE", shape_msg, extra, suffix=extra)

    frame = pd.DataFrame({f.name: typed[f.name] for f in contract.fields}, index=index)
    frame[ROW] = raw[ROW]
    return ChunkOutcome(frame, out.frame())


def _longer_than(values: pd.Series, max_length: int) -> pd.Series:
    """Values longer than `max_length` characters (NA is not): Arrow kernels.

    A character is at least one byte: when no value has more than `max_length` bytes (read
    off the offsets, no scan of the text), none has more characters either.
    """
    text = arrow_strings(values.astype(STR))
    if (pc.max(pc.binary_length(text)).as_py() or 0) <= max_length:
        return pd.Series(False, index=values.index)
    longer = pc.fill_null(pc.greater(pc.utf8_length(text), max_length), False)
    return pd.Series(longer.to_numpy(zero_copy_only=False), index=values.index)


def _required(
    spec: FieldSpec,
    p: Parsed,
    raw_value: pd.Series,
    conditions: _Conditions,
    out: _Collector,
    titles: dict[str, str],
) -> None:
    if spec.required:
        out.add(
            ~p.present, spec.name, "E_REQUIRED", message("E_REQUIRED", field=spec.title), raw_value
        )
    if spec.required_when is None:
        return
    holds = conditions.holds(spec.required_when)
    condition = spec.required_when.describe(titles)
    code = spec.required_code
    if code == "E_REQUIRED":
        msg = f"{condition}时，" + message("E_REQUIRED", field=spec.title)
    else:
        msg = message(
            code, field=spec.title, condition=condition, reason=f"在{condition}时必须填写"
        )
    missing = holds & ~p.present
    if spec.positive:  # a present amount must also be > 0 (a 0 or a rejected value counts)
        missing |= holds & p.present & ~positive(p.values) & p.values.notna()
    out.add(missing, spec.name, code, msg, raw_value)


def _type_rules(
    spec: FieldSpec, p: Parsed, conditions: _Conditions, ctx: ChunkContext
) -> list[Problem]:
    titles = ctx.contract.titles()
    typed, index = conditions.typed, conditions.index
    values = p.values
    problems: list[Problem] = []
    if spec.type == "uscc":
        outcome = check_uscc(values.fillna(""))
        is_placeholder = (values == spec.placeholder).fillna(False) if spec.placeholder else None
        checked = p.present
        if is_placeholder is not None:
            allowed = (
                conditions.holds(spec.placeholder_when)
                if spec.placeholder_when
                else pd.Series(True, index=index)
            )
            checked = checked & ~is_placeholder
            problems.append(
                Problem(
                    is_placeholder & ~allowed,
                    "E_USCC_FORMAT",
                    f"「{spec.title}」：占位码 {spec.placeholder} 仅在"
                    f"{spec.placeholder_when.describe(titles) if spec.placeholder_when else ''}时可用",
                )
            )
        problems.append(
            Problem(
                checked & ~outcome.format_ok,
                "E_USCC_FORMAT",
                message("E_USCC_FORMAT", field=spec.title),
            )
        )
        problems.append(
            Problem(
                checked & outcome.format_ok & ~outcome.checksum_ok,
                "E_USCC_CHECKSUM",
                message("E_USCC_CHECKSUM", field=spec.title),
                outcome.expected,
            )
        )
    elif spec.type == "personal_id":
        applies = p.present
        if spec.check_when is not None:
            applies = applies & conditions.holds(spec.check_when)
        outcome = check_resident_id(values.fillna(""), to_timestamp(ctx.as_of))
        reason = {
            "format": "应为 18 位，前 17 位为数字，最后一位为数字或 X",
            "birth": "第 7–14 位不是有效的出生日期",
            "check": "校验位错误，按前 17 位计算应为 ",
        }
        problems += [
            Problem(
                applies & ~outcome.format_ok,
                "E_ID_CHECKSUM",
                message("E_ID_CHECKSUM", field=spec.title, reason=reason["format"]),
            ),
            Problem(
                applies & outcome.format_ok & ~outcome.birth_ok,
                "E_ID_CHECKSUM",
                message("E_ID_CHECKSUM", field=spec.title, reason=reason["birth"]),
            ),
            Problem(
                applies & outcome.format_ok & outcome.birth_ok & ~outcome.checksum_ok,
                "E_ID_CHECKSUM",
                message("E_ID_CHECKSUM", field=spec.title, reason=reason["check"]),
                outcome.expected,
            ),
        ]
    elif spec.type == "date":
        if spec.not_future:
            limit = to_timestamp(ctx.as_of)
            problems.append(
                Problem(
                    (values > limit).fillna(False),
                    "E_DATE_FUTURE",
                    message("E_DATE_FUTURE", field=spec.title, as_of=ctx.as_of.isoformat()),
                )
            )
        if spec.not_before is not None:
            other = typed[spec.not_before]
            problems.append(
                Problem(
                    (values < other).fillna(False),
                    spec.order_code,
                    message(
                        spec.order_code,
                        field=spec.title,
                        other=titles[spec.not_before],
                        reason=f"不能早于「{titles[spec.not_before]}」",
                    ),
                )
            )
    return problems


def _authorisation(
    ctx: ChunkContext, typed: dict[str, pd.Series], parsed: dict[str, Parsed], index: pd.Index
) -> list[tuple[Problem, str]]:
    """E_OFFICE_NOT_AUTHORISED: a row must be one the dropping office may report."""
    office, auth = ctx.office, ctx.contract.authorisation
    if office is None:
        return []
    titles = ctx.contract.titles()
    found: list[tuple[Problem, str]] = []
    if auth.source_field:
        values = typed[auth.source_field]
        bad = parsed[auth.source_field].present & (values != office.uscc).fillna(True)
        reason = f"「{titles[auth.source_field]}」应为报送机构{office.name}的代码 {office.uscc}"
        found.append((Problem(bad, "E_OFFICE_NOT_AUTHORISED", reason), auth.source_field))
    if auth.authority_field:
        values = typed[auth.authority_field]
        bad = parsed[auth.authority_field].present & ~values.isin(office.authorities).fillna(False)
        allowed = "、".join(office.authorities) or "（无）"
        reason = (
            f"报送机构{office.name}无权报送该「{titles[auth.authority_field]}」的数据"
            f"（可报送：{allowed}）"
        )
        found.append(
            (Problem(bad.astype(bool), "E_OFFICE_NOT_AUTHORISED", reason), auth.authority_field)
        )
    if auth.district_field and not office.covers_all_districts:
        values = typed[auth.district_field]
        bad = parsed[auth.district_field].present & (values != office.district).fillna(False)
        reason = f"报送机构{office.name}只能报送本区（{office.district}）的数据"
        found.append((Problem(bad, "E_OFFICE_NOT_AUTHORISED", reason), auth.district_field))
    return found
