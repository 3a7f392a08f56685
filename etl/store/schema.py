"""The store's tables: source files, rejections, and one versioned record table per dataset.

The record tables are derived from the data contracts (`record_table`); the Alembic migrations
spell the same columns out, and a test compares the migrated database with what is derived here,
so a contract change without a migration fails the build.

Times are stored as naive UTC (`received_at`, `valid_from`, `valid_to`): SQLite keeps no time
zones, and one convention on both databases keeps the as-of queries identical.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from etl.contracts import Contract, FieldSpec, available_datasets, load_contract

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = sa.MetaData(naming_convention=NAMING)

# A 64-bit key on PostgreSQL, SQLite's rowid alias there (only INTEGER PRIMARY KEY autoincrements).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class Amount(sa.TypeDecorator[Decimal]):
    """Money in 万元 with 6 decimals: NUMERIC(18,6) on PostgreSQL, exact text on SQLite.

    SQLite would store NUMERIC as a binary float; a fixed-point text keeps the values exact and
    lets equal amounts compare equal in SQL.
    """

    impl = sa.Numeric(18, 6)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String(32))
        return dialect.type_descriptor(sa.Numeric(18, 6))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None or dialect.name != "sqlite":
            return value
        return format_amount(Decimal(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


def format_amount(value: Decimal) -> str:
    """The canonical text of an amount (`2.000000`), as stored on SQLite."""
    return f"{value:.6f}"


# Lifecycle of a dropped file (source_file.status).
RECEIVED, LOADED, UNREADABLE, DUPLICATE, FAILED = (
    "received",
    "loaded",
    "unreadable",
    "duplicate",
    "failed",
)
PROCESSED = (LOADED, UNREADABLE)  # a re-drop of these is a duplicate; FAILED ones are retried

# State of a record version.
ACTIVE, WITHDRAWN = "active", "withdrawn"

source_file = sa.Table(
    "source_file",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("office_id", sa.String(64), nullable=False),
    sa.Column("dataset", sa.String(64), nullable=False),
    sa.Column("original_name", sa.Text, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("archive_path", sa.Text, nullable=False),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("finished_at", sa.DateTime),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
    sa.Column("duplicate_of", BigId, sa.ForeignKey("source_file.id")),
    sa.Column("contract", sa.String(64)),
    sa.Column("as_of", sa.Date),
    sa.Column("encoding", sa.String(32)),
    sa.Column("rows_read", sa.Integer),
    sa.Column("accepted", sa.Integer),
    sa.Column("rejected", sa.Integer),
    sa.Column("inserted", sa.Integer),
    sa.Column("corrected", sa.Integer),
    sa.Column("unchanged", sa.Integer),
    sa.Column("withdrawn", sa.Integer),
    sa.Column("error_code", sa.String(64)),
    sa.Column("error_message", sa.Text),
)
# One processed (or in-flight) registration per content and dataset; re-drops point at it.
sa.Index(
    "uq_source_file_sha256_dataset",
    source_file.c.sha256,
    source_file.c.dataset,
    unique=True,
    sqlite_where=source_file.c.duplicate_of.is_(None),
    postgresql_where=source_file.c.duplicate_of.is_(None),
)

rejected_row = sa.Table(
    "rejected_row",
    metadata,
    sa.Column("source_file_id", BigId, sa.ForeignKey("source_file.id"), primary_key=True),
    sa.Column("row_number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("raw", sa.Text, nullable=False),  # JSON object: header as written → cell text
)

rejection = sa.Table(
    "rejection",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("source_file_id", BigId, sa.ForeignKey("source_file.id"), nullable=False),
    sa.Column("row_number", sa.Integer, nullable=False),
    sa.Column("field", sa.Text, nullable=False),
    sa.Column("code", sa.String(64), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("value", sa.Text),
    sa.Index("ix_rejection_source_file_id_row_number", "source_file_id", "row_number"),
)

# Columns every record table has before the contract's fields.
VERSION_COLUMNS = (
    "id",
    "version",
    "state",
    "valid_from",
    "valid_to",
    "source_file_id",
    "source_row",
)


def column_type(spec: FieldSpec) -> sa.types.TypeEngine[Any]:
    """The SQL type of a contract field (text is unbounded: lengths are the contract's rule)."""
    if spec.type == "date":
        return sa.Date()
    if spec.type == "amount":
        return Amount()
    return sa.Text()


def record_table_name(dataset: str) -> str:
    return f"{dataset}_version"


def only_on(dialect: str, constraint: sa.Constraint) -> sa.Constraint:
    """`constraint`, created and compared (`compared_on`) on `dialect`'s databases only."""
    constraint.info["dialects"] = (dialect,)
    return constraint.ddl_if(dialect=dialect)


def compared_on(dialect: str) -> Callable[[Any, str | None, str, bool, Any], bool]:
    """Alembic's `include_object` for a database of `dialect`: leaves out what `only_on` keeps
    for other databases, so that the comparison of the migrations with the schema holds."""

    def include(obj: Any, name: str | None, kind: str, reflected: bool, other: Any) -> bool:
        dialects = getattr(obj, "info", {}).get("dialects")
        return dialects is None or dialect in dialects

    return include


@cache
def record_table(dataset: str) -> sa.Table:
    """The versioned record table of `dataset`, derived from its contract."""
    contract = load_contract(dataset)
    name = record_table_name(dataset)
    return sa.Table(
        name,
        metadata,
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("valid_from", sa.DateTime, nullable=False),
        sa.Column("valid_to", sa.DateTime),
        sa.Column("source_file_id", BigId, nullable=False),
        sa.Column("source_row", sa.Integer, nullable=False),
        *(sa.Column(f.name, column_type(f)) for f in contract.fields),
        # On PostgreSQL a load checks its file once, not once per version (`FileLoad.merge`),
        # and a trigger on `source_file` keeps cited files (0005_version_source_file_guard).
        only_on("sqlite", sa.ForeignKeyConstraint(["source_file_id"], ["source_file.id"])),
        # The natural key leads: the merge finds a key's open version through it, and the
        # as-of read walks it in key order. No second (key, valid_to) index: every new version
        # paid one more random B-tree insert for it (0004_drop_key_valid_to).
        sa.Index(f"uq_{name}_key_version", *contract.natural_key, "version", unique=True),
        sa.Index(f"ix_{name}_source_file_id", "source_file_id"),
    )


def staging_table(contract: Contract, name: str, schema: str | None = None) -> sa.Table:
    """A per-load table of the rows to merge: the contract's fields, the file row, the revoked
    flag. Temporary; or, with `schema`, a table of that attached database (SQLite: the load's
    private staging file, `etl.store.load._ArrowStage`)."""
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("source_row", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("revoked", sa.Boolean, nullable=False),
        *(sa.Column(f.name, column_type(f)) for f in contract.fields),
        schema=schema,
        prefixes=[] if schema else ["TEMPORARY"],
    )


def plan_table(name: str) -> sa.Table:
    """A per-load temporary table: what the merge does with each staged row."""
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("source_row", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("prev_id", sa.BigInteger),  # the open version of the key, if any
        sa.Column("prev_version", sa.Integer),
        sa.Column("unchanged", sa.Boolean, nullable=False),
        sa.Column("revoked", sa.Boolean, nullable=False),
        prefixes=["TEMPORARY"],
    )


# --- serious-dishonesty flags (etl/flags) ---------------------------------------------------

# Every flag ever found, as of the latest evaluation; ids are stable hashes (etl/flags/engine.py).
flag = sa.Table(
    "flag",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("rule_id", sa.String(64), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("basis", sa.Text, nullable=False),
    sa.Column("dataset", sa.String(64), nullable=False),
    sa.Column("subject_key", sa.Text, nullable=False),
    sa.Column("subject_id_kind", sa.Text, nullable=False),
    sa.Column("subject_id", sa.Text, nullable=False),
    sa.Column("subject_name", sa.Text),
    sa.Column("subject_type", sa.Text),
    sa.Column("evidence_count", sa.Integer, nullable=False),
    sa.Column("first_evidence_date", sa.Date, nullable=False),
    sa.Column("last_evidence_date", sa.Date, nullable=False),
    sa.Column("listing_start", sa.Date, nullable=False),
    sa.Column("listing_end", sa.Date, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("state_reason", sa.Text),
    sa.Column("decision", sa.String(16)),  # confirmed · rejected, set only by a reviewer
    sa.Column("first_found", sa.Date, nullable=False),  # as-of date of the first evaluation
    sa.Column("last_found", sa.Date, nullable=False),
    sa.Column("withdrawn_on", sa.Date),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Index("ix_flag_state", "state"),
    sa.Index("ix_flag_rule_id", "rule_id"),
    sa.Index("ix_flag_subject_key", "subject_key"),
)

# The records behind a flag, by natural key (a JSON array of the key values, contract order).
flag_evidence = sa.Table(
    "flag_evidence",
    metadata,
    sa.Column("flag_id", sa.String(64), sa.ForeignKey("flag.id"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("dataset", sa.String(64), nullable=False),
    sa.Column("record_key", sa.Text, nullable=False),
    sa.Column("evidence_date", sa.Date, nullable=False),
    sa.Column("trigger", sa.Boolean, nullable=False),  # in the window that fixed the flag's id
)

# Review decisions: appended by people, never written by an evaluation.
flag_decision = sa.Table(
    "flag_decision",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("flag_id", sa.String(64), sa.ForeignKey("flag.id"), nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("decided_by", sa.Text, nullable=False),
    sa.Column("decision_no", sa.Text),
    sa.Column("reason", sa.Text),
    sa.Column("decided_at", sa.DateTime, nullable=False),
    sa.Index("ix_flag_decision_flag_id", "flag_id"),
)

# One row per evaluation: when, for which date, what changed.
flag_evaluation = sa.Table(
    "flag_evaluation",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("as_of", sa.Date, nullable=False),
    sa.Column("evaluated_at", sa.DateTime, nullable=False),
    sa.Column("policy_version", sa.Integer, nullable=False),
    sa.Column("flags", sa.Integer, nullable=False),
    sa.Column("new", sa.Integer, nullable=False),
    sa.Column("changed", sa.Integer, nullable=False),
    sa.Column("withdrawn", sa.Integer, nullable=False),
    sa.Column("registry_updated", sa.Boolean, nullable=False),
)


def all_tables() -> sa.MetaData:
    """The metadata with every dataset's record table attached (for migration checks)."""
    for dataset in available_datasets():
        record_table(dataset)
    return metadata
