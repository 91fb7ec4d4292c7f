"""Daily: push the courier's CSV drop of the day (one or more files) to Juspay, and keep every failure.

The courier drops ``<drop>/<YYYY-MM-DD>/*.csv`` (any object store Airflow knows: ``s3://conn_id@bucket``,
``gs://...``, ``file://...``); this reads the day's files in name order, renames the courier's columns,
and writes every row that failed, with its file and line, next to the drop for the courier to fix.
A rerun or a backfill is safe: the ledger skips what Juspay already has.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag
from airflow.timetables.interval import CronDataIntervalTimetable

from airflow_provider_juspay.operators.fulfilment import BulkFulfilmentOperator
from airflow_provider_juspay.sync.files import CsvOptions


@dag(
    schedule=CronDataIntervalTimetable("0 6 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={"drop": Param("s3://courier_s3@courier-drops/juspay", type="string")},
    tags=["juspay", "example"],
)
def juspay_courier_csv_drop():
    # [START howto_bulk_from_files]
    BulkFulfilmentOperator(
        task_id="push_courier_drop",
        path="{{ params.drop }}/{{ data_interval_start | ds }}/*.csv",
        csv_options=CsvOptions(delimiter=","),
        # The courier's names -> Juspay's fields; the courier's other columns are not sent.
        column_map={
            "order_ref": "order_id",
            "awb": "fulfillment_id",
            "delivered_at": "fulfillment_time",
            "result": "fulfillment_status",
        },
        defaults={"fulfillment_command": "NO_ACTION"},
        ledger_conn_id="warehouse",
        failures_path="{{ params.drop }}/{{ data_interval_start | ds }}/failures/juspay_failures.csv",
        max_failure_ratio=0.05,
    )
    # [END howto_bulk_from_files]


juspay_courier_csv_drop()
