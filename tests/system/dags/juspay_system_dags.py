"""DAGs only the system test runs, next to the examples: a deferred wait, and a wrong API key."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_juspay.operators.fulfilment import FulfilmentSyncOperator
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
