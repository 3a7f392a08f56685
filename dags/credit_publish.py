"""
### credit_publish — flags and extracts for the credit platform (Airflow DAG)

Runs **daily at 00:00 Asia/Shanghai** for the day that has just ended (the run at 00:00 on the
22nd publishes the 21st: everything received before the end of that day), and **whenever an
intake run changed the store** (`creditpipe://store/penalty`, `creditpipe://store/abnormal_patent`):
such a run publishes today's state so far, and the midnight run then publishes the complete day.

1. **publish** evaluates the serious-dishonesty rules as of the date (the flag registry), then
   writes, for `penalty`, `abnormal_patent` and `serious_dishonesty`, the snapshot, the delta
   against the previous publication, `datapackage.json` and `manifest.json` into
   `publish/<dataset>/<YYYY-MM-DD>/` (masked; the unmasked twin under `restricted/`), each
   folder committed atomically and `LATEST` written last.
2. **announce_<dataset>** emits `creditpipe://publish/<dataset>` with the event extra
   `{"manifest": …, "folder": …, "as_of": …, "rows": …, "delta": …}` when a new folder was
   committed, so the credit platform's DAGs can schedule on it; skipped when the publication was
   already there, identical (a rerun).

Idempotent by date: a rerun or a backfill of date D reads the store as of the end of D and
leaves identical files alone (result `unchanged`). `max_active_runs=1`: two publications never
overlap. Param `as_of` (YYYY-MM-DD) publishes another date by hand. `catchup` is off: a missed
day is not lost (the next delta covers it); to write its folder, backfill it
(`airflow backfill create --dag-id credit_publish --from-date … --to-date …`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from _creditpipe import (
    AS_OF_PARAM,
    DEFAULT_ARGS,
    INTAKE_DATASETS,
    PUBLISHED_DATASETS,
    SHANGHAI,
    START_DATE,
    business_date,
    publish_asset,
    store_asset,
    store_url,
)
from airflow.sdk import AssetAny, AssetOrTimeSchedule, CronTriggerTimetable, dag, task


def _announce(dataset: str, summary: Any) -> Any:
    asset = publish_asset(dataset)

    @task(task_id=f"announce_{dataset}", outlets=[asset])
    def announce(summary: dict[str, Any], *, outlet_events: Any = None) -> None:
        from airflow.sdk.exceptions import AirflowSkipException

        from etl.orchestrate import publication_event

        extra = publication_event(summary, dataset)
        if extra is None:
            raise AirflowSkipException(f"{dataset}: nothing new published, no asset event")
        outlet_events[asset].extra = extra

    return announce(summary)


@dag(
    dag_id="credit_publish",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(
            "@daily", timezone=SHANGHAI, interval=timedelta(days=1)
        ),  # the run at 00:00 covers the day before: data interval [D 00:00, D+1 00:00)
        assets=AssetAny(*(store_asset(d) for d in INTAKE_DATASETS)),
    ),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,  # two publications of the same dataset must never overlap
    default_args=DEFAULT_ARGS,
    dagrun_timeout=timedelta(hours=6),
    tags=["creditpipe", "publish", *PUBLISHED_DATASETS],
    doc_md=__doc__,
    params={"as_of": AS_OF_PARAM},
    description="flags + Parquet/CSV extracts, deltas and manifests for the credit platform",
)
def credit_publish() -> None:
    @task
    def publish() -> dict[str, Any]:
        """Flags as of the date, then every dataset's extracts for the date."""
        from airflow.sdk import get_current_context

        from etl.orchestrate import publish_day

        return publish_day(business_date(get_current_context()), db_url=store_url())

    summary = publish()
    for dataset in PUBLISHED_DATASETS:
        _announce(dataset, summary)


credit_publish()
