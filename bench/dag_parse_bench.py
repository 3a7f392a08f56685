"""Measure how long the DAG folder takes to parse, and watch that parsing touches nothing.

What it does, in a fresh process (this one), the way Airflow's DAG processor parses files:

1. points Airflow at a throw-away AIRFLOW_HOME and creditpipe at places that must not be used:
   a store on an unreachable address (CREDITPIPE_DB_URL=…@192.0.2.1, TEST-NET-1), a home folder
   that does not exist, an Airflow Connection id that is not defined;
2. imports Airflow (timed on its own: the DAG processor pays it once, not per file);
3. parses `dags/` with `BundleDagBag` (what the DAG processor and the task runner use) while
   Python audit hooks (PEP 578) record every file opened, folder listed, socket connected,
   SQLite database opened and process started, and wrappers record calls to
   `sqlalchemy.create_engine`, Airflow `Connection.get` / `Variable.get` and the
   `etl.settings` functions;
4. reports the parse time (the first parse, cold; then the median of `--repeat` more) and
   anything parsing did that it should not: touched files other than Python modules, the DAG
   folder and time-zone data; any network, database or settings access; heavy modules
   (pandas, pyarrow, Great Expectations, the etl pipeline) imported at parse time.

Target (issue #7): the whole folder parses in under 2 s. Exit status: 0 clean and under target,
1 over target or something touched, 2 import errors.

Usage: .venv/bin/python bench/dag_parse_bench.py [--dags DIR] [--repeat N] [--json]
`tests/dags/test_dagbag.py` runs it with `--json` and asserts on the result.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 2.0
UNREACHABLE_DB = "postgresql+psycopg://creditpipe:secret@192.0.2.1:5432/creditpipe"
# Packages that must not be imported while parsing (their import alone takes seconds); any etl
# module but `etl.settings` (which the watch imports itself) counts too.
HEAVY = ("pandas", "pyarrow", "great_expectations", "numpy", "etl")
WATCHED_EVENTS = {
    "open",
    "os.listdir",
    "os.scandir",
    "socket.connect",
    "socket.getaddrinfo",
    "sqlite3.connect",
    "subprocess.Popen",
    "os.system",
    "os.exec",
    "os.posix_spawn",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dags", type=Path, default=ROOT / "dags")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.json:  # Airflow logs to stdout: keep it for the JSON, send the logs to stderr
        saved = os.dup(1)
        os.dup2(2, 1)
        try:
            result = measure(args.dags.resolve(), args.repeat)
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        result = measure(args.dags.resolve(), args.repeat)
    if not args.json:
        report(result)
    if result["import_errors"]:
        return 2
    clean = not (result["touched"] or result["calls"] or result["heavy_modules"])
    return 0 if clean and result["parse_s"] < TARGET_S else 1


def measure(dags: Path, repeat: int) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="creditpipe-parse-"))
    try:
        return _measure(dags, repeat, scratch)
    finally:  # every test run left one behind (Airflow's logs folder)
        shutil.rmtree(scratch, ignore_errors=True)


def _measure(dags: Path, repeat: int, scratch: Path) -> dict[str, Any]:
    os.environ.update(
        {
            "AIRFLOW_HOME": str(scratch / "airflow"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{scratch / 'airflow' / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "CREDITPIPE_HOME": str(scratch / "no-such-home"),
            "CREDITPIPE_DB_URL": UNREACHABLE_DB,
            "CREDITPIPE_DB_CONN_ID": "creditpipe_store_not_defined",
        }
    )
    started = time.perf_counter()
    from airflow.dag_processing.dagbag import BundleDagBag

    airflow_import_s = time.perf_counter() - started
    watch = _Watch(dags)
    with watch:
        modules_before = set(sys.modules)  # after the watch's own imports (etl.settings)
        started = time.perf_counter()
        bag = BundleDagBag(dags, bundle_path=dags, bundle_name="dags-folder")
        parse_s = time.perf_counter() - started
    heavy = sorted(
        {m if m.startswith("etl") else m.split(".")[0] for m in set(sys.modules) - modules_before}
        & ({*HEAVY} | {m for m in sys.modules if m.startswith("etl.")})
    )
    warm = []
    for _ in range(repeat):
        started = time.perf_counter()
        BundleDagBag(dags, bundle_path=dags, bundle_name="dags-folder")
        warm.append(time.perf_counter() - started)
    return {
        "dags_folder": str(dags),
        "files": sorted(Path(f).name for f in bag.file_last_changed),
        "dag_ids": sorted(bag.dag_ids),
        "import_errors": dict(bag.import_errors),
        "airflow_import_s": round(airflow_import_s, 3),
        "parse_s": round(parse_s, 3),
        "warm_parse_s": round(statistics.median(warm), 3) if warm else None,
        "target_s": TARGET_S,
        "schedules": {d.dag_id: _schedule(d) for d in bag.dags.values()},
        "touched": watch.touched,
        "calls": watch.calls,
        "heavy_modules": heavy,
    }


def _schedule(dag: Any) -> str:
    timetable = dag.timetable
    inner = getattr(timetable, "timetable", timetable)
    return str(getattr(inner, "expression", None) or getattr(inner, "summary", ""))


class _Watch:
    """Audit hooks and wrappers that record what parsing does (only while active)."""

    def __init__(self, dags: Path) -> None:
        self.dags = dags
        self.active = False
        self.touched: list[str] = []
        self.calls: list[str] = []
        self._allowed_dirs = [Path(p).resolve() for p in sys.path if p and Path(p).is_dir()]
        self._restore: list[tuple[Any, str, Any]] = []
        sys.addaudithook(self._audit)  # cannot be removed: it checks `active`

    def __enter__(self) -> _Watch:
        import sqlalchemy
        from airflow.sdk import Connection, Variable

        from etl import settings

        self._wrap(sqlalchemy, "create_engine", "sqlalchemy.create_engine")
        self._wrap(Connection, "get", "airflow Connection.get")
        self._wrap(Variable, "get", "airflow Variable.get")
        for name in ("home", "db_url", "schemas_dir", "offices_path", "expectations_dir"):
            if hasattr(settings, name):
                self._wrap(settings, name, f"etl.settings.{name}")
        self.active = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.active = False
        for owner, name, original in self._restore:
            setattr(owner, name, original)

    def _wrap(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)
        self._restore.append((owner, name, original))

        def recorder(*args: Any, **kwargs: Any) -> Any:
            if self.active:
                self.calls.append(label)
            return original(*args, **kwargs)

        setattr(owner, name, recorder)

    def _audit(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active or event not in WATCHED_EVENTS:
            return
        if event in ("open", "os.listdir", "os.scandir"):
            target = args[0] if args else None
            if target is None or isinstance(target, int) or self._allowed(target):
                return
            self.touched.append(f"{event} {os.fsdecode(target)}")
        else:
            self.touched.append(f"{event} {args[:2]!r}")

    def _allowed(self, target: Any) -> bool:
        """Python modules being imported, the DAG folder itself, time-zone data."""
        path = Path(os.fsdecode(target)).resolve()
        if path == self.dags or self.dags in path.parents:
            return True
        if "zoneinfo" in path.parts or "tzdata" in path.parts:
            return True
        if path.suffix in (".py", ".pyc", ".so", ".pth"):
            return any(d == path or d in path.parents for d in self._allowed_dirs)
        return path in self._allowed_dirs or (path / "__init__.py").exists()


def report(result: dict[str, Any]) -> None:
    print(f"DAG folder     {result['dags_folder']}")
    print(f"files          {', '.join(result['files'])}")
    print(f"DAGs           {', '.join(result['dag_ids'])}")
    print(f"import Airflow {result['airflow_import_s']:.3f} s (once per DAG processor)")
    verdict = "PASS" if result["parse_s"] < result["target_s"] else "FAIL"
    print(
        f"parse folder   {result['parse_s']:.3f} s cold, {result['warm_parse_s']} s warm "
        f"(median) — target < {result['target_s']} s: {verdict}"
    )
    for label in ("import_errors", "touched", "calls", "heavy_modules"):
        print(f"{label:<14} {result[label] or 'none'}")


if __name__ == "__main__":
    sys.exit(main())
