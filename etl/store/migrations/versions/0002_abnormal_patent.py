"""Versioned abnormal-patent records (abnormal_patent.v1).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# abnormal_patent.v1 fields, in contract order (tests/store/test_migrations.py checks them).
TEXT_BEFORE = [
    "application_no", "invention_title", "applicant_name", "applicant_type", "applicant_uscc",
    "applicant_id_number", "agency_name", "agency_code", "abnormal_types", "notice_batch",
]  # fmt: skip
TEXT_AFTER = ["district", "handling_status"]
TEXT_LAST = ["source_unit", "source_uscc", "remarks"]


def upgrade() -> None:
    initial = importlib.import_module("etl.store.migrations.versions.0001_initial")
    op.create_table(
        "abnormal_patent_version",
        *initial.version_columns(),
        *(sa.Column(name, sa.Text) for name in TEXT_BEFORE),
        sa.Column("notice_date", sa.Date),
        *(sa.Column(name, sa.Text) for name in TEXT_AFTER),
        sa.Column("handling_date", sa.Date),
        *(sa.Column(name, sa.Text) for name in TEXT_LAST),
    )
    key = ["application_no", "notice_batch"]
    table = "abnormal_patent_version"
    op.create_index(f"uq_{table}_key_version", table, [*key, "version"], unique=True)
    op.create_index(f"ix_{table}_key_valid_to", table, [*key, "valid_to"])
    op.create_index(f"ix_{table}_source_file_id", table, ["source_file_id"])


def downgrade() -> None:
    op.drop_table("abnormal_patent_version")
