"""`make run` through Airflow: the real DAGs, end to end, on a throw-away metadata database.

    .venv/bin/python scripts/run_dags.py [--as-of YYYY-MM-DD] [--airflow-home DIR] [--verbose]

Creates a fresh Airflow home with a SQLite metadata database (default `.airflow/run/`, removed
and recreated on every run), parses `dags/` the way the DAG processor does, and runs with
`DAG.test()` (every task in this process, no scheduler):

    penalty_intake, abnormal_patent_intake → credit_publish → credit_reports

for the business date (default: today in Asia/Shanghai), passed to every run as its `as_of`
parameter; `credit_reports` reports the month before that date. The creditpipe side is the
usual configuration: `CREDITPIPE_HOME` (inbox, outbox, publish, the SQLite store),
`CREDITPIPE_DB_URL`. Prints what happened: files, rows accepted and rejected, flags, the
published extracts and the receipts. Exit status 0 when every DAG run succeeded, 1 otherwise,
2 when the DAG folder does not parse.
"""

# ruff: noqa: T201  (a command-line script: printing is its output)
from __future__ import annotations

import argparse
import os
import shutil
import sys
import warnings
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
DAGS = ROOT / "dags"
INTAKE = ("penalty_intake", "abnormal_patent_intake")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--as-of", type=date.fromisoformat, default=None)
    parser.add_argument("--airflow-home", type=Path, default=ROOT / ".airflow" / "run")
    parser.add_argument("--verbose", action="store_true", help="show every task's log")
    args = parser.parse_args()
    as_of: date = args.as_of or datetime.now(ZoneInfo("Asia/Shanghai")).date()
    prepare_airflow(args.airflow_home.resolve(), verbose=args.verbose)

    from airflow.dag_processing.dagbag import BundleDagBag
    from airflow.utils import db as airflow_db

    if not args.verbose:  # Airflow's own deprecation notices (pathspec, starlette), not ours
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="airflow.*")
        warnings.filterwarnings("ignore", message=".*GitWildMatchPattern.*")
        warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    airflow_db.initdb()
    bag = BundleDagBag(DAGS, bundle_path=DAGS, bundle_name="dags-folder")
    if bag.import_errors:
        for path, error in bag.import_errors.items():
            print(f"DAG file {path} does not parse:\n{error}", file=sys.stderr)
        return 2

    from etl.orchestrate import previous_month

    conf: dict[str, Any] = {"as_of": as_of.isoformat()}
    plan = [(dag_id, conf) for dag_id in (*INTAKE, "credit_publish")]
    plan.append(("credit_reports", {"month": previous_month(as_of).strftime("%Y-%m")}))
    results = {}
    for dag_id, run_conf in plan:
        print(f"running {dag_id} …", flush=True)
        run = bag.dags[dag_id].test(logical_date=None, run_conf=run_conf)
        results[dag_id] = collect(run)
    print_summary(as_of, args.airflow_home, results)
    return 0 if all(r["state"] == "success" for r in results.values()) else 1


def prepare_airflow(home: Path, *, verbose: bool) -> None:
    """A fresh AIRFLOW_HOME; must run before Airflow is imported (it reads its config then)."""
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO" if verbose else "WARNING",
        }
    )


def collect(run: Any) -> dict[str, Any]:
    """The run's state, its task instances and the values the summary needs (XComs, events)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        tis = [(ti.task_id, ti.map_index, str(ti.state)) for ti in run.get_task_instances()]
        values: dict[tuple[str, int], Any] = {}
        query = XComModel.get_many(run_id=run.run_id, dag_ids=run.dag_id, key="return_value")
        rows: list[Any] = list(session.scalars(query))
        for row in rows:
            values[(row.task_id, row.map_index)] = XComModel.deserialize_value(row)
        events = session.execute(
            select(AssetModel.uri, AssetEvent.extra)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetEvent.source_run_id == run.run_id)
        ).all()
    return {
        "state": str(run.state),
        "tasks": tis,
        "values": values,
        "events": [(uri, extra) for uri, extra in events],
    }


def print_summary(as_of: date, airflow_home: Path, results: dict[str, Any]) -> None:
    from etl import settings
    from etl.store import db

    home = settings.home().resolve()
    print(f"\nBusiness date {as_of} (Asia/Shanghai) · Airflow home {airflow_home}")
    print("DAG runs (DAG.test):")
    for dag_id, result in results.items():
        mapped = sum(1 for task_id, index, _ in result["tasks"] if index >= 0)
        extra = f", {mapped} mapped file task(s)" if dag_id in INTAKE else ""
        print(f"  {dag_id:<24} {result['state']}{extra}")
        for task_id, index, state in result["tasks"]:
            if state not in ("success", "skipped"):
                print(f"    {task_id}[{index}] {state}")

    files = [
        value
        for dag_id in INTAKE
        for (task_id, _), value in sorted(results[dag_id]["values"].items())
        if task_id == "process_file"
    ]
    print(f"\nFiles ({len(files)}):")
    for f in files:
        print(
            f"  {f['path']}: {f['status']} · read {f['rows_read']}, accepted {f['accepted']}, "
            f"rejected {f['rejected']} · store +{f['inserted']} new, {f['corrected']} corrected, "
            f"{f['unchanged']} unchanged, {f['withdrawn']} withdrawn"
        )
    totals = {k: sum(f[k] for f in files) for k in ("rows_read", "accepted", "rejected")}
    print(
        f"Rows: {totals['rows_read']} read, {totals['accepted']} accepted, "
        f"{totals['rejected']} rejected · store {db.describe(db.make_engine())}"
    )

    publication = results["credit_publish"]["values"].get(("publish", -1)) or {}
    flags = publication.get("flags") or {}
    if flags:
        states = ", ".join(f"{k} {v}" for k, v in sorted(flags["by_state"].items())) or "none"
        print(
            f"Flags as of {flags['as_of']}: the rules yield {flags['flags']} "
            f"({flags['new']} new, {flags['changed']} changed, {flags['withdrawn']} withdrawn); "
            f"registry: {states}  (creditpipe flags list)"
        )
    print(f"\nPublished ({publication.get('root', home / 'publish')}):")
    for item in publication.get("datasets", []):
        delta = " ".join(f"{k} {v}" for k, v in (item.get("delta") or {}).items())
        print(
            f"  {item['dataset']:<19} {item['result']:<9} {item['rows']:>5} row(s) · delta {delta}"
        )
        print(f"  {'':<19} {item['manifest']}")
    events = [uri for result in results.values() for uri, _ in result["events"]]
    print(f"Asset events: {', '.join(events) or 'none (nothing changed)'}")

    report = results["credit_reports"]["values"].get(("withdrawal_rate_report", -1))
    if report:
        print(f"Withdrawal-rate report {report['from']} … {report['to']}: {report['html']}")
    receipts = sorted(str(p) for p in (home / "outbox").glob("*/*.receipt.html"))
    print(f"\nReceipts ({len(receipts)}, CSV / HTML / JSON): {home / 'outbox'}/<office>/")
    for path in receipts:
        print(f"  {path}")
    print(f"Raw files, content-addressed: {home / 'archive'}/")


if __name__ == "__main__":
    sys.exit(main())
