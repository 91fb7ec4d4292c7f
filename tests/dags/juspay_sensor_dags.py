"""DAGs the sensor tests run through ``dag.test()``."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_juspay.operators.fulfilment import BulkFulfilmentOperator
from airflow_provider_juspay.sensors.fulfilment import FulfilmentFailureSensor, OrderStatusSensor

START = pendulum.datetime(2026, 1, 1, tz="UTC")

with DAG("juspay_test_failure_check", schedule=None, start_date=START, catchup=False):
    push = BulkFulfilmentOperator(
        task_id="push", sql="{{ dag_run.conf['sql'] }}", sql_conn_id="warehouse", max_failure_ratio=1.0
    )
    strict = FulfilmentFailureSensor(
        task_id="strict",
        sync_task_id="push",
        trigger_rule="all_done",
        poke_interval=1,
        timeout=30,
        max_failures_listed=5,
    )
    lenient = FulfilmentFailureSensor(
        task_id="lenient",
        sync_task_id="push",
        max_failure_ratio=0.5,
        trigger_rule="all_done",
        mode="reschedule",
        poke_interval=1,
        timeout=30,
    )
    soft = FulfilmentFailureSensor(
        task_id="soft",
        sync_task_id="push",
        soft_fail=True,
        trigger_rule="all_done",
        poke_interval=1,
        timeout=30,
    )
    push >> [strict, lenient, soft]

with DAG("juspay_test_ledger_check", schedule=None, start_date=START, catchup=False):
    FulfilmentFailureSensor(
        task_id="check",
        ledger_conn_id="warehouse",
        since="{{ dag_run.conf['since'] }}",
        max_failure_ratio=0.5,
        mode="reschedule",
        poke_interval=1,
        timeout=3,
        soft_fail=True,
    )

with DAG("juspay_test_order_status", schedule=None, start_date=START, catchup=False):
    OrderStatusSensor(
        task_id="wait_poke",
        order_id="{{ dag_run.conf['order_id'] }}",
        poke_interval=0.2,
        timeout=5,
        not_found_grace=0,
    )
    OrderStatusSensor(
        task_id="wait_deferred",
        order_id="{{ dag_run.conf['order_id'] }}",
        deferrable=True,
        poke_interval=0.2,
        timeout=5,
        not_found_grace=0,
    )

with DAG("juspay_test_order_status_reschedule", schedule=None, start_date=START, catchup=False):
    OrderStatusSensor(
        task_id="wait",
        order_id="{{ dag_run.conf['order_id'] }}",
        mode="reschedule",
        poke_interval=0.5,
        timeout=20,
        not_found_grace=2,
    )
