"""The flag registry: every flag ever found, its evidence, and the reviewers' decisions.

An evaluation never overwrites a decision. A flag's state is, in this order:
withdrawn (the rules no longer yield it: its evidence was revoked or corrected away) ·
expired (its listing has ended) · the reviewer's decision (confirmed · rejected) · candidate.
A confirmed flag whose evidence is later revoked therefore shows as withdrawn, with the decision
kept beside it: a listing cannot stand on a revoked penalty (总局令第45号 第十一条).

Only an evaluation for the newest date moves the registry; evaluating an earlier date (a
backfill) returns its flags without touching today's states.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl import settings
from etl.checks.codes import message
from etl.errors import ReviewError
from etl.flags.engine import (
    CANDIDATE,
    CONFIRMED,
    REJECTED,
    STATE_TITLES,
    WITHDRAWN,
    Evaluation,
    SpilledEvaluation,
    join_runs,
)
from etl.store import files
from etl.store.load import bulk_insert
from etl.store.query import end_of_day
from etl.store.schema import flag, flag_decision, flag_evaluation, flag_evidence
from etl.text import arrow_strings, factorize

WITHDRAWN_REASON = "证据记录已撤销或更正，规则不再成立"
SUPERSEDED_REASON = "已由 {successor} 取代：补报了更早的证据记录，认定窗口变化，需重新审核"
DECISION_TITLES = {CONFIRMED: "确认", REJECTED: "驳回"}


@dataclass(frozen=True)
class RegistryCounts:
    as_of: date
    flags: int  # flags the rules yield as of the date
    new: int
    changed: int
    withdrawn: int
    registry_updated: bool  # False for a backfill of an earlier date
    by_state: dict[str, int]
    unidentified: dict[str, int] = field(default_factory=dict)  # rule → records naming nobody
    # The evaluation itself, so a publication of the same date need not evaluate again
    # (`evaluate_flags` hands it over spilled to disk).
    evaluation: Evaluation | SpilledEvaluation | None = field(
        default=None, repr=False, compare=False
    )

    def to_json(self) -> dict[str, Any]:
        # Not asdict(): it would deep-copy the evaluation's frames only to drop them.
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "evaluation"}
        out["by_state"] = dict(self.by_state)
        out["unidentified"] = dict(self.unidentified)
        out["as_of"] = self.as_of.isoformat()
        return out


def lock(conn: Connection) -> None:
    """One registry writer at a time (SQLite: BEGIN IMMEDIATE already holds the write lock)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('flag'))"))


def record(conn: Connection, evaluation: Evaluation) -> RegistryCounts:
    """Bring the registry to `evaluation` and log the evaluation; returns what changed."""
    lock(conn)
    now = files.utcnow()
    latest = conn.execute(
        sa.select(sa.func.max(flag_evaluation.c.as_of)).where(flag_evaluation.c.registry_updated)
    ).scalar_one()
    update = latest is None or evaluation.as_of >= latest
    new = changed = gone = 0
    if update:
        new, changed, gone = _apply(conn, evaluation, now)
    conn.execute(
        flag_evaluation.insert().values(
            as_of=evaluation.as_of,
            evaluated_at=now,
            policy_version=evaluation.policy_version,
            flags=len(evaluation.flags),
            new=new,
            changed=changed,
            withdrawn=gone,
            registry_updated=update,
        )
    )
    by_state: dict[str, int] = {
        str(state): int(n)
        for state, n in conn.execute(
            sa.select(flag.c.state, sa.func.count()).group_by(flag.c.state)
        )
    }
    unidentified = {rule: n for rule, n in evaluation.unidentified.items() if n}
    return RegistryCounts(
        evaluation.as_of,
        len(evaluation.flags),
        new,
        changed,
        gone,
        update,
        by_state,
        unidentified,
        evaluation,
    )


