"""Serious-dishonesty flags, their evidence, review decisions and evaluations.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "flag",
        sa.Column("id", sa.String(64), nullable=False),
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
        sa.Column("decision", sa.String(16)),
        sa.Column("first_found", sa.Date, nullable=False),
        sa.Column("last_found", sa.Date, nullable=False),
        sa.Column("withdrawn_on", sa.Date),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_flag"),
    )
    op.create_index("ix_flag_state", "flag", ["state"])
    op.create_index("ix_flag_rule_id", "flag", ["rule_id"])
    op.create_index("ix_flag_subject_key", "flag", ["subject_key"])
    op.create_table(
        "flag_evidence",
        sa.Column("flag_id", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("record_key", sa.Text, nullable=False),
        sa.Column("evidence_date", sa.Date, nullable=False),
        sa.Column("trigger", sa.Boolean, nullable=False),
        sa.ForeignKeyConstraint(["flag_id"], ["flag.id"], name="fk_flag_evidence_flag_id_flag"),
        sa.PrimaryKeyConstraint("flag_id", "position", name="pk_flag_evidence"),
    )
    op.create_table(
        "flag_decision",
        sa.Column("id", BigId, nullable=False, autoincrement=True),
        sa.Column("flag_id", sa.String(64), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.Text, nullable=False),
        sa.Column("decision_no", sa.Text),
        sa.Column("reason", sa.Text),
        sa.Column("decided_at", sa.DateTime, nullable=False),
        sa.ForeignKeyConstraint(["flag_id"], ["flag.id"], name="fk_flag_decision_flag_id_flag"),
        sa.PrimaryKeyConstraint("id", name="pk_flag_decision"),
    )
    op.create_index("ix_flag_decision_flag_id", "flag_decision", ["flag_id"])
    op.create_table(
        "flag_evaluation",
        sa.Column("id", BigId, nullable=False, autoincrement=True),
        sa.Column("as_of", sa.Date, nullable=False),
        sa.Column("evaluated_at", sa.DateTime, nullable=False),
        sa.Column("policy_version", sa.Integer, nullable=False),
        sa.Column("flags", sa.Integer, nullable=False),
        sa.Column("new", sa.Integer, nullable=False),
        sa.Column("changed", sa.Integer, nullable=False),
        sa.Column("withdrawn", sa.Integer, nullable=False),
        sa.Column("registry_updated", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_flag_evaluation"),
    )


def downgrade() -> None:
    for table in ("flag_evaluation", "flag_decision", "flag_evidence", "flag"):
        op.drop_table(table)
