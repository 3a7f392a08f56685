"""
### credit_reports — monthly KPI reports (Airflow DAG)

At 06:00 Asia/Shanghai on the 1st of every month, the 非正常专利申请 **withdrawal-rate report** for
the month before: notices whose 通知日期 falls in that month, in their state as of its last day,
per district and for the city (pooled), each district against the city average. Written to
`$CREDITPIPE_HOME/reports/` as CSV, JSON and an HTML page with a bar chart.

The state is read as of the month's last day, so rerunning a month's report (clear the task,
or trigger with param `month` = `YYYY-MM`) gives the same figures whenever it runs. `catchup` is
off; earlier months: trigger with `month`, or
`airflow backfill create --dag-id credit_reports --from-date … --to-date …` (each run reports the
month before its own).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from _creditpipe import DEFAULT_ARGS, SHANGHAI, START_DATE, business_date, store_url
from airflow.sdk import CronTriggerTimetable, Param, dag, task


@dag(
    dag_id="credit_reports",
    schedule=CronTriggerTimetable("0 6 1 * *", timezone=SHANGHAI),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    dagrun_timeout=timedelta(hours=2),
    tags=["creditpipe", "reports", "abnormal_patent"],
    doc_md=__doc__,
    params={
        "month": Param(
            None,
            type=["null", "string"],
            pattern=r"^\d{4}-(0[1-9]|1[0-2])$",
            title="统计月份 month (YYYY-MM)",
            description="The month to report; empty: the month before the run's date.",
        )
    },
    description="monthly withdrawal-rate report (非正常专利申请撤回率) by district",
)
def credit_reports() -> None:
    @task
    def withdrawal_rate_report() -> dict[str, Any]:
        """The withdrawal-rate report of the month (CSV, JSON, HTML under reports/)."""
        from airflow.sdk import get_current_context

        from etl.orchestrate import monthly_report, report_month

        context = get_current_context()
        month = report_month((context.get("params") or {}).get("month"), business_date(context))
        return monthly_report(month, db_url=store_url())

    withdrawal_rate_report()


credit_reports()
