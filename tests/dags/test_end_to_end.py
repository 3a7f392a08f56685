"""The real DAGs, end to end, with `DAG.test()`: intake → publish on the bundled sample drops.

Airflow runs on a throw-away SQLite metadata database (tests/dags/__init__.py); the store is
SQLite or PostgreSQL (`store_url`); CREDITPIPE_HOME is the test's own folder. `DAG.test()` runs
every task in this process, so the store's clock can be pinned (`at`): the files arrive on
2026-11-21 at 10:00 Shanghai time, the business date of every run.

Then the same date is run again: rerunning every DAG changes nothing (store rows, published
bytes, asset events), and dropping the same files again loads nothing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pendulum
import pytest
import sqlalchemy as sa

from etl.flags.registry import list_flags
from etl.store import db
from tests.dags import DAGS_FOLDER
from tests.fixtures.build import SAMPLES
from tests.store_fixtures import at

pytestmark = [
    pytest.mark.slow,
    # Airflow's own dependencies' deprecation notices, raised inside Airflow: not ours to fix.
    pytest.mark.filterwarnings("ignore:.*GitWildMatchPattern.*:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*starlette.testclient.*"),
]

AS_OF = "2026-11-21"
INTAKE = {"penalty_intake": "penalty", "abnormal_patent_intake": "abnormal_patent"}
PUBLISHED = ("penalty", "abnormal_patent", "serious_dishonesty")
# The daily run at 00:00 on the 22nd (Shanghai) publishes the 21st.
DAILY_RUN = pendulum.datetime(2026, 11, 22, tz="Asia/Shanghai")


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Create the tables of the throw-away Airflow metadata database, once per session."""
    from airflow.utils import db as airflow_db

    airflow_db.initdb()


@pytest.fixture(scope="session")
def dags(airflow_db: None) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import BundleDagBag

    bag = BundleDagBag(DAGS_FOLDER, bundle_path=DAGS_FOLDER, bundle_name="dags-folder")
    assert bag.import_errors == {}
    return dict(bag.dags)


@pytest.fixture
def samples(_isolated_home: Path) -> Iterator[list[str]]:
    """Seed the inbox with samples/inbox, as `make run` does; their office/dataset/file paths."""
    inbox = _isolated_home / "inbox"
    shutil.copytree(SAMPLES, inbox, dirs_exist_ok=True)
    yield sorted(str(p.relative_to(inbox)) for p in inbox.rglob("*") if p.is_file())


