"""DAGs the operator tests run through ``dag.test()``; inputs come from the run's conf."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_juspay.operators.fulfilment import FulfilmentSyncOperator

START = pendulum.datetime(2026, 1, 1, tz="UTC")

with DAG("juspay_test_single", schedule=None, start_date=START, catchup=False):
    FulfilmentSyncOperator(
        task_id="fulfil",
        order_id="{{ dag_run.conf['order_id'] }}",
        fulfillment_status="{{ dag_run.conf.get('status', 'SUCCESS') }}",
        fulfillment_command="{{ dag_run.conf.get('command', 'NO_ACTION') }}",
        fulfillment_time="{{ dag_run.conf.get('time', '') }}",
        fulfillment_data={"run": "{{ run_id }}"},
    )

with DAG(
    "juspay_test_records", schedule=None, start_date=START, catchup=False, render_template_as_native_obj=True
):
    FulfilmentSyncOperator(task_id="fulfil", records="{{ dag_run.conf['records'] }}")
    FulfilmentSyncOperator(
        task_id="fulfil_lenient",
        records="{{ dag_run.conf.get('lenient_records', []) }}",
        defaults={"fulfillment_command": "INVOICE"},
        max_failure_ratio=1.0,
    )
