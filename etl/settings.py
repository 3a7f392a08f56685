"""Where things live. Every environment variable creditpipe reads is read here, and only here.

| variable             | default                                   | meaning                              |
|----------------------|-------------------------------------------|--------------------------------------|
| CREDITPIPE_HOME      | ./data                                    | inbox/, archive/, outbox/, publish/  |
| CREDITPIPE_SCHEMAS   | <project>/schemas                         | contracts, offices registry, policy  |
| CREDITPIPE_OFFICES   | $CREDITPIPE_SCHEMAS/offices.yaml          | registry of offices allowed to drop  |
| CREDITPIPE_CHUNK_ROWS| 50000                                     | rows per processing chunk            |
| CREDITPIPE_DB_URL    | sqlite:///$CREDITPIPE_HOME/creditpipe.db  | the store (postgresql+psycopg://…)   |
| CREDITPIPE_PUBLISH_URL | $CREDITPIPE_HOME/publish                | where extracts go (folder or fsspec) |
| CREDITPIPE_PUBLICITY_PROFILE | the policy file's default (samr-45) | publicity-window profile        |
| CREDITPIPE_QUALITY   | auto                                      | where GX runs: auto, process, inline |
"""

from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from etl.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHANGHAI = ZoneInfo("Asia/Shanghai")
# 50,000: with Great Expectations in its own process, 100,000-row chunks took a 1,000,000-row
# check over 1 GB (both processes hold a chunk and its copies); 50,000 is as fast.
DEFAULT_CHUNK_ROWS = 50_000


def home() -> Path:
    """The pipeline's home folder (CREDITPIPE_HOME, default ./data)."""
    return Path(os.environ.get("CREDITPIPE_HOME", "data")).expanduser()


def schemas_dir() -> Path:
    """Folder holding the data contracts, the offices registry and the policy files."""
    return Path(os.environ.get("CREDITPIPE_SCHEMAS", PROJECT_ROOT / "schemas")).expanduser()


def expectations_dir() -> Path:
    """Folder holding the Great Expectations suites (one JSON per dataset)."""
    return Path(
        os.environ.get("CREDITPIPE_EXPECTATIONS", PROJECT_ROOT / "expectations")
    ).expanduser()


def offices_path() -> Path:
    """The offices registry (CREDITPIPE_OFFICES overrides the bundled one)."""
    override = os.environ.get("CREDITPIPE_OFFICES")
    return Path(override).expanduser() if override else schemas_dir() / "offices.yaml"


def db_url() -> str:
    """The store's SQLAlchemy URL (CREDITPIPE_DB_URL, default SQLite in the home folder)."""
    url = os.environ.get("CREDITPIPE_DB_URL", "").strip()
    return url or f"sqlite:///{(home() / 'creditpipe.db').resolve()}"


def publish_url() -> str:
    """Where extracts are published: a folder, `file://…`, or any fsspec URL (`s3://…`).
    Empty (the default) means `<home>/publish`."""
    return os.environ.get("CREDITPIPE_PUBLISH_URL", "").strip()


def publicity_profile() -> str | None:
    """The publicity-window profile (CREDITPIPE_PUBLICITY_PROFILE; None: the file's default)."""
    return os.environ.get("CREDITPIPE_PUBLICITY_PROFILE", "").strip() or None


def chunk_rows() -> int:
    """Rows per processing chunk; memory use is proportional to this, not to the file."""
    value = os.environ.get("CREDITPIPE_CHUNK_ROWS", "")
    return int(value) if value.strip().isdigit() and int(value) > 0 else DEFAULT_CHUNK_ROWS


QUALITY_MODES = ("auto", "process", "inline")


def quality_mode() -> str:
    """Where Great Expectations checks the accepted batches (CREDITPIPE_QUALITY): `process`, a
    second process beside the row rules, `inline`, in the checking process, or `auto` (the
    default): a second process for files large enough to repay starting one, checked or loaded
    (`etl.quality.quality_run`)."""
    value = os.environ.get("CREDITPIPE_QUALITY", "").strip().lower() or "auto"
    if value not in QUALITY_MODES:
        raise ConfigError(f"CREDITPIPE_QUALITY={value!r}：可选值为 {'、'.join(QUALITY_MODES)}")
    return value


def today_shanghai() -> date:
    """Today's calendar date in Asia/Shanghai: all business dates are Shanghai dates."""
    return datetime.now(SHANGHAI).date()
