"""What is published for date D, as chunks of (public, restricted) rows.

- `penalty`: the records active at the end of D whose publicity window contains D (SPEC.md §4,
  `windows.py`), with the computed 公示截止期; public rows masked (`masking.py`).
- `abnormal_patent`: the notices active at the end of D, their handling status as of D (overdue
  derived); public rows masked.
- `serious_dishonesty`: the flags the rules yield as of D (`etl.flags.engine.evaluate`, the same
  function the registry uses, so a backfill reproduces them). Public: the flags confirmed by a
  decision taken before the end of D and still listed on D. Restricted: every flag with its
  state as of D, the decision and the evidence keys.

Rows come in a database-independent order (the natural key in code-point order), so SQLite and
PostgreSQL produce identical files.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy.engine import Connection

from etl.contracts import load_contract
from etl.flags.engine import (
    CANDIDATE,
    CONFIRMED,
    STATE_TITLES,
    Evaluation,
    SpilledEvaluation,
    evaluate,
)
from etl.flags.policy import SEVERITY_TITLES, load_policy
from etl.flags.registry import decisions_before
from etl.publish.masking import mask_frame, mask_values
from etl.publish.policy import PublicityProfile
from etl.publish.windows import REPAIRED, in_window, may_be_public, with_publicity
from etl.store.query import state_as_of

DATASETS = ("penalty", "abnormal_patent", "serious_dishonesty")
REPAIRED_STATUS = "信用修复"  # 记录状态 of a credit-repaired penalty (schemas/penalty.v1.yaml)


@dataclass(frozen=True)
class Column:
    """One published column: snake_case name, Chinese title, exchange code, Arrow type."""

    name: str
    title: str
    code: str
    type: pa.DataType

    def arrow_field(self) -> pa.Field:
        return pa.field(self.name, self.type, metadata={"title": self.title, "code": self.code})


@dataclass
class Extract:
    dataset: str
    version: str  # the contract (or flag policy) the columns come from
    key: list[str]
    public: list[Column]
    restricted: list[Column]
    # A generator: a failed publication closes it, which stops the store's read-ahead thread.
    chunks: Generator[tuple[pd.DataFrame, pd.DataFrame], None, None]


def extract(
    conn: Connection,
    dataset: str,
    day: date,
    profile: PublicityProfile,
    chunk_rows: int,
    evaluation: Evaluation | SpilledEvaluation | None = None,
) -> Extract:
    """`evaluation`: the flag evaluation of `day`, when the caller has just made it."""
    if dataset == "serious_dishonesty":
        return _flags(conn, day, profile, evaluation)
    return _records(conn, dataset, day, profile, chunk_rows)


def _records(
    conn: Connection, dataset: str, day: date, profile: PublicityProfile, chunk_rows: int
) -> Extract:
    contract = load_contract(dataset)
    types = contract.arrow_schema()
    restricted = [
        Column(f.name, f.title, f.code or "", types.field(f.name).type) for f in contract.fields
    ]
    dropped = set(profile.masking.datasets[dataset].drop)
    public = [c for c in restricted if c.name not in dropped]
    published = [c.name for c in restricted]
    windowed = dataset == profile.dataset  # the publicity windows apply to penalties

    def chunks() -> Generator[tuple[pd.DataFrame, pd.DataFrame], None, None]:
        # Only the contract's fields are read: the store's bookkeeping columns (id, version,
        # validity timestamps, source row) are never published, and formatting them in the
        # database and turning the timestamps into Python objects cost a fifth of the read.
        # The windows and the derived status read contract fields only.
        # Penalties that cannot be public on `day` (warnings only, on-the-spot fines, windows
        # long over: 45 % of a 1,000,000-record store) stay in the database (`may_be_public`).
        where = (lambda table: may_be_public(table, profile, day)) if windowed else None
        rows = state_as_of(
            conn, dataset, day, chunk_rows=chunk_rows, columns=published, where=where
        )
        for frame in rows:
            # Only the published columns go on: the windows' working columns are never written,
            # and carrying them through masking cost more than the rest of it.
            names = [name for name in published if name in frame]
            if windowed:
                if "record_status" in frame:
                    frame[REPAIRED] = (frame["record_status"] == REPAIRED_STATUS).fillna(False)
                frame = with_publicity(frame, profile)
                frame = frame.loc[in_window(frame, day), names]
            else:
                frame = frame[names]
            if frame.empty:
                continue
            yield mask_frame(frame, dataset, profile), frame

    return Extract(dataset, contract.name, list(contract.natural_key), public, restricted, chunks())


_S, _D, _I = pa.string(), pa.date32(), pa.int64()
FLAG_PUBLIC = [
    Column("flag_id", "标记编号", "", _S),
    Column("rule_id", "规则编号", "", _S),
    Column("rule_title", "认定情形", "", _S),
    Column("severity", "失信类别", "", _S),
    Column("subject_name", "主体名称", "", _S),
    Column("subject_id_kind", "主体标识类型", "", _S),
    Column("subject_id", "主体标识", "", _S),
    Column("subject_type", "主体类别", "", _S),
    Column("basis", "认定依据", "", _S),
    Column("listing_start", "列入日期", "", _D),
    Column("listing_end", "列入截止日期", "", _D),
    Column("decision_no", "列入决定书文号", "", _S),
    Column("evidence_count", "证据记录数", "", _I),
    Column("evidence_keys", "证据记录", "", _S),
]
FLAG_RESTRICTED = [
    *FLAG_PUBLIC,
    Column("state", "状态", "", _S),
    Column("decided_by", "审核人", "", _S),
    Column("decision_reason", "驳回理由", "", _S),
]


def _flags(
    conn: Connection,
    day: date,
    profile: PublicityProfile,
    given: Evaluation | SpilledEvaluation | None,
) -> Extract:
    policy = load_policy()
    if given is None or given.as_of != day or given.policy_version != policy.version:
        evaluation = evaluate(conn, day, policy)
    else:
        evaluation = given.load()
    flags = evaluation.flags
    decisions = decisions_before(conn, day).set_index("flag_id")
    decision = flags["id"].map(decisions["decision"]) if len(decisions) else None
    frame = pd.DataFrame(
        {
            "flag_id": flags["id"],
            "rule_id": flags["rule_id"],
            "rule_title": flags["title"],
            "severity": flags["severity"].map(SEVERITY_TITLES),
            "subject_name": flags["subject_name"],
            "subject_id_kind": flags["subject_id_kind"],
            "subject_id": flags["subject_id"],
            "subject_type": flags["subject_type"],
            "basis": flags["basis"],
            "listing_start": flags["listing_start"],
            "listing_end": flags["listing_end"],
            "evidence_count": flags["evidence_count"].astype("int64"),
            "evidence_keys": _evidence_keys(flags, evaluation.evidence),
        }
    )
    state = flags["state"].copy()
    if decision is not None:
        state = state.mask((state == CANDIDATE) & decision.notna(), decision)
        frame["decision_no"] = flags["id"].map(decisions["decision_no"])
        frame["decided_by"] = flags["id"].map(decisions["decided_by"])
        frame["decision_reason"] = flags["id"].map(decisions["reason"])
    else:
        for name in ("decision_no", "decided_by", "decision_reason"):
            frame[name] = pd.Series(pd.NA, index=frame.index, dtype="str")
    frame["state"] = state.map(STATE_TITLES)
    public = frame.loc[state == CONFIRMED].copy()
    personal = public["subject_id_kind"] == "证件号码"  # natural persons: never a full ID
    public["subject_id"] = (
        public["subject_id"]
        .astype("str")
        .where(~personal, mask_values(public["subject_id"], profile.masking))
    )

    def chunks() -> Generator[tuple[pd.DataFrame, pd.DataFrame], None, None]:
        yield public, frame

    return Extract(
        "serious_dishonesty",
        f"serious_dishonesty.v{policy.version}",
        ["flag_id"],
        FLAG_PUBLIC,
        FLAG_RESTRICTED,
        chunks(),
    )


def _evidence_keys(flags: pd.DataFrame, evidence: pd.DataFrame) -> pd.Series:
    """Each flag's evidence as one JSON array of record keys (arrays of strings)."""
    if evidence.empty:
        return pd.Series("[]", index=flags.index, dtype="str")
    joined = evidence.groupby("flag_id", sort=False)["record_key"].agg(",".join)
    return ("[" + flags["id"].map(joined).fillna("") + "]").astype("str")


