"""Publication to the credit platform: publicity windows, masking, extracts, deltas, manifests.

`policy` loads `schemas/policy/publicity.v1.yaml` (profiles `samr-45`, `ndrc-2026`); `windows`
says which penalties are public on a date and until when; `masking` prepares a frame for the
public extracts; `extract` reads what is published for a date; `writer` writes the files and
commits them atomically. `publish` ties them together for `creditpipe publish`, the end of
`creditpipe run` and the Airflow publish DAG.

Targets: `publish/<dataset>/<D>/` (masked, public) and `restricted/<dataset>/<D>/` (the unmasked
twin, always a local folder under the home). `CREDITPIPE_PUBLISH_URL` may move the public root to
another folder or to an object store (any fsspec URL): files are then written locally first and
uploaded under the dated prefix, `manifest.json` last, and the `LATEST` object after that.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection, Engine

from etl import settings
from etl.checks.codes import message
from etl.errors import CreditpipeError, PublishError
from etl.flags.engine import Evaluation, SpilledEvaluation
from etl.memory import release_memory
from etl.publish import writer
from etl.publish.extract import DATASETS, Extract, extract
from etl.publish.masking import redact_personal_ids
from etl.publish.policy import PublicityProfile, load_publicity_policy
from etl.store import db

log = logging.getLogger(__name__)
PUBLIC, RESTRICTED = "public", "restricted"
# Rows per chunk when publishing. Fixed, not CREDITPIPE_CHUNK_ROWS: the chunks become the Parquet
# row groups, so a different size would change the bytes of a republished date. Published rows
# are wide (all contract fields, public and restricted copies, text and hashes at once): 25,000
# keeps 1,000,000 records near 650 MB (100,000 took 1.25 GB; bench/flags_publish_bench.py).
PUBLISH_CHUNK_ROWS = 25_000


@dataclass
class PublishSummary:
    as_of: date
    profile: str
    root: str
    datasets: list[writer.Written] = field(default_factory=list)
    restricted: list[writer.Written] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "profile": self.profile,
            "root": self.root,
            "datasets": [w.to_json() for w in self.datasets],
            "restricted": [w.to_json() for w in self.restricted],
        }


def publish(
    engine: Engine,
    as_of: date,
    *,
    home: Path | None = None,
    url: str | None = None,
    profile: str | None = None,
    datasets: tuple[str, ...] = DATASETS,
    chunk_rows: int | None = None,
    evaluation: Evaluation | SpilledEvaluation | None = None,
) -> PublishSummary:
    """Publish every dataset for `as_of`: snapshot, delta, descriptors, atomic commit.
    `evaluation`: the flag evaluation of `as_of` just made (`evaluate_flags(...).evaluation`),
    so the flags are not evaluated twice; evaluated here when absent."""
    home = home or settings.home()
    target = url or settings.publish_url() or str(home / "publish")
    local, remote = _split_target(target, home)
    policy = load_publicity_policy(profile or settings.publicity_profile())
    chunk = chunk_rows or PUBLISH_CHUNK_ROWS
    summary = PublishSummary(as_of, policy.name, target)
    with db.reading(engine) as conn:
        for dataset in datasets:
            public, restricted = _publish_one(
                conn, dataset, as_of, policy, local / dataset, home / "restricted" / dataset, chunk,
                evaluation,
            )  # fmt: skip
            if remote is not None:
                public.remote = _upload(public, remote)
            summary.datasets.append(public)
            summary.restricted.append(restricted)
            release_memory()  # each dataset's peak on its own (etl/memory.py)
    return summary


def _split_target(target: str, home: Path) -> tuple[Path, str | None]:
    """A local root, and the remote URL when the target is not a local folder."""
    if target.startswith("file://"):
        return Path(target.removeprefix("file://")), None
    if "://" not in target:
        return Path(target).expanduser(), None
    return home / "publish", target


def _publish_one(
    conn: Connection,
    dataset: str,
    day: date,
    policy: PublicityProfile,
    public_root: Path,
    restricted_root: Path,
    chunk: int,
    evaluation: Evaluation | SpilledEvaluation | None = None,
) -> tuple[writer.Written, writer.Written]:
    with writer.dataset_lock(public_root), writer.dataset_lock(restricted_root):
        for root in (public_root, restricted_root):
            for stale in writer.clean_stale(root):
                log.warning("清理上次中断留下的临时目录 %s", stale)
        ext = extract(conn, dataset, day, policy, chunk, evaluation)
        tmp = {
            PUBLIC: public_root / f".tmp-{day}-{os.getpid()}",
            RESTRICTED: restricted_root / f".tmp-{day}-{os.getpid()}",
        }
        for folder in tmp.values():
            folder.mkdir(parents=True)
        roots = {PUBLIC: public_root, RESTRICTED: restricted_root}
        previous = {audience: writer.previous_folder(root, day) for audience, root in roots.items()}
        columns = {PUBLIC: ext.public, RESTRICTED: ext.restricted}
        snapshots: dict[str, writer.Snapshot] = {}
        titles = {c.name: c.title for c in ext.public}
        # PostgreSQL formats the rows in its own process: the files are written behind the
        # preparing of the next chunk (1M rows: 11.3 → 10.1 s). SQLite formats them in this
        # one, and that read is already the critical path with both cores busy: writing behind
        # cost time there (8.97 → 9.20 s, means of eight interleaved runs), so it writes here.
        behind = conn.dialect.name != "sqlite"
        try:
            for audience in roots:
                snapshots[audience] = writer.Snapshot(
                    tmp[audience], dataset, columns[audience], ext.key, previous[audience], chunk,
                    behind=behind,
                )  # fmt: skip
            # Closed after a failure too: that stops the store's read-ahead thread at once.
            with contextlib.closing(ext.chunks) as chunks:
                for public_rows, restricted_rows in chunks:
                    # The restricted twin first: the public rows share most of its columns (all
                    # but the masked and redacted ones), which its snapshot has already
                    # converted.
                    shared = None
                    if len(restricted_rows):
                        shared = snapshots[RESTRICTED].write(restricted_rows)
                    if len(public_rows):
                        safe = redact_personal_ids(public_rows, day, titles)
                        snapshots[PUBLIC].write(safe, like=shared)
            written = []
            for audience, root in roots.items():
                delta = snapshots[audience].close()
                written.append(
                    _finish(
                        ext, audience, snapshots[audience].rows, delta, tmp[audience], root,
                        previous[audience], day, policy, snapshots[audience].hashes,
                    )
                )  # fmt: skip
        except BaseException as exc:
            for snapshot in snapshots.values():
                snapshot.discard()  # its thread writes no more (a snapshot closed: nothing to do)
            if not isinstance(exc, Exception):  # an exit: the folders are left as a crash would
                raise
            # An error (not a crash): leave nothing behind, say why.
            for folder in tmp.values():
                shutil.rmtree(folder, ignore_errors=True)
            if isinstance(exc, CreditpipeError):
                raise
            if isinstance(exc, ValueError):  # a value the policy cannot place
                detail = message("E_PUBLISH", dataset=dataset, as_of=day, detail=exc)
                raise PublishError(detail) from exc
            raise
        return written[0], written[1]


def _finish(
    ext: Extract,
    audience: str,
    rows: int,
    delta: dict[str, int],
    tmp: Path,
    root: Path,
    previous: Path | None,
    day: date,
    policy: PublicityProfile,
    hashes: dict[str, str] | None = None,
) -> writer.Written:
    dataset = ext.dataset
    columns = ext.public if audience == PUBLIC else ext.restricted
    counts = {
        f"{dataset}.parquet": rows,
        f"{dataset}.csv": rows,
        f"{dataset}.delta.parquet": sum(delta.values()),
        f"{dataset}.delta.csv": sum(delta.values()),
    }
    package = writer.datapackage(tmp, dataset, columns, ext.key, counts, hashes)
    writer.write_json(tmp / "datapackage.json", package)
    digest = hashlib.sha256("".join(r["hash"] for r in package["resources"]).encode()).hexdigest()
    previous_manifest = _read_manifest(previous)
    manifest = {
        "dataset": dataset,
        "audience": audience,
        "as_of": day.isoformat(),
        "version": f"{dataset}/{day.isoformat()}/{digest[:12]}",
        "previous_version": previous_manifest.get("version"),
        "previous_as_of": previous_manifest.get("as_of"),
        "rows": counts,
        "delta": delta,
        "policy_profile": policy.name,
        "policy_basis": policy.basis,
        "contract": ext.version,
        "primary_key": ext.key,
        "masked": audience == PUBLIC,
        "result": "complete",
    }
    writer.write_json(tmp / "manifest.json", manifest)
    writer.fsync_folder(tmp)
    final = root / day.isoformat()
    result = writer.commit(tmp, final)
    writer.point_latest(root, day)
    return writer.Written(dataset, day, final, rows, delta, result, manifest)


def _read_manifest(folder: Path | None) -> dict[str, Any]:
    if folder is None:
        return {}
    try:
        payload = json.loads((folder / "manifest.json").read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return payload if isinstance(payload, dict) else {}


def _upload(written: writer.Written, url: str) -> str:
    """Copy a committed folder to an object store, which has no atomic rename: under a versioned
    prefix `<dataset>/<D>/<version>/` (a new prefix per content, never overwritten with other
    bytes), data files first and `manifest.json` last; then `<dataset>/<D>/CURRENT` and, unless
    a newer date is already there, `<dataset>/LATEST` (`<D>/<version>`) are written. A consumer
    that follows LATEST or CURRENT only ever reaches a complete prefix. Returns the prefix."""
    import fsspec

    fs, base = fsspec.core.url_to_fs(url)
    dataset, day = written.dataset, written.as_of.isoformat()
    version = str(written.manifest["version"]).rsplit("/", 1)[-1]
    root = f"{base.rstrip('/')}/{dataset}"
    prefix = f"{root}/{day}/{version}"
    fs.makedirs(prefix, exist_ok=True)
    names = sorted(p.name for p in written.folder.iterdir() if p.name != "manifest.json")
    for name in [*names, "manifest.json"]:
        fs.put_file(str(written.folder / name), f"{prefix}/{name}")
    fs.pipe_file(f"{root}/{day}/CURRENT", f"{version}\n".encode())
    latest = f"{root}/LATEST"
    current = fs.cat_file(latest).decode().strip() if fs.exists(latest) else ""
    if not current or current.split("/", 1)[0] <= day:
        fs.pipe_file(latest, f"{day}/{version}\n".encode())
    return prefix
