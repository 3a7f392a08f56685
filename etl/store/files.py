"""The register of dropped files (`source_file`): one row per drop, keyed by content.

The first drop of some content owns its sha256 (a unique index over rows that are not
duplicates). A later drop of the same content gets its own row pointing at the first
(`duplicate_of`) when that one was processed; when the first one failed, the later drop
retries it instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from etl.store.schema import DUPLICATE, FAILED, PROCESSED, RECEIVED, source_file


def utcnow() -> datetime:
    """Now, as the naive UTC the store keeps."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Registration:
    id: int
    duplicate_of: Row[Any] | None = None  # the processed registration this drop repeats


def register(
    conn: Connection,
    *,
    sha256: str,
    office_id: str,
    dataset: str,
    name: str,
    size: int,
    archive_path: str,
) -> Registration:
    """Register a drop; says whether it repeats content already processed for this dataset.

    A registration left `received` or `failed` is claimed for a retry with a conditional
    update: when another worker is loading it at this moment, that update waits for its
    transaction (it holds the row, see `lock_for_load`) and then finds it processed.
    """
    now = utcnow()
    values = {
        "sha256": sha256,
        "office_id": office_id,
        "dataset": dataset,
        "original_name": name,
        "size": size,
        "archive_path": archive_path,
        "received_at": now,
    }
    for _ in range(2):
        first = conn.execute(
            sa.select(source_file).where(
                source_file.c.sha256 == sha256,
                source_file.c.dataset == dataset,
                source_file.c.duplicate_of.is_(None),
            )
        ).first()
        if first is None:
            new_id = conn.execute(
                source_file.insert().values(**values, status=RECEIVED).returning(source_file.c.id)
            ).scalar_one()
            return Registration(new_id)
        if first.status in PROCESSED:
            new_id = conn.execute(
                source_file.insert()
                .values(**values, status=DUPLICATE, duplicate_of=first.id, finished_at=now)
                .returning(source_file.c.id)
            ).scalar_one()
            return Registration(new_id, duplicate_of=first)
        claimed = conn.execute(
            source_file.update()
            .where(source_file.c.id == first.id, source_file.c.status.in_([RECEIVED, FAILED]))
            .values(
                status=RECEIVED,
                attempts=source_file.c.attempts + 1,
                original_name=name,
                office_id=office_id,
                error_code=None,
                error_message=None,
            )
        ).rowcount
        if claimed:
            return Registration(first.id)
    raise RuntimeError(f"could not register {sha256}: its registration keeps changing")


def lock_for_load(conn: Connection, file_id: int) -> str:
    """Hold the registration for the load transaction (PostgreSQL row lock; SQLite's write lock
    is already held) and return its status: a processed one must not be loaded again."""
    return str(
        conn.execute(
            sa.select(source_file.c.status).where(source_file.c.id == file_id).with_for_update()
        ).scalar_one()
    )


def finish(conn: Connection, file_id: int, status: str, **values: Any) -> None:
    """Record how processing ended (counts, status, error)."""
    conn.execute(
        source_file.update()
        .where(source_file.c.id == file_id)
        .values(status=status, finished_at=utcnow(), **values)
    )


def mark_failed(conn: Connection, file_id: int, code: str, text: str) -> None:
    finish(conn, file_id, FAILED, error_code=code, error_message=text[:4000])
