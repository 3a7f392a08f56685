"""What the creditpipe DAG files share: defaults, assets, the business date, the intake factory.

Not a DAG file itself (`.airflowignore` keeps the DAG processor from parsing it on its own);
the DAG files import it as a sibling module: Airflow puts the DAG bundle's folder on
`sys.path` for the DAG processor and for the task runner.

Parse-time rule: this module and the DAG files import only Airflow's SDK, pendulum and the
standard library at top level, and read nothing but `os.environ` (`CREDITPIPE_INTAKE_SCHEDULE`).
`etl` (pandas, SQLAlchemy, Great Expectations) is imported inside the tasks, where the store,
the home folder and any Airflow Connection are looked up too.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import Asset, CronTriggerTimetable, Param, TriggerRule, dag, task

if TYPE_CHECKING:
    from datetime import date

    from airflow.sdk import DAG, Context

SHANGHAI = pendulum.timezone("Asia/Shanghai")
# The go-live date. Runs are never created for dates before it; catchup is off on every DAG.
START_DATE = pendulum.datetime(2026, 11, 1, tz=SHANGHAI)
DEFAULT_INTAKE_SCHEDULE = "*/15 * * * *"
OWNER = "creditpipe"

# Retries with exponential backoff (Airflow 3.3: `retry_exponential_backoff` is the multiplier):
# 1, 2, 4 minutes. A file that fails is rolled back and stays in the inbox, so a retry redoes it
# from the start; a publication rewrites nothing that is already complete.
DEFAULT_ARGS: dict[str, Any] = {
    "owner": OWNER,
    "retries": 3,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": timedelta(hours=2),
}

# `as_of` overrides the business date of a manual run (a rerun or backfill by hand).
AS_OF_PARAM = Param(
    None,
    type=["null", "string"],
    format="date",
    title="业务日期 as_of (YYYY-MM-DD)",
    description="Asia/Shanghai business date; empty: the run's own date.",
)


def store_asset(dataset: str) -> Asset:
    """Updated when an intake run changed the dataset's records in the store."""
    return Asset(uri=f"creditpipe://store/{dataset}", name=f"creditpipe_store_{dataset}")


def publish_asset(dataset: str) -> Asset:
    """Updated when a new publication of the dataset was committed; extra: its manifest."""
    return Asset(uri=f"creditpipe://publish/{dataset}", name=f"creditpipe_publish_{dataset}")


INTAKE_DATASETS = ("penalty", "abnormal_patent")
PUBLISHED_DATASETS = ("penalty", "abnormal_patent", "serious_dishonesty")


def intake_schedule() -> CronTriggerTimetable:
    """Every 15 minutes (Asia/Shanghai), or the cron expression in CREDITPIPE_INTAKE_SCHEDULE.

    Read from the environment when the file is parsed: a schedule must be known then, and the
    environment is the only configuration that costs nothing to read.
    """
    cron = os.environ.get("CREDITPIPE_INTAKE_SCHEDULE", "").strip() or DEFAULT_INTAKE_SCHEDULE
    return CronTriggerTimetable(cron, timezone=SHANGHAI)


# --- inside tasks only ---------------------------------------------------------------------------


def business_date(context: Context) -> date:
    """The run's Asia/Shanghai business date (rules in `etl.orchestrate.business_date`)."""
    from etl.orchestrate import business_date as resolve

    params = context.get("params") or {}
    dag_run = context.get("dag_run")
    return resolve(
        requested=params.get("as_of"),
        interval_start=context.get("data_interval_start"),
        interval_end=context.get("data_interval_end"),
        run_after=getattr(dag_run, "run_after", None),
    )


def store_url() -> str | None:
    """The store's URL from the Airflow Connection named by CREDITPIPE_DB_CONN_ID, if set.

    Looked up when a task runs (through the task SDK, so secrets backends apply), never at
    parse time. Unset: `etl.settings.db_url()` decides (CREDITPIPE_DB_URL, else SQLite).
    """
    conn_id = os.environ.get("CREDITPIPE_DB_CONN_ID", "").strip()
    if not conn_id:
        return None
    from airflow.sdk import Connection

    from etl.orchestrate import connection_url

    conn = Connection.get(conn_id)
    return connection_url(
        conn.conn_type,
        host=conn.host,
        port=conn.port,
        login=conn.login,
        password=conn.password,
        schema=conn.schema,
    )


def _pulled(outcomes: Any) -> list[Any]:
    """The mapped outcomes in one request (a slice); iterating the lazy XCom sequence instead
    would ask for one item after the last and log a spurious "XCom not found" error. A
    skipped upstream (no drops) and the files whose task failed contribute nothing."""
    return list(outcomes[:]) if outcomes else []


# --- the intake DAGs -----------------------------------------------------------------------------


def intake_dag(dataset: str, doc_md: str | None) -> DAG:
    """`<dataset>_intake`: list the new drops, one mapped task per file, then announce."""
    asset = store_asset(dataset)

    @dag(
        dag_id=f"{dataset}_intake",
        schedule=intake_schedule(),
        start_date=START_DATE,
        catchup=False,  # an intake run takes whatever is in the inbox; old slots mean nothing
        max_active_runs=1,  # two runs listing the same inbox would race for the same files
        default_args=DEFAULT_ARGS,
        dagrun_timeout=timedelta(hours=6),
        tags=["creditpipe", "intake", dataset],
        doc_md=doc_md,
        params={"as_of": AS_OF_PARAM},
        description=f"{dataset}: inbox → archive → check → store → receipts",
    )
    def intake() -> None:
        @task
        def list_new_drops() -> list[str]:
            """Drops waiting in inbox/<office>/<dataset>/, as office/dataset/file (oldest
            first); refused entries get their receipt here."""
            from etl.orchestrate import pending_drops

            return pending_drops(dataset, db_url=store_url())

        @task(map_index_template="{{ drop_path }}")
        def process_file(relpath: str) -> dict[str, Any]:
            """One file: archive, register, check, load (one transaction), receipt. Fails only
            when the file could not be processed (rolled back, left in the inbox)."""
            from airflow.sdk import get_current_context

            from etl.orchestrate import process_one, raise_for_failure

            context = get_current_context()
            context["drop_path"] = relpath  # type: ignore[typeddict-unknown-key]
            outcome = process_one(relpath, business_date(context), db_url=store_url())
            raise_for_failure(outcome)
            return outcome

        @task(outlets=[asset], trigger_rule=TriggerRule.ALL_DONE)
        def announce(outcomes: list[dict[str, Any]], *, outlet_events: Any = None) -> None:
            """Emit the store asset event when records changed; skipped otherwise.

            Runs even when a file failed: the files that did load are announced.
            """
            from airflow.sdk.exceptions import AirflowSkipException

            from etl.orchestrate import summarise_intake

            summary = summarise_intake(_pulled(outcomes))
            if not summary["store_changed"]:
                raise AirflowSkipException("no record changed in the store: no asset event")
            summary.pop("receipts")
            outlet_events[asset].extra = summary

        @task
        def totals(outcomes: list[dict[str, Any]]) -> dict[str, Any]:
            """The run's totals (files, rows accepted and rejected, receipts). Not run when a
            file's task failed (upstream_failed), so the run shows failed until it is retried."""
            from etl.orchestrate import summarise_intake

            return summarise_intake(_pulled(outcomes))

        # Typed Any: at parse time this is an XComArg standing for the list of outcomes.
        outcomes: Any = process_file.expand(relpath=list_new_drops())
        announce(outcomes)
        totals(outcomes)

    return intake()
