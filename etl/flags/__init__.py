"""Serious-dishonesty (严重违法失信) and general-dishonesty (一般失信) candidate flags.

`policy` reads the rules (schemas/policy/serious_dishonesty.v1.yaml), `engine` evaluates them
over the store's as-of state, `registry` keeps every flag, its evidence and the reviewers'
decisions. `evaluate_flags` is what `creditpipe run`, `creditpipe flags evaluate` and the
Airflow publish DAG call.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import date

from sqlalchemy.engine import Engine

from etl.flags.engine import evaluate
from etl.flags.policy import Policy, load_policy
from etl.flags.registry import RegistryCounts, lock, record
from etl.store import db

log = logging.getLogger(__name__)


def evaluate_flags(engine: Engine, as_of: date, policy: Policy | None = None) -> RegistryCounts:
    """Evaluate every rule as of `as_of` and bring the registry up to date, in one transaction.

    The counts carry the evaluation for a publication that follows, spilled to a temporary
    folder (`Evaluation.spill`): it is not held in memory meanwhile."""
    policy = policy or load_policy()
    with db.transaction(engine) as conn:
        lock(conn)  # before reading: an older evaluation must not overwrite a newer one
        evaluation = evaluate(conn, as_of, policy)
        counts = record(conn, evaluation)
    try:
        return replace(counts, evaluation=evaluation.spill())
    except OSError as exc:  # the registry is committed: a publication evaluates again instead
        log.warning("标记评估结果无法暂存到临时目录（%s），发布时将重新评估", exc)
        return replace(counts, evaluation=None)
