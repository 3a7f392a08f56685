"""Evaluate the serious-dishonesty rules over the as-of state of the store.

Deterministic: the same store and date give the same flags, with the same ids, on SQLite and
PostgreSQL. Each dataset is read once, in chunks, narrowed to the columns the rules read; only
matching records are kept. Rules are then applied with sorts, binary searches and group-bys:
no Python loop over records or subjects (the loops below run over rules, identifiers and, for
the ids, over flags).

A `window_count` rule in detail (SPEC.md §5, thresholds [OURS] in the policy file): the
matching records of each subject are ordered by date; record j's window is every record of the
subject dated at most `window_days` before it, up to and including its own date. A window with at
least `min_count` records qualifies. The records lying in some qualifying window are the
evidence; evidence records of a subject at most `window_days` apart form one flag (a subject
that keeps offending extends its flag rather than collecting new ones). The flag's id hashes the
rule and the keys of its *first* qualifying window, so a later record never changes
it; if evidence in that window is revoked or corrected away, the rule no longer yields that id
and the old flag is withdrawn.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy.engine import Connection

from etl import settings
from etl.checks.rules import evaluate as holds
from etl.contracts import load_contract
from etl.flags.policy import Policy, Rule, Subject
from etl.store.query import state_as_of
from etl.text import STR, arrow_strings, factorize, text_series

EPOCH = pd.Timestamp("1900-01-01")
# Matching records held in memory per subject before they spill to partition files, and the
# number of files: 500,000 narrowed records are ~100 MB; 64 parts keep each under that up to
# ~30,000,000 matching records.
SPILL_ROWS = 500_000
PARTITIONS = 64
_DAY_SPAN = 1 << 22  # more days than any date range: subject code × span + day orders both

CANDIDATE, CONFIRMED, REJECTED, EXPIRED, WITHDRAWN = (
    "candidate",
    "confirmed",
    "rejected",
    "expired",
    "withdrawn",
)
STATE_TITLES = {
    CANDIDATE: "待审核",
    CONFIRMED: "已确认",
    REJECTED: "已驳回",
    EXPIRED: "已到期",
    WITHDRAWN: "已撤回",
}

FLAG_COLUMNS = [
    "id",
    "rule_id",
    "severity",
    "title",
    "basis",
    "dataset",
    "subject_key",
    "subject_id_kind",
    "subject_id",
    "subject_name",
    "subject_type",
    "evidence_count",
    "first_evidence_date",
    "last_evidence_date",
    "listing_start",
    "listing_end",
    "state",
]
EVIDENCE_COLUMNS = ["flag_id", "position", "dataset", "record_key", "evidence_date", "trigger"]


@dataclass(frozen=True)
class Evaluation:
    """The flags the rules yield as of a date: one row per flag, and their evidence records.

    `state` here is what the data says: candidate, or expired when the listing has ended by
    `as_of`. Review decisions are the registry's (etl/flags/registry.py)."""

    as_of: date
    policy_version: int
    flags: pd.DataFrame
    evidence: pd.DataFrame
    unidentified: dict[str, int]  # rule id → matching records naming no subject (not flagged)

    def load(self) -> Evaluation:
        return self

    def spill(self) -> SpilledEvaluation:
        """The same evaluation, its frames in a temporary folder instead of memory.

        A run keeps the evaluation from the flag step to the serious-dishonesty extract, which
        is published last: in memory it sat under the penalty publication, ~110 MB of frames
        for 116,000 flags of a 5,000,000-row store (with what the allocators kept around them,
        +360 MB on that run's peak). Arrow IPC files give the frames back exactly (dtypes
        included) in a few milliseconds; LZ4 makes them a fifth of their size."""
        folder = tempfile.TemporaryDirectory(prefix="creditpipe-evaluation-")
        for name, frame in (("flags", self.flags), ("evidence", self.evidence)):
            frame.to_feather(Path(folder.name) / f"{name}.arrow", compression="lz4")
        return SpilledEvaluation(self.as_of, self.policy_version, self.unidentified, folder)


