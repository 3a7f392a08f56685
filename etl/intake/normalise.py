"""Normalisation of one field's raw text into its canonical, typed value — vectorised.

Each parser returns the canonical values (NA where empty or unparseable), which rows had any
input at all, and the problems it found (row mask, code, message). Rules that need other
fields (conditional requirements, placeholders, authorisation) live in etl.checks.rules.

What is normalised (issue #2): identifiers, dates and amounts go full-width → half-width and
lose whitespace; names and free text keep their characters and are only trimmed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from etl.checks.codes import message
from etl.checks.identifiers import check_patent_appno
from etl.contracts import Contract, FieldSpec
from etl.text import (
    STR,
    arrow_strings,
    canonical,
    distinct_values,
    extract,
    lookup_keys,
    nfkc,
    split_explode,
    spread,
    trim,
)

AMOUNT_TYPE = pa.decimal128(18, 6)  # SPEC.md §2: decimal(18,6) in 万元
_AMOUNT_DTYPE = pd.ArrowDtype(AMOUNT_TYPE)
_WIDE_DECIMAL = pa.decimal128(28, 8)
_YUAN_TO_WAN = pa.scalar(Decimal("0.0001"), pa.decimal128(5, 4))
_ZERO = pa.scalar(Decimal(0), pa.decimal128(1, 0))
EXCEL_EPOCH = pd.Timestamp("1899-12-30")  # Excel's day 0 (its 1900 leap-year bug included)
MIN_DATE = pd.Timestamp("1900-01-01")
MAX_DATE = pd.Timestamp("2099-12-31")  # 2099-12-31 is the standard's 长期

_DATE_YMD = (
    r"^(?P<y>\d{4})\s*[-/.年]\s*(?P<m>\d{1,2})\s*[-/.月]\s*(?P<d>\d{1,2})\s*日?"
    r"(?:[T\s]+\d{1,2}[:时]\d{1,2}(?:[:分]\d{1,2}(?:\.\d+)?秒?)?)?$"
)
_DATE_COMPACT = r"^(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})$"
_DATE_SERIAL = r"^(?P<n>\d{1,5})(?:\.\d+)?$"
_AMOUNT = (
    r"^(?:人民币|RMB|¥)?(?P<num>[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[+-]?\.\d+)"
    r"(?P<unit>万元|万|元)?$"
)


@dataclass
class Problem:
    """Rows of one field that break one rule.

    `suffix`, when given, ends each rejected row's message (an expected check character):
    joined only for the rows the rule rejects, not for every row of the chunk.
    """

    mask: pd.Series
    code: str
    message: str | pd.Series
    suffix: pd.Series | None = None


@dataclass
class Parsed:
    """The outcome of normalising one field of a chunk."""

    values: pd.Series
    present: pd.Series
    problems: list[Problem] = field(default_factory=list)


def parse_field(
    spec: FieldSpec,
    raw: pd.Series,
    contract: Contract,
    *,
    unit: str | None,
    memo: ParseMemo | None = None,
) -> Parsed:
    """Normalise `raw` (text as read) according to the field's type.

    Every parser is a function of one cell's text, so a column with repeated values (dates,
    amounts, categories, an authority's name) is parsed once per distinct value and the
    outcome spread back to the rows: the same result for a fraction of the work. With a `memo`
    (one per field and file, `ParseMemo`), a distinct value already parsed in an earlier chunk
    is not parsed again.
    """
    repeated = distinct_values(raw)
    if repeated is not None:
        codes, distinct = repeated
        if memo is not None:
            return memo.outcome(
                distinct, codes, raw.index, lambda d: _parse(spec, d, contract, unit)
            )
        return _spread(_parse(spec, distinct, contract, unit), codes, raw.index)
    return _parse(spec, raw, contract, unit)


class ParseMemo:
    """The parsed outcomes of one field's distinct texts in the earlier chunks of a file.

    A file's dates, amounts and categories repeat across its chunks as much as within one:
    in a 1,000,000-row file most distinct values of a 50,000-row chunk were already seen. Each
    chunk's distinct texts are looked up here (one Arrow hash look-up); only the new ones are
    parsed, kept, and the rows take their outcome straight from the kept ones. The outcome is
    the same as parsing every chunk afresh, for the parsers are functions of one cell's text
    (the field, the contract and the column's unit are fixed for a file).

    At most `LIMIT` texts are kept per field, so memory stays bounded whatever the file's size.
    A field whose chunk brings mostly new values (a licence number) turns its memo off, as does
    a parser whose outcome changes form between chunks (a problem only some chunks report,
    another dtype): each chunk is then parsed afresh, as without one.
    """

    LIMIT = 65_536

    def __init__(self) -> None:
        self.texts: pa.Array | None = None  # large_string, aligned with `parsed`
        self.parsed: Parsed | None = None  # indexed 0..n-1
        self.off = False

    def outcome(
        self,
        distinct: pd.Series,
        codes: np.ndarray,
        index: pd.Index,
        parse: Callable[[pd.Series], Parsed],
    ) -> Parsed:
        """The outcome for rows whose texts are `distinct[codes]` (see `parse_field`)."""
        if self.off:
            return _spread(parse(distinct), codes, index)
        texts = arrow_strings(distinct)
        if self.texts is None or self.parsed is None:
            parsed = parse(distinct)
            if len(texts) <= self.LIMIT:
                self.texts, self.parsed = texts, parsed
            return _spread(parsed, codes, index)
        at = pc.fill_null(pc.index_in(texts, value_set=self.texts), -1).to_numpy().astype(np.int64)
        new = at < 0
        if new.sum() * 2 > len(new):  # mostly new values: keeping them would not pay
            self._stop()
            return _spread(parse(distinct), codes, index)
        source = self.parsed
        if new.any():
            fresh = parse(distinct[new].reset_index(drop=True))
            if _form(fresh) != _form(self.parsed):
                self._stop()
                return _spread(parse(distinct), codes, index)
            start = len(self.texts)
            at[new] = np.arange(start, start + int(new.sum()))
            source = _concat(self.parsed, fresh)
            if len(source.values) <= self.LIMIT:
                self.texts = pa.concat_arrays([self.texts, texts.filter(pa.array(new))])
                self.parsed = source
        return _spread(source, at[codes], index)

    def _stop(self) -> None:
        """Turns the memo off: this chunk and the file's next ones are parsed afresh."""
        self.off = True
        self.texts = self.parsed = None


def _form(parsed: Parsed) -> tuple[object, ...]:
    """What must agree for two outcomes to be kept as one: dtypes, problems and messages."""
    return (
        parsed.values.dtype,
        parsed.present.dtype,
        tuple(
            (
                p.code,
                p.mask.dtype,
                p.message if isinstance(p.message, str) else p.message.dtype,
                None if p.suffix is None else p.suffix.dtype,
            )
            for p in parsed.problems
        ),
    )


def _concat(first: Parsed, then: Parsed) -> Parsed:
    """Two outcomes of the same form, one after the other (indexed 0..n-1)."""

    def joined(a: pd.Series, b: pd.Series) -> pd.Series:
        return pd.concat([a, b], ignore_index=True)

    return Parsed(
        joined(first.values, then.values),
        joined(first.present, then.present),
        [
            Problem(
                joined(p.mask, q.mask),
                p.code,
                p.message
                if isinstance(p.message, str) or isinstance(q.message, str)
                else joined(p.message, q.message),
                None if p.suffix is None or q.suffix is None else joined(p.suffix, q.suffix),
            )
            for p, q in zip(first.problems, then.problems, strict=True)
        ],
    )


def _spread(parsed: Parsed, codes: np.ndarray, index: pd.Index) -> Parsed:
    """The outcome for distinct values, taken back to the rows (`codes`: row → distinct)."""

    def take(values: pd.Series) -> pd.Series:
        return spread(values, codes, index)

    return Parsed(
        take(parsed.values),
        take(parsed.present),
        [
            Problem(
                take(p.mask),
                p.code,
                take(p.message) if isinstance(p.message, pd.Series) else p.message,
                None if p.suffix is None else take(p.suffix),
            )
            for p in parsed.problems
        ],
    )


def _parse(spec: FieldSpec, raw: pd.Series, contract: Contract, unit: str | None) -> Parsed:
    text = trim(raw)
    present = (text != "").astype(bool)
    match spec.type:
        case "text":
            return _text(spec, text, present, contract)
        case "enum" | "district":
            return _enum(spec, text, present, contract)
        case "multi_enum":
            return _multi_enum(spec, text, present, contract)
        case "uscc" | "personal_id":
            return Parsed(canonical(text).str.upper().where(present), present)
        case "patent_appno":
            return _patent_appno(spec, text, present)
        case "date":
            return _date(spec, text, present)
        case "amount":
            return _amount(spec, text, present, unit)
    raise AssertionError(f"unhandled field type {spec.type}")  # pragma: no cover


def _text(spec: FieldSpec, text: pd.Series, present: pd.Series, contract: Contract) -> Parsed:
    values = canonical(text) if spec.canonical else text
    if spec.lookup:
        mapped = lookup_keys(values).map(contract.value_map(spec))
        values = mapped.fillna(values).astype(STR)
    return Parsed(values.where(present), present)


def _enum(spec: FieldSpec, text: pd.Series, present: pd.Series, contract: Contract) -> Parsed:
    mapped = lookup_keys(text).map(contract.value_map(spec)).astype(STR)
    unknown = present & mapped.isna()
    code = "E_DISTRICT" if spec.type == "district" else "E_ENUM"
    msg = message(code, field=spec.title, allowed="、".join(spec.enum or []))
    return Parsed(mapped.where(present), present, [Problem(unknown, code, msg)])


def _multi_enum(spec: FieldSpec, text: pd.Series, present: pd.Series, contract: Contract) -> Parsed:
    """Several categories in one cell; canonical form is `;`-joined in the contract's order.

    Vectorised: legacy combined labels are expanded, the cell is split and exploded, each part
    mapped through the look-up, and the parts are folded back per row as a bit mask whose
    (few) distinct values are turned into strings once.
    """
    enum = spec.enum or []
    folded = canonical(text)
    for label, values in spec.expand.items():
        folded = folded.str.replace(
            canonical(pd.Series([label], dtype=STR))[0], ";".join(values), regex=False
        )
    separators = "".join(canonical(pd.Series(spec.separators, dtype=STR)).tolist())
    pattern = "[" + "".join("\\" + s if s in "\\]^-" else s for s in separators + ";") + "]"
    parts = split_explode(folded, pattern)
    mapped = lookup_keys(parts).map(contract.value_map(spec))
    bits = mapped.map({v: 1 << i for i, v in enumerate(enum)})

    unknown_parts = parts[mapped.isna()]
    unknown = pd.Series(False, index=text.index)
    problems = []
    if not unknown_parts.empty:
        unknown[unknown_parts.index.unique()] = True
        msg = message("E_ENUM", field=spec.title, allowed="、".join(enum))
        problems.append(Problem(unknown & present, "E_ENUM", msg))

    known = bits.dropna().astype("int64")
    # A bitwise OR per row without a Python call per row: once duplicates are dropped the
    # bits of a row are distinct, so their sum is their OR.
    known = known[
        ~pd.Series(known.to_numpy(), index=known.index).reset_index().duplicated().to_numpy()
    ]
    mask = known.groupby(level=0).sum()
    labels = {m: ";".join(v for i, v in enumerate(enum) if m >> i & 1) for m in mask.unique()}
    joined = mask.map(labels).reindex(text.index).astype(STR)
    return Parsed(joined.where(present & ~unknown), present, problems)


def _patent_appno(spec: FieldSpec, text: pd.Series, present: pd.Series) -> Parsed:
    folded = canonical(text).str.upper()
    outcome, canonical_form = check_patent_appno(folded.fillna(""))
    bad_format = present & ~outcome.format_ok
    bad_check = present & outcome.format_ok & ~outcome.checksum_ok
    problems = [
        Problem(
            bad_format,
            "E_PATENT_APPNO",
            message(
                "E_PATENT_APPNO",
                field=spec.title,
                reason="应为 12 位数字加校验位，如 201710601862.3（2003 年 10 月起的格式）",
            ),
        ),
        Problem(
            bad_check,
            "E_PATENT_APPNO",
            message("E_PATENT_APPNO", field=spec.title, reason="校验位错误，应为 "),
            outcome.expected,
        ),
    ]
    ok = present & outcome.checksum_ok
    return Parsed(canonical_form.where(ok).astype(STR), present, problems)


def _date(spec: FieldSpec, text: pd.Series, present: pd.Series) -> Parsed:
    """ISO, 2023/5/11, 2023.5.11, 20230511, 2023年5月11日, with a time part, Excel serials."""
    folded = nfkc(text)
    if spec.value_aliases:
        aliases = {
            lookup_keys(pd.Series([k], dtype=STR))[0]: v for k, v in spec.value_aliases.items()
        }
        folded = lookup_keys(folded).map(aliases).fillna(folded).astype(STR)
    # Most cells are year-month-day; the other forms are looked for only in the rest (a
    # Y-M-D cell never matches them: it has separators, they have none or one dot).
    parts = extract(folded, _DATE_YMD)
    other = parts["y"].isna()
    if other.any():
        parts.loc[other] = extract(folded[other], _DATE_COMPACT)
    parsed = pd.to_datetime(
        pd.DataFrame(
            {
                "year": _digits(parts["y"]),
                "month": _digits(parts["m"]),
                "day": _digits(parts["d"]),
            }
        ),
        errors="coerce",
    )
    unparsed = parsed.isna()
    if unparsed.any():
        serial = _digits(extract(folded[unparsed], _DATE_SERIAL)["n"])
        from_serial = EXCEL_EPOCH + pd.to_timedelta(serial.where(serial >= 1), unit="D")
        parsed = parsed.fillna(from_serial)
    parsed = parsed.astype("datetime64[s]")
    in_range = (parsed >= MIN_DATE) & (parsed <= MAX_DATE)
    ok = present & parsed.notna() & in_range
    problem = Problem(present & ~ok, "E_DATE_INVALID", message("E_DATE_INVALID", field=spec.title))
    return Parsed(parsed.where(ok), present, [problem])


def _digits(values: pd.Series) -> pd.Series:
    """Runs of ASCII digits (regex groups: RE2's \\d is ASCII) as floats, NA as NaN.

    An Arrow cast in C++: ~10× faster than `pd.to_numeric` on these string columns.
    """
    numbers = pc.cast(pa.array(values.astype(STR)), pa.float64())
    return pd.Series(numbers.to_numpy(zero_copy_only=False), index=values.index)


def _amount(spec: FieldSpec, text: pd.Series, present: pd.Series, unit: str | None) -> Parsed:
    """Amounts to 万元: `5万元`, `50000元`, `50,000元`, `￥50,000`, a column titled in 元.

    A bare number takes the column's unit; a column whose title names no unit accepts only
    numbers that carry one (an ambiguous amount is rejected, not guessed: SPEC.md §2).
    """
    folded = canonical(text).str.upper()
    parts = extract(folded, _AMOUNT)
    number = parts["num"].str.replace(",", "", regex=False)
    written = parts["unit"].map({"万元": "万元", "万": "万元", "元": "元"})
    effective = written.fillna(unit) if unit else written
    well_formed = present & number.notna()
    ambiguous = well_formed & effective.isna()
    negative = well_formed & number.str.startswith("-").fillna(False)

    # What the wide decimal below cannot hold: more than 8 decimal places (rejected, not
    # silently cut), more than 20 integer digits (too large either way).
    def has(pattern: str) -> pd.Series:
        return (well_formed & number.str.contains(pattern, regex=True).fillna(False)).astype(bool)

    too_precise = has(r"\.\d{9}")
    too_large = has(r"\d{21}") & ~too_precise
    usable = (well_formed & ~ambiguous & ~negative & ~too_precise & ~too_large).astype(bool)
    values = pd.Series(pd.NA, index=text.index, dtype=_AMOUNT_DTYPE)
    if usable.any():
        wide = pa.array(number[usable].to_numpy(dtype=object), type=pa.string()).cast(_WIDE_DECIMAL)
        in_yuan = pa.array((effective[usable] == "元").to_numpy(dtype=bool))
        wan = pc.if_else(in_yuan, pc.multiply(wide, _YUAN_TO_WAN), wide)
        wan = pc.round(wan, 6)
        limit = pa.scalar(Decimal("999999999999.999999"), pa.decimal128(18, 6))
        fits = pc.less_equal(pc.abs(wan), limit).to_numpy(zero_copy_only=False)
        too_large[usable[usable].index[~fits]] = True
        fitting = pc.filter(wan, pa.array(fits)).cast(AMOUNT_TYPE)
        values[usable[usable].index[fits]] = pd.array(fitting, dtype=_AMOUNT_DTYPE)

    def reason(text_: str) -> str:
        return message("E_AMOUNT_INVALID", field=spec.title, reason=text_)

    problems = [
        Problem(present & ~well_formed, "E_AMOUNT_INVALID", reason("应为数字，可带“万元”或“元”")),
        Problem(
            ambiguous,
            "E_AMOUNT_INVALID",
            reason(
                "单位不明确：该列标题未注明单位，请在金额后写明“万元”或“元”，或使用带单位的列标题"
            ),
        ),
        Problem(negative, "E_AMOUNT_INVALID", reason("不能为负数")),
        Problem(too_large, "E_AMOUNT_INVALID", reason("超出 decimal(18,6) 万元的范围")),
        Problem(too_precise, "E_AMOUNT_INVALID", reason("小数位数过多：最多 8 位小数")),
    ]
    return Parsed(values, present, problems)


def positive(values: pd.Series) -> pd.Series:
    """Amounts greater than zero (NA counts as not positive)."""
    arr = pa.array(values.array) if not values.empty else pa.array([], type=AMOUNT_TYPE)
    result = pc.fill_null(pc.greater(arr, _ZERO), False)
    return pd.Series(result.to_numpy(zero_copy_only=False), index=values.index)


def to_timestamp(day: date) -> pd.Timestamp:
    """A calendar date as a midnight Timestamp, comparable with parsed dates."""
    return pd.Timestamp(day)
