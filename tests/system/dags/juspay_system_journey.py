"""The nightly how-to's DAG, as the README writes it, over a table of its own: the system test runs its
journey (a day by hand, a backfill of three days that meets a hand run, the recipe for a skipped day)."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag
from airflow.timetables.interval import CronDataIntervalTimetable

from airflow_provider_juspay.operators.fulfilment import BulkFulfilmentOperator


@dag(
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),  # a real [start, end) per day
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["juspay"],
)
def juspay_system_journey():
    BulkFulfilmentOperator(
        task_id="push_fulfilments",
        sql="""SELECT order_id, fulfillment_status, fulfillment_command, fulfillment_time
               FROM journey_fulfilments
               WHERE updated_at >= '{{ data_interval_start.to_datetime_string() }}'
                 AND updated_at <  '{{ data_interval_end.to_datetime_string() }}'""",
        sql_conn_id="warehouse",
        ledger_conn_id="warehouse",
        max_failure_ratio=0.2,
    )


juspay_system_journey()