@dataclass(frozen=True)
class SpilledEvaluation:
    """An `Evaluation` whose frames wait on disk (`Evaluation.spill`); the folder goes when
    this object does."""

    as_of: date
    policy_version: int
    unidentified: dict[str, int]
    folder: tempfile.TemporaryDirectory[str] = field(repr=False, compare=False)

    def __deepcopy__(self, memo: dict[int, Any]) -> SpilledEvaluation:
        # Immutable, and a deep copy would get a TemporaryDirectory of its own that still
        # names this folder, removed when this object goes (`asdict` deep-copies).
        return self

    def load(self) -> Evaluation:
        def read(name: str) -> pd.DataFrame:
            return pd.read_feather(Path(self.folder.name) / f"{name}.arrow")

        return Evaluation(
            self.as_of, self.policy_version, read("flags"), read("evidence"), self.unidentified
        )


def evaluate(
    conn: Connection, as_of: date, policy: Policy, *, chunk_rows: int | None = None
) -> Evaluation:
    """Every rule of `policy` over the store's state at the end of `as_of`."""
    chunk = chunk_rows or settings.chunk_rows()
    flags: list[pd.DataFrame] = []
    evidence: list[pd.DataFrame] = []
    unidentified: dict[str, int] = {}
    constants = _rule_constants(policy)
    with tempfile.TemporaryDirectory(prefix="creditpipe-flags-") as scratch:
        for dataset in dict.fromkeys(r.dataset for r in policy.rules):
            rules = [r for r in policy.rules if r.dataset == dataset]
            matches = _matching_records(
                conn, dataset, rules, policy, as_of, chunk, Path(scratch), unidentified
            )
            for subject, found in matches.items():
                for part in found.parts():
                    for rule in (r for r in rules if r.subject == subject):
                        rows = part.loc[part[_mask(rule)] & part[rule.date_field].notna()]
                        if rows.empty:
                            continue
                        got, behind = _apply(rule, rows, policy.listing_years_of(rule), as_of)
                        flags.append(got.astype(constants))
                        evidence.append(behind.astype({"dataset": constants["dataset"]}))
    return Evaluation(
        as_of=as_of,
        policy_version=policy.version,
        flags=_sorted(flags, FLAG_COLUMNS, ["id"]),
        evidence=_sorted(evidence, EVIDENCE_COLUMNS, ["flag_id", "position"]),
        unidentified=unidentified,
    )


def _rule_constants(policy: Policy) -> dict[str, pd.CategoricalDtype]:
    """The flag columns holding one value per rule, as categories of the policy's values.

    Text repeated on every flag (the legal basis alone is ~230 bytes) was half of the flags
    frame: ~37 MB of the 116,000 flags of a 5,000,000-row store, held through the flag step.
    One dtype per column for every rule, so joined parts stay categorical."""
    values: dict[str, list[str]] = {
        "rule_id": [r.id for r in policy.rules],
        "severity": [r.severity for r in policy.rules],
        "title": [r.title for r in policy.rules],
        "basis": [_basis(r) for r in policy.rules],
        "dataset": [r.dataset for r in policy.rules],
    }
    return {name: pd.CategoricalDtype(list(dict.fromkeys(v))) for name, v in values.items()}


def _basis(rule: Rule) -> str:
    return "".join(rule.basis.split())  # folded YAML: no spaces in Chinese


def _sorted(parts: list[pd.DataFrame], columns: list[str], by: list[str]) -> pd.DataFrame:
    """The parts as one frame sorted by `by`, built a column at a time: each column is joined,
    put in order and dropped from the parts before the next, so the rows are held about once
    (joining whole frames and then sorting held them three times: ~200 MB for the 116,000 flags
    and 388,000 evidence rows of a 5,000,000-row store). `parts` is emptied on the way."""
    kept = [p for p in parts if len(p)]
    parts.clear()
    if not kept:
        return _empty(columns)
    # Arrow's sort; the keys are unique (a flag's id; a flag and a position), so any sort
    # gives this order.
    keys = pa.table({name: pa.chunked_array([pa.array(p[name]) for p in kept]) for name in by})
    order = pc.sort_indices(keys, sort_keys=[(name, "ascending") for name in by]).to_numpy()
    del keys
    out: dict[str, pd.Series] = {}
    for name in list(kept[0].columns):
        joined = pd.concat([p.pop(name) for p in kept], ignore_index=True)
        out[name] = joined.take(order).reset_index(drop=True)
        del joined
    return pd.DataFrame(out)


