"""The DAG folder parses cleanly, fast, without touching anything, and every DAG is complete.

Parsing is checked in a fresh process by bench/dag_parse_bench.py, the way the DAG processor
parses (BundleDagBag), with Python audit hooks recording every file opened, folder listed,
socket connected, SQLite database opened and process started, and wrappers recording engine
creation, Airflow Connection/Variable look-ups and the etl.settings functions. The store URL
points at an unreachable address and the home folder does not exist, so any access would also
show as an error. A deliberately bad DAG folder shows that the watch does see such things.
The DAG attributes are checked here, in-process, on the same kind of DagBag.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.dags import DAGS_FOLDER

BENCH = Path(__file__).resolve().parents[2] / "bench" / "dag_parse_bench.py"
DAG_IDS = ["abnormal_patent_intake", "credit_publish", "credit_reports", "penalty_intake"]
INTAKE = ["penalty_intake", "abnormal_patent_intake"]
PUBLISHED = ["penalty", "abnormal_patent", "serious_dishonesty"]


def parse_in_fresh_process(dags: Path, **env: str) -> dict[str, Any]:
    """Run the parse bench on `dags` in a new interpreter; its JSON result."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    child_env.update(env)
    done = subprocess.run(
        [sys.executable, str(BENCH), "--dags", str(dags), "--json", "--repeat", "1"],
        capture_output=True,
        text=True,
        env=child_env,
        timeout=120,
        check=False,
    )
    assert done.stdout.strip(), done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    result["exit_status"] = done.returncode
    return result


def test_dag_folder_parses_fast_and_touches_nothing() -> None:
    result = parse_in_fresh_process(DAGS_FOLDER, CREDITPIPE_INTAKE_SCHEDULE="*/5 * * * *")

    assert result["import_errors"] == {}
    assert result["dag_ids"] == DAG_IDS
    assert result["touched"] == []  # no file, folder, socket, database or process
    assert result["calls"] == []  # no engine, Connection, Variable or etl.settings look-up
    assert result["heavy_modules"] == []  # etl, pandas, pyarrow, GX load inside tasks only
    assert result["parse_s"] < 2.0, result  # the target, for the whole folder
    assert result["exit_status"] == 0
    # The intake schedule comes from the environment at parse time; the others are fixed.
    assert result["schedules"] == {
        "penalty_intake": "*/5 * * * *",
        "abnormal_patent_intake": "*/5 * * * *",
        "credit_publish": "0 0 * * *",
        "credit_reports": "0 6 1 * *",
    }


def test_the_watch_sees_a_dag_file_misbehaving(tmp_path: Path) -> None:
    """The negative control: without it, an empty `touched` list would prove nothing."""
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "bad_dag.py").write_text(
        '"""An Airflow DAG file doing I/O at parse time."""\n'
        "import sqlalchemy\n"
        "from airflow.sdk import dag, task\n"
        "from etl import settings\n"
        "import pandas\n"
        "HOME = settings.home()\n"
        "OFFICES = open(settings.offices_path()).read()\n"
        "ENGINE = sqlalchemy.create_engine('sqlite:///' + str(HOME) + '.db')\n"
        "ENGINE.connect().close()\n"
        "@dag(schedule=None)\n"
        "def bad_dag():\n"
        "    @task\n"
        "    def nothing() -> None: ...\n"
        "    nothing()\n"
        "bad_dag()\n",
        encoding="utf-8",
    )
    result = parse_in_fresh_process(folder)

    assert result["dag_ids"] == ["bad_dag"]
    assert any(t.startswith("open ") and t.endswith("offices.yaml") for t in result["touched"])
    assert any(t.startswith("sqlite3.connect") for t in result["touched"])
    assert {"etl.settings.home", "etl.settings.offices_path", "sqlalchemy.create_engine"} <= set(
        result["calls"]
    )
    assert "pandas" in result["heavy_modules"]
    assert result["exit_status"] == 1


# --- the DAGs themselves ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dagbag() -> Any:
    os.environ.pop("CREDITPIPE_INTAKE_SCHEDULE", None)
    from airflow.dag_processing.dagbag import BundleDagBag

    return BundleDagBag(DAGS_FOLDER, bundle_path=DAGS_FOLDER, bundle_name="dags-folder")


