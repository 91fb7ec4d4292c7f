"""Nightly: tell Juspay about every fulfilment the warehouse recorded during the day.

The SQL selects the rows of the run's data interval, so re-running a day or backfilling past days
(`airflow backfill create --dag-id juspay_nightly_sync --from-date 2026-11-01 --to-date 2026-11-26`,
Airflow 3's command) sends each day's rows; by hand, day D is a run with the interval [D, D+1) at
logical date D+1, noon (docs/howto/nightly.md, "Which logical date syncs day D").
Needs a ``juspay_default`` connection and a SQL connection ``warehouse`` (any DbApiHook: SQLite,
Postgres, Snowflake, ...; docs/warehouse.md) holding a ``fulfilments`` table; the ledger table is created
there (on SQLite the ledger switches the file to WAL, so rows are read while the ledger writes).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag
from airflow.timetables.interval import CronDataIntervalTimetable

from airflow_provider_juspay.assets.juspay import create_asset
from airflow_provider_juspay.notifications.fulfilment import FulfilmentReportNotifier
from airflow_provider_juspay.operators.fulfilment import BulkFulfilmentOperator
from airflow_provider_juspay.sensors.fulfilment import FulfilmentFailureSensor


# [START howto_schedule]
@dag(
    # A real [start, end) interval per day (Airflow 3's plain "@daily" has start == end).
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["juspay", "example"],
)
# [END howto_schedule]
def juspay_nightly_sync():
    # [START howto_bulk_from_sql]
    push = BulkFulfilmentOperator(
        task_id="push_fulfilments",
        sql="sql/fulfilments_of_the_interval.sql",
        sql_conn_id="warehouse",
        # The ledger makes reruns and backfills safe: delivered keys are skipped, failed ones resent.
        ledger_conn_id="warehouse",
        max_concurrency=32,
        max_failure_ratio=0.2,  # fail loudly when a fifth of the day could not be delivered
        # A successful push emits an asset event carrying its counts: juspay_reconcile runs on it.
        outlets=[create_asset(merchant_id="demo_merchant")],  # your merchant id
    )
    # [END howto_bulk_from_sql]
    # A visible, actionable result: passes when under 5% of the day failed, else lists the orders.
    # [START howto_failure_sensor]
    check = FulfilmentFailureSensor(
        task_id="check_failures",
        sync_task_id="push_fulfilments",
        max_failure_ratio=0.05,
        trigger_rule="all_done",
        timeout=600,
        # The failed orders, in a few lines, where people look: give it your notifier, e.g.
        # FulfilmentReportNotifier(notifier=SlackNotifier(text="{{ juspay_report }}", channel="#payments")).
        # Without one, the message goes to the task log.
        on_failure_callback=FulfilmentReportNotifier(),
    )
    # [END howto_failure_sensor]
    push >> check


juspay_nightly_sync()