def _mask(rule: Rule) -> str:
    return f"__rule__{rule.id}"


class _Matches:
    """The matching records of one subject's rules: in memory while they are few; past
    `SPILL_ROWS`, spread over `PARTITIONS` Parquet files by a hash of the subject, so that each
    file holds whole subjects and is evaluated alone (memory stays flat as the store grows).
    Evaluation order does not matter: ids come from the evidence, and the result is sorted."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.frames: list[pd.DataFrame] = []
        self.rows = 0
        self.writers: list[pq.ParquetWriter] = []
        self.schema: pa.Schema | None = None

    def add(self, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        self.rows += len(frame)
        if not self.writers and self.rows <= SPILL_ROWS:
            self.frames.append(frame)
            return
        if not self.writers:
            held, self.frames = self.frames, []
            self.folder.mkdir(parents=True)
            for frame_held in held:
                self._spill(frame_held)
        self._spill(frame)

    def _spill(self, frame: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
        if not self.writers:
            self.schema = table.schema  # Parquet keeps seconds as milliseconds: cast back
            self.writers = [
                pq.ParquetWriter(self.folder / f"part-{i:03d}.parquet", table.schema)
                for i in range(PARTITIONS)
            ]
        part = pd.util.hash_array(frame["subject_key"].to_numpy(dtype=object)) % PARTITIONS
        order = np.argsort(part, kind="stable")
        bounds = np.searchsorted(part[order], np.arange(PARTITIONS + 1))
        for i in np.flatnonzero(np.diff(bounds)):
            self.writers[i].write_table(table.take(order[bounds[i] : bounds[i + 1]]))

    def parts(self) -> Iterator[pd.DataFrame]:
        """The records, whole subjects at a time."""
        if not self.writers:
            if self.frames:
                yield pd.concat(self.frames, ignore_index=True)
            return
        for writer in self.writers:
            writer.close()
        for i in range(PARTITIONS):
            table = pq.read_table(self.folder / f"part-{i:03d}.parquet").cast(self.schema)
            if table.num_rows:
                yield table.to_pandas(types_mapper={pa.large_string(): STR}.get)


def _matching_records(
    conn: Connection,
    dataset: str,
    rules: list[Rule],
    policy: Policy,
    as_of: date,
    chunk: int,
    scratch: Path,
    unidentified: dict[str, int],
) -> dict[str, _Matches]:
    """The records of `dataset` some rule matches, per subject: only what the rules need next
    (who, when, the record's key and one boolean column per rule). Records naming no subject
    are counted per rule in `unidentified` and dropped."""
    subjects = {r.subject: policy.subjects[r.subject] for r in rules}
    columns: set[str] = set()
    for rule in rules:
        columns |= rule.where.fields() | {rule.date_field}
    for subject in subjects.values():
        columns |= subject.fields()
    natural_key = load_contract(dataset).natural_key
    matches = {name: _Matches(scratch / dataset / name) for name in subjects}
    unidentified.update(dict.fromkeys((r.id for r in rules), 0))
    # In the store's own order: evaluation does not depend on it (`_Matches`), and on
    # PostgreSQL the key order is a sort of every record before the first arrives.
    state = state_as_of(
        conn, dataset, as_of, chunk_rows=chunk, columns=sorted(columns), ordered=False
    )
    for frame in state:
        masks = _rule_masks(rules, frame)
        for name, subject in subjects.items():
            mine = [r for r in rules if r.subject == name]
            hit = np.logical_or.reduce([masks[r.id] for r in mine])
            if not hit.any():
                continue
            rows = frame.loc[hit]
            narrow = _with_subject(rows, subject)
            named = narrow["subject_key"].notna().to_numpy()
            for rule in mine:
                mask = masks[rule.id][hit]
                unidentified[rule.id] += int((mask & ~named).sum())
                narrow[_mask(rule)] = mask
                narrow[rule.date_field] = rows[rule.date_field]
            narrow["record_key"] = record_keys(rows, natural_key)
            matches[name].add(narrow.loc[named].reset_index(drop=True))
    return matches


def _rule_masks(rules: list[Rule], frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Which records of `frame` each rule's `where` holds for.

    A condition reads a few category-like fields (违法行为类型, 处罚类别, 处理状态) whose values
    repeat: a 50,000-record penalty chunk holds ~150 distinct combinations. So each condition is
    evaluated once per distinct combination of the fields it reads and spread back to the
    records: its regular expressions run over hundreds of values instead of every record. The
    answer is the same, since a condition looks at one record's own values only."""
    distinct: dict[tuple[str, ...], tuple[np.ndarray, pd.DataFrame]] = {}
    masks: dict[str, np.ndarray] = {}
    for rule in rules:
        fields = tuple(sorted(rule.where.fields()))
        if fields not in distinct:  # rules reading the same fields share the combinations
            distinct[fields] = _distinct_rows(frame, list(fields))
        codes, values = distinct[fields]
        typed = {name: values[name] for name in fields}
        masks[rule.id] = holds(rule.where, typed, values.index).to_numpy(dtype=bool)[codes]
    return masks


def _distinct_rows(frame: pd.DataFrame, fields: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """The distinct combinations of `fields` in `frame` (NA counts as a value), in order of first
    appearance, and each record's position among them."""
    codes = np.zeros(len(frame), dtype=np.int64)
    for name in fields:
        values = frame[name]
        if values.dtype == STR:  # Arrow's hash kernel, without pandas' Index around it
            column = factorize(values)[0].astype(np.int64)
        else:
            column = pd.factorize(values, use_na_sentinel=False)[0].astype(np.int64)
        # Both codes are below len(frame): the pair fits an int64 for any chunk size.
        codes = pd.factorize(codes * (len(frame) + 1) + column)[0].astype(np.int64)
    # Codes count up in order of first appearance: a code is new where it passes all before it.
    first = np.flatnonzero(np.diff(np.maximum.accumulate(codes), prepend=-1) > 0)
    return codes, frame[fields].iloc[first].reset_index(drop=True)


def record_keys(frame: pd.DataFrame, key: Iterable[str]) -> pd.Series:
    """Each record's natural key as a JSON array of strings (vectorised string building)."""
    parts: list[pa.Array | pa.Scalar] = [_text("[")]
    for i, name in enumerate(key):
        text = pc.fill_null(arrow_strings(frame[name].astype(STR)), "")
        for old, new in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
            text = pc.replace_substring(text, old, new)
        parts += [_text(',"' if i else '"'), text, _text('"')]
    parts.append(_text("]"))
    joined = pc.binary_join_element_wise(*parts, _text(""))
    return text_series(joined, frame.index)


def _with_subject(rows: pd.DataFrame, subject: Subject) -> pd.DataFrame:
    """Who each record is about: the first non-empty identifier, its kind, name and type.

    Each identifier is trimmed and nulled where it names nobody (empty, or the contract's
    placeholder); Arrow's `coalesce` then takes the first one left, column-wise."""
    contract = load_contract(subject.dataset)
    no_text = _text(None)
    idents: list[pa.Array] = []
    kinds: list[pa.Array] = []
    for identifier in subject.identifiers:
        value = pc.utf8_trim_whitespace(arrow_strings(rows[identifier.field].astype(STR)))
        nobody = pc.equal(value, "")
        placeholder = contract.field(identifier.field).placeholder
        if placeholder:  # e.g. the 个体工商户 USCC placeholder names nobody in particular
            nobody = pc.or_(nobody, pc.equal(value, placeholder))
        named = pc.if_else(nobody, no_text, value)  # a null value stays null
        idents.append(named)
        kinds.append(pc.if_else(pc.is_valid(named), _text(identifier.kind), no_text))
    ident = pc.coalesce(*idents)
    kind = pc.coalesce(*kinds)
    out = pd.DataFrame(index=rows.index)
    out["subject_id"] = text_series(ident, rows.index)
    out["subject_id_kind"] = text_series(kind, rows.index)
    out["subject_key"] = text_series(
        pc.binary_join_element_wise(kind, ident, _text(":")), rows.index
    )
    out["subject_name"] = rows[subject.name].astype("str")
    if subject.type_field:
        out["subject_type"] = rows[subject.type_field].astype("str")
    else:
        out["subject_type"] = pd.Series(subject.type_value, index=rows.index, dtype="str")
    return out


def _text(value: str | None) -> pa.Scalar:
    """A text scalar of the type Arrow strings from pandas have (kernels do not mix types)."""
    return pa.scalar(value, pa.large_string())


def _apply(
    rule: Rule, rows: pd.DataFrame, listing_years: int, as_of: date
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The flags of one rule and their evidence rows."""
    order = _sort_order(rows, rule.date_field)
    n = len(order)
    if rule.shape == "each_record":
        episode = np.arange(n)
        trigger = np.ones(n, dtype=bool)
        members = np.arange(n)
    else:  # the windows need only who and when; the evidence rows are taken whole below
        ordered = rows[["subject_key", rule.date_field]].take(order).reset_index(drop=True)
        members, episode, trigger = _windows(ordered, rule)
    if len(members) == 0:
        return _empty(FLAG_COLUMNS), _empty(EVIDENCE_COLUMNS)
    evidence = rows.take(order[members]).reset_index(drop=True)
    evidence["episode"] = episode
    evidence["trigger"] = trigger
    return _summarise(rule, evidence, listing_years, as_of)


def _sort_order(rows: pd.DataFrame, date_field: str) -> np.ndarray:
    """The positions of `rows` sorted by subject, date and record key (stable; text in
    code-point order), the order the windows are read in.

    One Arrow sort over the three columns: pandas' multi-column `sort_values` factorizes and
    sorts each text column on its own first, and took three times as long."""
    keys = pa.table(
        {
            "subject_key": arrow_strings(rows["subject_key"]),
            "date": pa.array(rows[date_field].to_numpy()),
            "record_key": arrow_strings(rows["record_key"]),
        }
    )
    order = pc.sort_indices(keys, sort_keys=[(name, "ascending") for name in keys.column_names])
    return order.to_numpy()


def _windows(ordered: pd.DataFrame, rule: Rule) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a window_count rule over rows sorted by (subject, date, key): the evidence rows,
    the flag (episode) each belongs to, and whether it is in the episode's first window."""
    n = len(ordered)
    subject = pd.factorize(ordered["subject_key"])[0].astype(np.int64)  # ascending: rows sorted
    days = (ordered[rule.date_field] - EPOCH).dt.days.to_numpy(dtype=np.int64)
    base = subject * _DAY_SPAN
    position = base + days
    start = np.searchsorted(position, base, side="left")  # first row of the subject
    if rule.window_days is None:
        low = start
    else:
        low = np.maximum(np.searchsorted(position, position - rule.window_days, "left"), start)
    high = np.searchsorted(position, position, side="right")  # same-day records included
    triggers = np.flatnonzero(high - low >= rule.min_count)

    # Rows inside some qualifying window: +1 where a window opens, −1 where it closes.
    change = np.zeros(n + 1, dtype=np.int64)
    np.add.at(change, low[triggers], 1)
    np.add.at(change, high[triggers], -1)
    members = np.flatnonzero(np.cumsum(change)[:n] > 0)

    # Evidence of one subject less than a window apart belongs to one flag.
    gap = np.diff(days[members])
    same_subject = subject[members][1:] == subject[members][:-1]
    close = np.ones(len(gap), dtype=bool) if rule.window_days is None else gap <= rule.window_days
    starts = np.concatenate([[True], ~(same_subject & close)]) if len(members) else np.array([])
    episode = np.cumsum(starts).astype(np.int64) - 1

    # Each flag's id comes from its first qualifying window (rows before that window's end).
    trigger_episode = episode[np.searchsorted(members, triggers)]
    _, first = np.unique(trigger_episode, return_index=True)
    first_high = high[triggers[first]]
    in_first_window = members < first_high[episode]
    return members, episode, in_first_window


def _summarise(
    rule: Rule, evidence: pd.DataFrame, listing_years: int, as_of: date
) -> tuple[pd.DataFrame, pd.DataFrame]:
    date_field = rule.date_field
    evidence = evidence.rename(columns={date_field: "evidence_date"})
    grouped = evidence.groupby("episode", sort=True)
    flags = grouped.agg(
        subject_key=("subject_key", "first"),
        subject_id_kind=("subject_id_kind", "first"),
        subject_id=("subject_id", "first"),
        subject_name=("subject_name", "last"),  # the name on the latest record
        subject_type=("subject_type", "last"),
        evidence_count=("record_key", "size"),
        first_evidence_date=("evidence_date", "min"),
        last_evidence_date=("evidence_date", "max"),
    )
    trigger_keys = _trigger_keys(evidence)
    flags["id"] = [flag_id(rule.id, keys) for keys in trigger_keys.reindex(flags.index)]
    flags["rule_id"] = rule.id
    flags["severity"] = rule.severity
    flags["title"] = rule.title
    flags["basis"] = _basis(rule)
    flags["dataset"] = rule.dataset
    flags["listing_start"] = flags["last_evidence_date"]
    flags["listing_end"] = listing_end(flags["listing_start"], listing_years)
    flags["state"] = np.where(flags["listing_end"] < pd.Timestamp(as_of), EXPIRED, CANDIDATE)
    evidence["flag_id"] = flags["id"].reindex(evidence["episode"]).to_numpy()
    evidence["position"] = grouped.cumcount()
    evidence["dataset"] = rule.dataset
    return (
        flags.reset_index(drop=True)[FLAG_COLUMNS],
        evidence[EVIDENCE_COLUMNS].reset_index(drop=True),
    )


def _trigger_keys(evidence: pd.DataFrame) -> pd.Series:
    """Per episode, the record keys of its first qualifying window (`trigger`), sorted in
    code-point order and joined by U+001E: what the flag's id hashes. One Arrow sort by
    (episode, key) and one list join, instead of a Python sort and join per flag."""
    first = evidence.loc[evidence["trigger"]]
    table = pa.table(
        {
            "episode": first["episode"].to_numpy(dtype=np.int64),
            "record_key": arrow_strings(first["record_key"]),
        }
    )
    table = table.take(
        pc.sort_indices(table, sort_keys=[("episode", "ascending"), ("record_key", "ascending")])
    )
    episode = table["episode"].to_numpy()
    starts = np.flatnonzero(np.diff(episode, prepend=-1))  # episodes are numbered from 0
    joined = join_runs(table["record_key"], starts, "\x1e")
    return pd.Series(joined, index=episode[starts], dtype=object)


def join_runs(values: pa.Array | pa.ChunkedArray, starts: np.ndarray, separator: str) -> list[str]:
    """`values` cut into consecutive runs (run i from `starts[i]` up to the next start), each
    run joined by `separator`: a group-by join in Arrow, without a Python call per group."""
    text = pc.cast(values, pa.large_string())
    text = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
    runs = pa.LargeListArray.from_arrays(pa.array(np.append(starts, len(text)), pa.int64()), text)
    joined = pc.binary_join(runs, pa.scalar(separator, pa.large_string()))
    return joined.to_pylist()


def listing_end(start: pd.Series, years: int) -> pd.Series:
    """The last listed day: the `years`th anniversary of `start` (《民法典》第二百零一条、第二百零二条:
    the start day is not counted, a period ends on the corresponding day, or the month's last
    day when there is none: from 2024-02-29 for 3 years → 2027-02-28), as publication counts."""
    return (start + pd.DateOffset(years=years)).astype("datetime64[s]")


def flag_id(rule_id: str, trigger_keys: str) -> str:
    """A flag's stable id: the rule, then a hash of the rule and the natural keys of its first
    qualifying window. The subject's identifier is deliberately left out: the evidence keys are
    published, and a hash over a person's ID number with only ~10^6 unknown combinations (the
    masked middle) could be reversed; the keys already tie the flag to one subject."""
    digest = hashlib.sha256(f"{rule_id}\x1f{trigger_keys}".encode()).hexdigest()
    return f"{rule_id}-{digest[:16]}"


_DTYPES = {
    "evidence_count": "int64",
    "position": "int64",
    "trigger": "bool",
    "first_evidence_date": "datetime64[s]",
    "last_evidence_date": "datetime64[s]",
    "listing_start": "datetime64[s]",
    "listing_end": "datetime64[s]",
    "evidence_date": "datetime64[s]",
}


def _empty(columns: list[str]) -> pd.DataFrame:
    """No flags (or no evidence), with the dtypes a non-empty result has."""
    return pd.DataFrame({c: pd.Series(dtype=_DTYPES.get(c, "str")) for c in columns})