def run_dag(dag: Any, **kwargs: Any) -> dict[str, Any]:
    """`dag.test()`; the run's state, task states, return values and the asset events it made."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    run = dag.test(**kwargs)
    with create_session() as session:
        tasks = {(ti.task_id, ti.map_index): ti for ti in run.get_task_instances(session=session)}
        rows: list[Any] = list(
            session.scalars(
                XComModel.get_many(run_id=run.run_id, dag_ids=dag.dag_id, key="return_value")
            )
        )
        events = session.execute(
            sa.select(AssetModel.uri, AssetEvent.extra)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetEvent.source_run_id == run.run_id)
        ).all()
        return {
            "state": str(run.state),
            "states": {key: str(ti.state) for key, ti in tasks.items()},
            "names": {key: ti.rendered_map_index for key, ti in tasks.items()},
            "values": {(r.task_id, r.map_index): XComModel.deserialize_value(r) for r in rows},
            "events": {uri: extra for uri, extra in events},
        }


def run_all(dags: dict[str, Any], *, daily: bool = False) -> dict[str, dict[str, Any]]:
    """Both intake DAGs, then the publication: as the daily run, or by hand with `as_of`."""
    runs = {dag_id: run_dag(dags[dag_id], logical_date=None, run_conf={"as_of": AS_OF})
            for dag_id in INTAKE}  # fmt: skip
    publish = {"logical_date": DAILY_RUN} if daily else {"logical_date": None,
                                                         "run_conf": {"as_of": AS_OF}}  # fmt: skip
    runs["credit_publish"] = run_dag(dags["credit_publish"], **publish)
    return runs


def table_counts(url: str) -> dict[str, int]:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            tables = sa.inspect(conn).get_table_names()
            return {
                t: conn.scalar(sa.text(f'SELECT count(*) FROM "{t}"')) or 0
                for t in sorted(tables)
                if t != "alembic_version"
            }
    finally:
        engine.dispose()


def file_hashes(*roots: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for root in roots
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def test_intake_then_publish_and_a_rerun_changes_nothing(
    dags: dict[str, Any],
    store_url: str,
    samples: list[str],
    _isolated_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    at(monkeypatch, "2026-11-21 10:00:00")
    home = _isolated_home

    runs = run_all(dags, daily=True)

    # --- every run succeeded; one mapped task per dropped file, named after it ------------------
    assert {dag_id: run["state"] for dag_id, run in runs.items()} == dict.fromkeys(runs, "success")
    outcomes = []
    for dag_id, dataset in INTAKE.items():
        run = runs[dag_id]
        mine = [s for s in samples if s.split("/")[1] == dataset]
        mapped = sorted(k for k in run["states"] if k[0] == "process_file")
        assert len(mapped) == len(mine) >= 2  # files processed in parallel on an executor
        assert sorted(run["names"][k] for k in mapped) == mine
        assert all(run["states"][k] == "success" for k in run["states"])
        outcomes += [run["values"][k] for k in mapped]
        totals = run["values"][("totals", -1)]
        assert totals["files"] == len(mine) and totals["store_changed"] is True

    # --- the store: every row of every file accepted or rejected, the accepted ones loaded -----
    assert {o["status"] for o in outcomes} == {"loaded"}
    for o in outcomes:
        assert o["rows_read"] == o["accepted"] + o["rejected"] > 0
        assert o["inserted"] == o["accepted"]  # a first load: every key is new
    assert sum(o["rejected"] for o in outcomes) > 0  # the samples carry deliberately bad rows
    counts = table_counts(store_url)
    assert counts["source_file"] == len(samples)
    assert counts["penalty_version"] == sum(
        o["accepted"] for o in outcomes if o["dataset"] == "penalty"
    )
    assert counts["abnormal_patent_version"] == sum(
        o["accepted"] for o in outcomes if o["dataset"] == "abnormal_patent"
    )
    assert counts["rejected_row"] == sum(o["rejected"] for o in outcomes)
    assert not list((home / "inbox").rglob("*.*"))  # every file left the inbox

    # --- a receipt per file in outbox/<office>/ -------------------------------------------------
    for o in outcomes:
        receipt = Path(o["receipt"])
        assert receipt.parent == home / "outbox" / o["office"]
        body = json.loads(receipt.read_text(encoding="utf-8"))
        assert (body["accepted"], body["rejected"]) == (o["accepted"], o["rejected"])
        assert receipt.with_suffix(".html").is_file() and receipt.with_suffix(".csv").is_file()

    # --- flags, evaluated as of the date by the publish DAG -------------------------------------
    published = runs["credit_publish"]["values"][("publish", -1)]
    assert published["as_of"] == AS_OF  # the daily run's data interval → the day before
    engine = db.make_engine(store_url)
    with engine.connect() as conn:
        flags = list_flags(conn)
    engine.dispose()
    assert flags and published["flags"]["flags"] == len(flags)
    assert all(f["rule_id"] and f["state"] == "candidate" for f in flags)

    # --- published extracts, with a manifest, and the asset events -----------------------------
    for dataset in PUBLISHED:
        folder = home / "publish" / dataset / AS_OF
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        assert manifest["as_of"] == AS_OF and manifest["dataset"] == dataset
        assert (folder / "datapackage.json").is_file()
        assert (folder / f"{dataset}.parquet").is_file() and (folder / f"{dataset}.csv").is_file()
        assert (home / "publish" / dataset / "LATEST").read_text(encoding="utf-8").strip() == AS_OF
        event = runs["credit_publish"]["events"][f"creditpipe://publish/{dataset}"]
        assert event["manifest"] == str(folder / "manifest.json")
        assert event["as_of"] == AS_OF
    for dag_id, dataset in INTAKE.items():
        event = runs[dag_id]["events"][f"creditpipe://store/{dataset}"]
        assert event["store_changed"] is True and event["files"] >= 2

    # --- the same date again: nothing changes ---------------------------------------------------
    before = table_counts(store_url)
    hashes = file_hashes(home / "publish", home / "restricted")
    assert hashes

    again = run_all(dags)  # by hand this time: as_of = the same date

    assert {run["state"] for run in again.values()} == {"success"}
    assert all(run["events"] == {} for run in again.values())  # nothing to announce
    for dag_id in INTAKE:
        assert again[dag_id]["states"][("process_file", -1)] == "skipped"  # an empty inbox
    republished = again["credit_publish"]["values"][("publish", -1)]
    assert {d["result"] for d in republished["datasets"]} == {"unchanged"}
    after = table_counts(store_url)
    # flag_evaluation logs every evaluation (one more row); nothing else moves
    assert after.pop("flag_evaluation") == before.pop("flag_evaluation") + 1
    assert after == before
    assert republished["flags"]["new"] == republished["flags"]["changed"] == 0
    assert republished["flags"]["withdrawn"] == 0
    assert file_hashes(home / "publish", home / "restricted") == hashes

    # --- and the same files dropped again: recognised, nothing loaded twice --------------------
    shutil.copytree(SAMPLES, home / "inbox", dirs_exist_ok=True)
    redrop = {dag_id: run_dag(dags[dag_id], logical_date=None, run_conf={"as_of": AS_OF})
              for dag_id in INTAKE}  # fmt: skip
    for run in redrop.values():
        assert run["state"] == "success" and run["events"] == {}
        assert run["states"][("announce", -1)] == "skipped"
        assert run["values"][("totals", -1)]["by_status"] == {"duplicate": 2}
    final = table_counts(store_url)
    assert final.pop("source_file") == after.pop("source_file") + len(samples)  # the duplicates
    final.pop("flag_evaluation")
    after.pop("flag_evaluation", None)
    assert final == after


def test_a_failing_file_fails_alone_and_the_store_can_come_from_a_connection(
    dags: dict[str, Any],
    samples: list[str],
    _isolated_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One file's task fails; the other file loads and is announced; the run shows failed.

    The store is named by an Airflow Connection (CREDITPIPE_DB_CONN_ID), resolved in the tasks.
    GX runs in its quality process, as it does for large files: started from an Airflow task.
    """
    import etl.run

    store = tmp_path / "from-connection.db"
    monkeypatch.delenv("CREDITPIPE_DB_URL", raising=False)
    monkeypatch.setenv("CREDITPIPE_DB_CONN_ID", "creditpipe_store")
    monkeypatch.setenv(
        "AIRFLOW_CONN_CREDITPIPE_STORE", json.dumps({"conn_type": "sqlite", "host": str(store)})
    )
    monkeypatch.setenv("CREDITPIPE_QUALITY", "process")
    at(monkeypatch, "2026-11-21 10:00:00")
    load = etl.run._load

    def fail_one(drop: Any, *args: Any, **kwargs: Any) -> Any:
        if drop.office == "yangpu-amr":
            raise RuntimeError("simulated crash while loading")
        return load(drop, *args, **kwargs)

    monkeypatch.setattr(etl.run, "_load", fail_one)
    process_file = dags["penalty_intake"].get_task("process_file")
    retries = process_file.partial_kwargs.get("retries")
    process_file.partial_kwargs["retries"] = 0  # dag.test() would wait out the real backoff
    try:
        run = run_dag(dags["penalty_intake"], logical_date=None, run_conf={"as_of": AS_OF})
    finally:
        process_file.partial_kwargs["retries"] = retries

    assert run["state"] == "failed"
    failed = {run["names"][k] for k, s in run["states"].items() if s == "failed"}
    assert failed == {"yangpu-amr/penalty/杨浦区行政处罚公示表_2026-11.xlsx"}
    assert run["states"][("totals", -1)] == "upstream_failed"  # the run shows the failure
    assert run["states"][("announce", -1)] == "success"  # the file that loaded is announced
    assert run["events"]["creditpipe://store/penalty"]["files"] == 1
    left = _isolated_home / "inbox" / "yangpu-amr" / "penalty" / "杨浦区行政处罚公示表_2026-11.xlsx"
    assert left.is_file()  # rolled back and left in the inbox for the next attempt
    engine = db.make_engine(f"sqlite:///{store}")
    with engine.connect() as conn:
        statuses = dict(conn.execute(sa.text("SELECT office_id, status FROM source_file")).all())
    engine.dispose()
    assert statuses == {"jingan-amr": "loaded", "yangpu-amr": "failed"}
