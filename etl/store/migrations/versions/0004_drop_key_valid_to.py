"""Record tables lose their (natural key, valid_to) index.

Every version a load writes went into two B-trees led by the natural key, in the file's row
order (random in key order): `uq_*_key_version` and `ix_*_key_valid_to`. The unique one serves
every look-up the other did (the merge's open version of a key, the as-of read in key order:
its valid_to test is read from the row, which that read fetches anyway), so the second was
pure write cost: on 1,000,000 new rows it was ~1/3 of the merge's INSERT on PostgreSQL
(server CPU 13.9 → 9.2 s) and -0.8 s CPU of the SQLite merge; it also made every closing
UPDATE of `valid_to` a non-HOT update on PostgreSQL.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Record table → its natural key (0001_initial, 0002_abnormal_patent).
KEYS = {
    "penalty_version": ["authority_uscc", "decision_no"],
    "abnormal_patent_version": ["application_no", "notice_batch"],
}


def upgrade() -> None:
    for table in KEYS:
        op.drop_index(f"ix_{table}_key_valid_to", table_name=table)


def downgrade() -> None:
    for table, key in KEYS.items():
        op.create_index(f"ix_{table}_key_valid_to", table, [*key, "valid_to"])