def as_arrow(frame: pd.DataFrame, columns: list[Column]) -> pa.Table:
    """The frame as a typed Arrow table in the published column order, with field metadata."""
    arrays = [arrow_column(column_values(frame, column), column) for column in columns]
    schema = pa.schema([c.arrow_field() for c in columns])
    return pa.Table.from_arrays(arrays, schema=schema)


def column_values(frame: pd.DataFrame, column: Column) -> pd.Series:
    """The frame's values of a published column; all null when the frame lacks it."""
    if column.name in frame:
        return frame[column.name]
    return pd.Series(pd.NA, index=frame.index)


def arrow_column(values: pd.Series, column: Column) -> pa.Array | pa.ChunkedArray:
    """One column of `as_arrow`: the values as the column's Arrow type."""
    if pa.types.is_date32(column.type):
        days = values.to_numpy(dtype="datetime64[D]", na_value=np.datetime64("NaT"))
        return pa.array(days, pa.date32(), from_pandas=True)
    if pa.types.is_decimal(column.type):
        decimals = pa.array(values, from_pandas=True)
        if isinstance(decimals, pa.ChunkedArray):
            decimals = decimals.combine_chunks()
        return decimals.cast(column.type)
    if pa.types.is_integer(column.type):
        return pa.array(values.to_numpy(dtype="int64"), column.type)
    return pa.array(values.astype("str"), pa.string(), from_pandas=True)