def _apply(conn: Connection, evaluation: Evaluation, now: datetime) -> tuple[int, int, int]:
    # The evaluation's frames are the flag step's largest objects (~120 MB for the 116,000
    # flags of a 5,000,000-row store): they are not copied here. `assign` shares the columns it
    # does not set, the stored state is looked up by id (not merged into a copy of every
    # column), and the new rows are inserted a slice at a time. The step's peak in that run
    # was ~190 MB above the 1,000,000-row run's, from four copies of the flags at once.
    found = evaluation.flags.assign(
        content_hash=content_hashes(evaluation.flags, evaluation.evidence)
    )
    stored = pd.DataFrame(
        conn.execute(
            sa.select(
                flag.c.id,
                flag.c.state,
                flag.c.decision,
                flag.c.content_hash,
                flag.c.rule_id,
                flag.c.subject_key,
            )
        ).all(),
        columns=["id", "stored_state", "decision", "stored_hash", "rule_id", "subject_key"],
        dtype=object,
    )
    known = stored.set_index("id").reindex(found["id"])  # ids are unique on both sides

    def stored_value(name: str) -> pd.Series:
        return pd.Series(known[name].to_numpy(), index=found.index, dtype=object)

    decision, stored_state = stored_value("decision"), stored_value("stored_state")
    decided = decision.notna() & (found["state"] == CANDIDATE)
    merged = found.assign(state=found["state"].mask(decided, decision))
    is_new = stored_state.isna()
    is_changed = ~is_new & (
        (stored_value("stored_hash") != merged["content_hash"]) | (stored_state != merged["state"])
    )
    stamp = now.isoformat(sep=" ", timespec="microseconds")

    for start in range(0, len(merged), _INSERT_ROWS):
        part = slice(start, start + _INSERT_ROWS)
        fresh = merged.iloc[part].loc[is_new.iloc[part].to_numpy()]
        fresh = fresh.assign(
            first_found=pd.Timestamp(evaluation.as_of),
            last_found=pd.Timestamp(evaluation.as_of),
            updated_at=stamp,
        )
        bulk_insert(conn, flag, fresh)

    moved = merged.loc[is_changed]
    if len(moved):
        ids = moved["id"].tolist()
        _delete_evidence(conn, ids)
        columns = [c for c in found.columns if c != "id"]
        rows = [
            {f"v_{k}": v for k, v in row.items()} | {"v_withdrawn_on": None, "v_state_reason": None}
            for row in _records(moved[["id", *columns]])
        ]
        settable = (*columns, "withdrawn_on", "state_reason")
        conn.execute(
            flag.update()
            .where(flag.c.id == sa.bindparam("v_id"))
            .values({**{c: sa.bindparam(f"v_{c}") for c in settable}, "updated_at": now}),
            rows,
        )
    # The evidence of new and changed flags (Arrow's is_in: pandas' isin makes a scalar per id).
    touched = pa.array(merged["id"][(is_new | is_changed).to_numpy()], pa.large_string())
    evidence = evaluation.evidence
    wanted = pc.is_in(arrow_strings(evidence["flag_id"]), value_set=touched)
    wanted = wanted.to_numpy(zero_copy_only=False)
    for start in range(0, len(evidence), _INSERT_ROWS):
        part = slice(start, start + _INSERT_ROWS)
        bulk_insert(conn, flag_evidence, evidence.iloc[part].loc[wanted[part]])

    gone = stored.loc[~stored["id"].isin(found["id"]) & (stored["stored_state"] != WITHDRAWN)]
    # The same rule still fires for the subject under another id: its first window moved (a
    # record dated earlier arrived late). Say so; the successor needs review again.
    successors = found.loc[found["state"] != WITHDRAWN, ["rule_id", "subject_key", "id"]]
    named = gone.merge(
        successors.rename(columns={"id": "successor"}), on=["rule_id", "subject_key"], how="left"
    ).drop_duplicates("id")
    reasons = [
        WITHDRAWN_REASON if pd.isna(successor) else SUPERSEDED_REASON.format(successor=successor)
        for successor in named["successor"]
    ]
    if len(named):
        conn.execute(
            flag.update()
            .where(flag.c.id == sa.bindparam("v_id"))
            .values(
                state=WITHDRAWN,
                state_reason=sa.bindparam("v_reason"),
                withdrawn_on=evaluation.as_of,
                updated_at=now,
            ),
            [{"v_id": i, "v_reason": r} for i, r in zip(named["id"], reasons, strict=True)],
        )
    conn.execute(flag.update().where(flag.c.state != WITHDRAWN).values(last_found=evaluation.as_of))
    return int(is_new.sum()), int(is_changed.sum()), len(named)


