"""A bulk push with the default pacing (adaptive), records from the conf, for the pacing tests."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_juspay.operators.fulfilment import BulkFulfilmentOperator

with DAG(
    "juspay_test_pacing", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False
):
    BulkFulfilmentOperator(
        task_id="push",
        records="{{ dag_run.conf['records'] | tojson }}",
        defaults={"fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"},
    )

with DAG(
    "juspay_test_pacing_ledger",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
):
    # With a ledger: every task of the merchant draws from one budget kept beside it.
    BulkFulfilmentOperator(
        task_id="push",
        records="{{ dag_run.conf['records'] | tojson }}",
        defaults={"fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"},
        ledger_conn_id="pacing_ledger",
    )