def test_every_dag_file_imports(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dag_ids) == DAG_IDS
    # _creditpipe.py is a helper, kept out of parsing by .airflowignore
    assert sorted(Path(f).name for f in dagbag.file_last_changed) == [
        f"{dag_id}.py" for dag_id in DAG_IDS
    ]


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_every_dag_has_owner_tags_retries_docs(dagbag: Any, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    source = ast.parse(Path(dag.fileloc).read_text(encoding="utf-8"))

    assert dag.tags and "creditpipe" in dag.tags
    assert dag.doc_md and dag.doc_md == ast.get_docstring(source, clean=False)  # the module's
    assert dag.catchup is False
    assert str(dag.timezone) == "Asia/Shanghai"
    assert dag.max_active_runs == 1
    for task in dag.tasks:
        assert task.owner == "creditpipe", task.task_id
        assert task.retries > 0, task.task_id
        assert task.retry_exponential_backoff >= 2, task.task_id  # delays double
        assert task.retry_delay == timedelta(minutes=1)
        assert task.max_retry_delay == timedelta(minutes=30)


@pytest.mark.parametrize("dag_id", INTAKE)
def test_intake_maps_one_task_per_file_and_announces_its_asset(dagbag: Any, dag_id: str) -> None:
    from airflow.sdk import Asset, CronTriggerTimetable

    dag = dagbag.dags[dag_id]
    dataset = dag_id.removesuffix("_intake")
    tasks = {t.task_id: t for t in dag.tasks}

    assert isinstance(dag.timetable, CronTriggerTimetable)
    assert dag.timetable.expression == "*/15 * * * *"  # the default
    assert set(tasks) == {"list_new_drops", "process_file", "announce", "totals"}
    assert tasks["process_file"].is_mapped  # dynamic task mapping: one task per dropped file
    assert tasks["process_file"].upstream_task_ids == {"list_new_drops"}
    announce = tasks["announce"]
    assert announce.outlets == [Asset(uri=f"creditpipe://store/{dataset}",
                                      name=f"creditpipe_store_{dataset}")]  # fmt: skip
    assert announce.trigger_rule == "all_done"  # the files that loaded are announced anyway
    assert tasks["totals"].trigger_rule == "all_success"  # a failed file fails the run
    assert not tasks["process_file"].outlets and not tasks["totals"].outlets


def test_publish_runs_daily_in_shanghai_and_on_the_store_assets(dagbag: Any) -> None:
    from airflow.sdk import Asset, AssetAny, AssetOrTimeSchedule, CronTriggerTimetable

    dag = dagbag.dags["credit_publish"]
    timetable = dag.timetable

    assert isinstance(timetable, AssetOrTimeSchedule)
    assert isinstance(timetable.timetable, CronTriggerTimetable)
    assert timetable.timetable.expression == "0 0 * * *"
    assert str(timetable.timetable.timezone) == "Asia/Shanghai"
    assert timetable.timetable.interval == timedelta(days=1)  # the run covers the day before
    assert isinstance(timetable.asset_condition, AssetAny)
    assert {getattr(a, "uri", None) for a in timetable.asset_condition.objects} == {
        "creditpipe://store/penalty",
        "creditpipe://store/abnormal_patent",
    }
    assert dag.max_active_runs == 1  # two publications never overlap
    tasks = {t.task_id: t for t in dag.tasks}
    for dataset in PUBLISHED:
        announce = tasks[f"announce_{dataset}"]
        assert announce.outlets == [Asset(uri=f"creditpipe://publish/{dataset}",
                                          name=f"creditpipe_publish_{dataset}")]  # fmt: skip
        assert announce.upstream_task_ids == {"publish"}
    assert not tasks["publish"].outlets


def test_reports_run_monthly(dagbag: Any) -> None:
    dag = dagbag.dags["credit_reports"]

    assert dag.timetable.expression == "0 6 1 * *"
    assert str(dag.timetable.timezone) == "Asia/Shanghai"
    assert [t.task_id for t in dag.tasks] == ["withdrawal_rate_report"]
