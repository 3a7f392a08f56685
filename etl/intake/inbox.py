"""The inbox: what offices dropped, where it may go, and archiving it first.

Layout: `$CREDITPIPE_HOME/inbox/<office_id>/<dataset>/<file>`. Every entry is accounted for:
a file in the right place is a `Drop`; anything else is a `Refusal` (never processed, reported
on every run until someone moves it) or, for editors' temporary files, `Ignored` with a reason.

Names in the inbox are untrusted. Symlinks are never followed, names must be one plain path
component, and a drop is re-validated when it arrives as text (an Airflow mapped task gets the
relative path `office/dataset/file`), so no name can reach outside the inbox.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path

from etl.checks.codes import message
from etl.offices import Registry

# Partly written or editor-owned files: left alone until they become real files.
_TEMPORARY = re.compile(r"^(\..*|~\$.*|.*\.(tmp|part|partial|crdownload|swp))$", re.IGNORECASE)
_SUFFIX = re.compile(r"^\.[a-z0-9]{1,8}$")
_COPY_BLOCK = 1 << 20


@dataclass(frozen=True)
class Drop:
    """A file in the right place, ready to be processed."""

    path: Path
    office: str
    dataset: str
    name: str

    @property
    def relpath(self) -> str:
        """`office/dataset/file`: how a drop is handed to another process (an Airflow task)."""
        return f"{self.office}/{self.dataset}/{self.name}"


@dataclass(frozen=True)
class Refusal:
    """An inbox entry that will not be processed, and why (a stable code, Chinese message)."""

    path: Path
    name: str
    code: str
    message: str
    office: str | None = None  # known when the receipt can go to outbox/<office>/
    dataset: str | None = None


@dataclass(frozen=True)
class Ignored:
    path: Path
    reason: str


@dataclass
class Listing:
    drops: list[Drop]
    refusals: list[Refusal]
    ignored: list[Ignored]


@dataclass(frozen=True)
class Archived:
    """A drop copied into the content-addressed archive."""

    path: Path
    sha256: str
    size: int
    fingerprint: tuple[int, int, int]  # inode, size, mtime of the inbox file when copied


def display_name(name: str) -> str:
    """A name safe to print and to put in JSON: undecodable bytes and control characters shown."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return "".join(c if c.isprintable() else "?" for c in text)


def inbox_dir(home: Path) -> Path:
    return home / "inbox"


def list_inbox(home: Path, registry: Registry, datasets: list[str]) -> Listing:
    """Classify every entry under `inbox/`, in a stable order (office, dataset, name)."""
    listing = Listing([], [], [])
    root = inbox_dir(home)
    root.mkdir(parents=True, exist_ok=True)
    for top in _entries(root):
        if top.is_symlink() or not top.is_dir():
            listing.refusals.append(_refuse(top, "E_INBOX_LAYOUT", path=_rel(root, top)))
            continue
        office = registry.get(top.name)
        for second in _entries(top):
            if office is None:
                for path in _files_below(second):
                    listing.refusals.append(
                        _refuse(path, "E_OFFICE_UNKNOWN", office=display_name(top.name))
                    )
                continue
            if second.is_symlink():
                listing.refusals.append(_refuse(second, "E_INBOX_SYMLINK", office=office.id))
            elif not second.is_dir():
                listing.refusals.append(
                    _refuse(second, "E_INBOX_LAYOUT", office=office.id, path=_rel(root, second))
                )
            else:
                for entry in _entries(second):
                    _classify(listing, root, entry, office.id, second.name, registry, datasets)
    listing.drops.sort(key=_received_order)
    return listing


def _received_order(drop: Drop) -> tuple[int, str]:
    """Older drops first (a correction dropped after its original is applied after it)."""
    try:
        return drop.path.lstat().st_mtime_ns, drop.relpath
    except FileNotFoundError:
        return 0, drop.relpath


