"""Source files, rejections and the versioned penalty records.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from etl.store.schema import Amount, BigId

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# penalty.v1 fields, in contract order (tests/store/test_migrations.py checks them).
PENALTY_TEXT_BEFORE = [
    "subject_name", "subject_type", "subject_uscc", "business_reg_no", "org_code", "tax_reg_no",
    "institution_cert_no", "social_org_reg_no", "legal_rep", "legal_rep_id_type",
    "legal_rep_id_number", "id_type", "id_number", "decision_no", "violation_type",
    "violation_facts", "legal_basis", "penalty_categories", "penalty_content",
]  # fmt: skip
PENALTY_TEXT_AFTER = [
    "authority", "authority_uscc", "source_unit", "source_uscc", "remarks", "record_status",
    "procedure_type",
]  # fmt: skip


def version_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("valid_from", sa.DateTime, nullable=False),
        sa.Column("valid_to", sa.DateTime),
        sa.Column("source_file_id", BigId, sa.ForeignKey("source_file.id"), nullable=False),
        sa.Column("source_row", sa.Integer, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "source_file",
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
        *(
            sa.Column(name, sa.Integer)
            for name in (
                "rows_read",
                "accepted",
                "rejected",
                "inserted",
                "corrected",
                "unchanged",
                "withdrawn",
            )
        ),  # fmt: skip
        sa.Column("error_code", sa.String(64)),
        sa.Column("error_message", sa.Text),
    )
    op.create_index(
        "uq_source_file_sha256_dataset",
        "source_file",
        ["sha256", "dataset"],
        unique=True,
        sqlite_where=sa.text("duplicate_of IS NULL"),
        postgresql_where=sa.text("duplicate_of IS NULL"),
    )
    op.create_table(
        "rejected_row",
        sa.Column("source_file_id", BigId, sa.ForeignKey("source_file.id"), primary_key=True),
        sa.Column("row_number", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("raw", sa.Text, nullable=False),
    )
    op.create_table(
        "rejection",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("source_file_id", BigId, sa.ForeignKey("source_file.id"), nullable=False),
        sa.Column("row_number", sa.Integer, nullable=False),
        sa.Column("field", sa.Text, nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("value", sa.Text),
    )
    op.create_index(
        "ix_rejection_source_file_id_row_number", "rejection", ["source_file_id", "row_number"]
    )
    op.create_table(
        "penalty_version",
        *version_columns(),
        *(sa.Column(name, sa.Text) for name in PENALTY_TEXT_BEFORE),
        sa.Column("fine_amount", Amount()),
        sa.Column("confiscation_amount", Amount()),
        sa.Column("licence_name_no", sa.Text),
        sa.Column("decision_date", sa.Date),
        sa.Column("valid_until", sa.Date),
        sa.Column("publicity_until", sa.Date),
        *(sa.Column(name, sa.Text) for name in PENALTY_TEXT_AFTER),
    )
    key = ["authority_uscc", "decision_no"]
    op.create_index(
        "uq_penalty_version_key_version", "penalty_version", [*key, "version"], unique=True
    )
    op.create_index("ix_penalty_version_key_valid_to", "penalty_version", [*key, "valid_to"])
    op.create_index("ix_penalty_version_source_file_id", "penalty_version", ["source_file_id"])


def downgrade() -> None:
    op.drop_table("penalty_version")
    op.drop_table("rejection")
    op.drop_table("rejected_row")
    op.drop_index("uq_source_file_sha256_dataset", table_name="source_file")
    op.drop_table("source_file")