_HASH_FLAGS = 20_000
_INSERT_ROWS = 50_000  # flags or evidence rows per bulk insert (their text, not all of it)


def content_hashes(flags: pd.DataFrame, evidence: pd.DataFrame) -> pd.Series:
    """A hash per flag of everything an evaluation may change (evidence, dates, names, state).

    The hashed text is, per flag: subject name, type, listing start and end, state and evidence
    count joined by `|`, then U+001D, then its evidence lines (`key|date|T or E`, in the order
    given) joined by U+001E. Built with column-wise string operations and an Arrow join per
    flag's run of evidence; only the SHA-256 itself is computed flag by flag.

    `_HASH_FLAGS` flags at a time: the texts of all 116,000 flags of a 5,000,000-row store at
    once added ~190 MB to the flag step's peak, the largest part of it that grew with the store."""
    if len(flags) <= _HASH_FLAGS:
        return _content_hashes(flags, evidence)
    parts = []
    for start in range(0, len(flags), _HASH_FLAGS):
        some = flags.iloc[start : start + _HASH_FLAGS]
        parts.append(_content_hashes(some, evidence[evidence["flag_id"].isin(some["id"])]))
    return pd.concat(parts)


def _content_hashes(flags: pd.DataFrame, evidence: pd.DataFrame) -> pd.Series:
    if flags.empty:
        return pd.Series([], index=flags.index, dtype="str")
    line = (
        evidence["record_key"]
        + "|"
        + evidence["evidence_date"].dt.strftime("%Y-%m-%d")
        + "|"
        + np.where(evidence["trigger"].astype(bool), "T", "E")
    )
    codes, ids = factorize(evidence["flag_id"])
    order = np.argsort(codes, kind="stable")  # each flag's lines together, in their order
    starts = np.flatnonzero(np.diff(codes[order], prepend=-1))
    per_flag = join_runs(arrow_strings(line).take(order), starts, "\x1e")
    found = pd.Index(ids).get_indexer(flags["id"])
    lines = np.append(np.array(per_flag, dtype=object), "")[found]  # a flag without evidence: ""
    head = flags[
        ["subject_name", "subject_type", "listing_start", "listing_end", "state", "evidence_count"]
    ].astype("str")
    text = head.iloc[:, 0].fillna("")
    for name in head.columns[1:]:
        text = text + "|" + head[name].fillna("")
    text = text + "\x1d" + pd.Series(lines, index=flags.index, dtype="str")
    utf8 = pc.cast(arrow_strings(text), pa.large_binary()).to_pylist()
    digests = [hashlib.sha256(t).hexdigest() for t in utf8]
    return pd.Series(digests, index=flags.index, dtype="str")


def _delete_evidence(conn: Connection, ids: list[str]) -> None:
    for part in _chunks(ids):
        conn.execute(flag_evidence.delete().where(flag_evidence.c.flag_id.in_(part)))