def _classify(
    listing: Listing,
    root: Path,
    entry: Path,
    office_id: str,
    dataset: str,
    registry: Registry,
    datasets: list[str],
) -> None:
    office = registry.get(office_id)
    assert office is not None
    if entry.is_symlink():
        listing.refusals.append(
            _refuse(entry, "E_INBOX_SYMLINK", office=office_id, dataset=display_name(dataset))
        )
    elif not entry.is_file():
        listing.refusals.append(
            _refuse(entry, "E_INBOX_LAYOUT", office=office_id, path=_rel(root, entry))
        )
    elif dataset not in datasets:
        listing.refusals.append(
            _refuse(
                entry,
                "E_DATASET_UNKNOWN",
                office=office_id,
                dataset=display_name(dataset),
                known="、".join(datasets),
            )
        )
    elif dataset not in office.datasets:
        listing.refusals.append(
            _refuse(
                entry,
                "E_DATASET_NOT_ALLOWED",
                office=office_id,
                dataset=display_name(dataset),
                allowed="、".join(office.datasets),
            )
        )
    elif _TEMPORARY.match(entry.name):
        listing.ignored.append(Ignored(entry, "临时文件或隐藏文件（写入完成后才会处理）"))
    else:
        listing.drops.append(Drop(entry, office_id, dataset, entry.name))


def resolve_drop(
    home: Path, relpath: str, registry: Registry, datasets: list[str]
) -> Drop | Refusal | Ignored:
    """Re-validate `office/dataset/file` handed over as text; never leaves the inbox."""
    root = inbox_dir(home)
    parts = relpath.split("/")
    if len(parts) != 3 or any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
        return _refuse(root, "E_INBOX_LAYOUT", path=display_name(relpath))
    office_id, dataset, name = parts
    if registry.get(office_id) is None:
        return _refuse(root / relpath, "E_OFFICE_UNKNOWN", office=display_name(office_id))
    for folder in (root / office_id, root / office_id / dataset):
        if folder.is_symlink():
            return _refuse(folder, "E_INBOX_SYMLINK", office=office_id)
    listing = Listing([], [], [])
    _classify(listing, root, root / office_id / dataset / name, office_id, dataset, registry,
              datasets)  # fmt: skip
    found: list[Drop | Refusal | Ignored] = [*listing.drops, *listing.refusals, *listing.ignored]
    return found[0]


def archive(drop: Drop, home: Path) -> Archived:
    """Copy the drop to `archive/<sha256[:2]>/<sha256><ext>` while hashing it, atomically.

    The inbox file is opened without following symlinks; the copy is written under a temporary
    name and renamed into place, so the archive never holds a partial file.
    """
    folder = home / "archive"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".incoming-{uuid.uuid4().hex}"
    digest = hashlib.sha256()
    # No symlink at the last step, and no waiting forever on a pipe swapped in for the file.
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(drop.path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise IsADirectoryError(drop.path)
        with os.fdopen(fd, "rb", closefd=False) as src, open(tmp, "wb") as dst:
            while block := src.read(_COPY_BLOCK):
                digest.update(block)
                dst.write(block)
            dst.flush()
            os.fsync(dst.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    sha = digest.hexdigest()
    suffix = Path(drop.name).suffix.lower()
    target = folder / sha[:2] / f"{sha}{suffix if _SUFFIX.match(suffix) else ''}"
    target.parent.mkdir(exist_ok=True)
    if target.exists():
        tmp.unlink()
    else:
        os.replace(tmp, target)
    return Archived(target, sha, info.st_size, (info.st_ino, info.st_size, info.st_mtime_ns))


def remove_processed(drop: Drop, archived: Archived) -> bool:
    """Take a processed drop out of the inbox, unless it was replaced meanwhile (then it stays
    and is picked up as a new drop by the next run). True when removed."""
    try:
        info = os.lstat(drop.path)
    except FileNotFoundError:
        return True
    if (info.st_ino, info.st_size, info.st_mtime_ns) != archived.fingerprint:
        return False
    drop.path.unlink()
    return True


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(Path(e.path) for e in os.scandir(folder))
    except (NotADirectoryError, FileNotFoundError):
        return []


def _files_below(path: Path) -> list[Path]:
    if path.is_symlink() or not path.is_dir():
        return [path]
    return [p for child in _entries(path) for p in _files_below(child)]


def _rel(root: Path, path: Path) -> str:
    return display_name(str(path.relative_to(root)))


def _refuse(entry: Path, code: str, **params: str) -> Refusal:
    office = params.get("office")
    return Refusal(
        path=entry,
        name=display_name(entry.name),
        code=code,
        message=message(code, **{"name": display_name(entry.name), **params}),
        office=office if code != "E_OFFICE_UNKNOWN" else None,
        dataset=params.get("dataset"),
    )
