"""DAGs only the system test runs, next to the examples: a deferred wait, a wrong API key, and a
partitioned run (Airflow 3.2+) whose asset event carries its partition key."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Asset, CronPartitionTimetable

from airflow_provider_juspay.operators.fulfilment import BulkFulfilmentOperator, FulfilmentSyncOperator
from airflow_provider_juspay.sensors.order_status import OrderStatusSensor

START = pendulum.datetime(2026, 11, 1, tz="UTC")

with DAG("juspay_system_wait_for_payment", schedule=None, start_date=START, catchup=False, tags=["juspay"]):
    # Deferred: the triggerer polls Juspay, no worker slot is held while the order is unpaid.
    paid = OrderStatusSensor(
        task_id="wait_until_charged",
        order_id="{{ dag_run.conf['order_id'] }}",
        target_statuses=["CHARGED"],
        deferrable=True,
        poke_interval=2,
        timeout=300,
    )
    paid >> FulfilmentSyncOperator(
        task_id="fulfil",
        order_id="{{ dag_run.conf['order_id'] }}",
        fulfillment_status="SUCCESS",
        fulfillment_command="NO_ACTION",
    )

with DAG("juspay_system_wrong_key", schedule=None, start_date=START, catchup=False, tags=["juspay"]):
    # Three retries configured: a refused key must fail at the first try and use none of them.
    FulfilmentSyncOperator(
        task_id="fulfil",
        juspay_conn_id="juspay_wrong_key",
        order_id="SYS-WRONG-KEY-1",
        fulfillment_status="SUCCESS",
        fulfillment_command="NO_ACTION",
        retries=3,
        retry_delay=pendulum.duration(seconds=1),
    )

with DAG(
    "juspay_system_partitioned",
    schedule=CronPartitionTimetable("0 0 * * *", timezone="UTC", key_format="%Y-%m-%d"),
    start_date=START,
    catchup=False,
    tags=["juspay"],
):
    # A partitioned run's asset event carries its partition key, and the run's counts in its extra.
    BulkFulfilmentOperator(
        task_id="push_partition",
        records=[
            {"order_id": f"PART-{{{{ partition_key }}}}-{i}", "fulfillment_status": "SUCCESS"} for i in (1, 2)
        ],
        defaults={"fulfillment_command": "NO_ACTION"},
        outlets=[Asset(name="juspay_partitioned_fulfilment")],
    )
