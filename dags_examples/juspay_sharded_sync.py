"""Scale out: the nightly query split into shards, one mapped task each, spread over Airflow's workers.

Each shard reads its slice of the day (``id % SHARDS``) and pushes it with its own connection pool;
Juspay sees at most ``SHARDS * max_concurrency`` requests in flight, ``SHARDS * rate_limit`` per second.
The shards share the ledger of the nightly sync, so a day already pushed (by it, or by an earlier run of
this DAG) is skipped, not sent again: Juspay documents de-duplication only for split settlements.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag
from airflow.timetables.interval import CronDataIntervalTimetable

from airflow_provider_juspay.operators.fulfilment import BulkFulfilmentOperator
from airflow_provider_juspay.sensors.fulfilment import FulfilmentFailureSensor

SHARDS = 4
QUERY = """
SELECT order_id, fulfillment_status, fulfillment_command, fulfillment_time, fulfillment_id,
       fulfillment_data, routing_id
FROM fulfilments
WHERE updated_at >= '{{{{ data_interval_start.to_datetime_string() }}}}'
  AND updated_at <  '{{{{ data_interval_end.to_datetime_string() }}}}'
  AND id % {shards} = {shard}
ORDER BY id
"""


@dag(
    # A real [start, end) interval per day (Airflow 3's plain "@daily" has start == end).
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    tags=["juspay", "example"],
)
def juspay_sharded_sync():
    # [START howto_sharded]
    shards = BulkFulfilmentOperator.partial(
        task_id="push_shard",
        sql_conn_id="warehouse",
        ledger_conn_id="warehouse",  # what any run delivered is skipped; overlapping shards send once
        max_concurrency=16,
        rate_limit=200,  # per shard
        max_failure_ratio=1.0,  # each shard pushes all it can; the check below judges the whole day
    ).expand(sql=[QUERY.format(shards=SHARDS, shard=shard) for shard in range(SHARDS)])
    # One verdict for the whole day: the check adds up the shards' reports.
    shards >> FulfilmentFailureSensor(
        task_id="check_failures",
        sync_task_id="push_shard",
        max_failure_ratio=0.05,
        trigger_rule="all_done",
        timeout=600,
    )
    # [END howto_sharded]


juspay_sharded_sync()
