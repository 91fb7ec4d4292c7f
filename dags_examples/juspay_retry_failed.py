"""Hourly: send again the fulfilments the ledger holds as rejected, failed, not attempted or in flight.

Only those keys are read back from the warehouse (the ledger lives in the warehouse, so one JOIN finds
them); delivered keys are never touched. A payment that clears after the nightly sync (so Juspay first
answered "No txn Found") reaches Juspay within the hour.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from airflow_provider_juspay.operators.fulfilment import BulkFulfilmentOperator
from airflow_provider_juspay.sensors.fulfilment import FulfilmentFailureSensor

RETRY_SQL = """
SELECT f.order_id, f.fulfillment_status, f.fulfillment_command, f.fulfillment_time,
       f.fulfillment_id, f.fulfillment_data, f.routing_id
FROM fulfilments AS f
JOIN juspay_fulfilment_ledger AS l
  ON l.order_id = f.order_id
 AND l.command = UPPER(f.fulfillment_command)
 AND l.fulfillment_id = COALESCE(f.fulfillment_id, '')
WHERE l.state IN ('rejected', 'failed', 'not_attempted', 'in_flight')
  AND f.updated_at >= '{{ (data_interval_end - macros.timedelta(days=7)).to_datetime_string() }}'
ORDER BY f.id
"""


@dag(
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["juspay", "example"],
)
def juspay_retry_failed():
    # [START howto_retry_failed]
    retry = BulkFulfilmentOperator(
        task_id="retry_failed",
        sql=RETRY_SQL,
        sql_conn_id="warehouse",
        ledger_conn_id="warehouse",
        max_concurrency=8,
        # Orders still unpaid are refused again; that alone must not fail the push: the check below judges.
        max_failure_ratio=1.0,
    )
    # [END howto_retry_failed]
    still_failing = FulfilmentFailureSensor(
        task_id="still_failing",
        sync_task_id="retry_failed",
        max_failure_ratio=0.5,  # most failures should clear within the day; page someone if not
        trigger_rule="all_done",
        timeout=600,
    )
    retry >> still_failing


juspay_retry_failed()