def _chunks(values: list[str], size: int = 500) -> list[list[str]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain Python values (dates as `date`, NA as None) for executemany."""
    out = frame.astype(object).where(frame.notna(), None)
    for name in out.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[name]):
            out[name] = [v.date() if v is not None else None for v in out[name]]
    return out.to_dict("records")  # type: ignore[return-value]


# --- review ----------------------------------------------------------------------------------


def resolve(conn: Connection, flag_ref: str) -> str:
    """A flag id from an exact id or a unique prefix of one."""
    ref = flag_ref.strip()
    if conn.execute(sa.select(flag.c.id).where(flag.c.id == ref)).first():
        return ref
    escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    matches = (
        conn.execute(
            sa.select(flag.c.id)
            .where(flag.c.id.like(f"{escaped}%", escape="\\"))
            .order_by(flag.c.id)
            .limit(6)
        )
        .scalars()
        .all()
    )
    if not matches:
        raise ReviewError(message("E_FLAG_UNKNOWN", flag=ref), code="E_FLAG_UNKNOWN")
    if len(matches) > 1:
        shown = "、".join(matches[:5]) + ("…" if len(matches) > 5 else "")
        raise ReviewError(
            message("E_FLAG_AMBIGUOUS", flag=ref, matches=shown), code="E_FLAG_AMBIGUOUS"
        )
    return str(matches[0])


def decide(
    conn: Connection,
    flag_ref: str,
    decision: str,
    *,
    by: str,
    decision_no: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """Record a reviewer's decision on a candidate flag; returns the decision as stored."""
    if decision not in DECISION_TITLES:
        raise ValueError(f"decision must be one of {sorted(DECISION_TITLES)}")
    lock(conn)
    flag_id = resolve(conn, flag_ref)
    row = conn.execute(sa.select(flag).where(flag.c.id == flag_id)).one()
    if row.decision is not None:
        last = conn.execute(
            sa.select(flag_decision)
            .where(flag_decision.c.flag_id == flag_id)
            .order_by(flag_decision.c.id.desc())
        ).first()
        assert last is not None
        raise ReviewError(
            message(
                "E_FLAG_DECIDED",
                flag=flag_id,
                decided_at=shanghai_time(last.decided_at),
                decided_by=last.decided_by,
                decision=DECISION_TITLES[last.decision],
            ),
            code="E_FLAG_DECIDED",
        )
    if row.state != CANDIDATE:
        raise ReviewError(
            message("E_FLAG_STATE", flag=flag_id, state=STATE_TITLES.get(row.state, row.state)),
            code="E_FLAG_STATE",
        )
    now = files.utcnow()
    values = {
        "flag_id": flag_id,
        "decision": decision,
        "decided_by": by.strip(),
        "decision_no": (decision_no or "").strip() or None,
        "reason": (reason or "").strip() or None,
        "decided_at": now,
    }
    conn.execute(flag_decision.insert().values(**values))
    conn.execute(
        flag.update()
        .where(flag.c.id == flag_id)
        .values(decision=decision, state=decision, updated_at=now)
    )
    return values


def shanghai_time(moment: datetime) -> str:
    """A stored (naive UTC) time as Shanghai wall-clock time, for people."""
    return moment.replace(tzinfo=UTC).astimezone(settings.SHANGHAI).strftime("%Y-%m-%d %H:%M")


# --- reading ---------------------------------------------------------------------------------


def get_flag(conn: Connection, flag_id: str) -> dict[str, Any]:
    return dict(conn.execute(sa.select(flag).where(flag.c.id == flag_id)).one()._mapping)


def list_flags(
    conn: Connection, *, states: list[str] | None = None, rule: str | None = None
) -> list[dict[str, Any]]:
    """Flags, newest listing first, optionally narrowed by state and rule."""
    query = sa.select(flag).order_by(flag.c.listing_start.desc(), flag.c.id)
    if states:
        query = query.where(flag.c.state.in_(states))
    if rule:
        query = query.where(flag.c.rule_id == rule)
    return [dict(r._mapping) for r in conn.execute(query)]


def decisions_before(conn: Connection, day: date) -> pd.DataFrame:
    """The latest decision per flag made before the end of `day` (for reproducible
    publication of an earlier date)."""
    rows = conn.execute(
        sa.select(flag_decision)
        .where(flag_decision.c.decided_at < end_of_day(day))
        .order_by(flag_decision.c.id)
    ).all()
    frame = pd.DataFrame([dict(r._mapping) for r in rows], columns=list(flag_decision.c.keys()))
    return frame.drop_duplicates("flag_id", keep="last").reset_index(drop=True)


def evidence_of(conn: Connection, flag_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(flag_evidence)
        .where(flag_evidence.c.flag_id == flag_id)
        .order_by(flag_evidence.c.position)
    )
    out = []
    for r in rows:
        item = dict(r._mapping)
        item["record_key"] = json.loads(item["record_key"])
        out.append(item)
    return out


def history_of(conn: Connection, flag_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(flag_decision)
        .where(flag_decision.c.flag_id == flag_id)
        .order_by(flag_decision.c.id)
    )
    return [dict(r._mapping) for r in rows]
