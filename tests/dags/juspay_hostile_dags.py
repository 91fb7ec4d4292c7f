"""Bulk pushes of generated junk rows from XCom, JSON text and SQL; the ledger comes from the conf."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_juspay.operators.fulfilment import BulkFulfilmentOperator
from tests.hostile import json_junk_rows

START = pendulum.datetime(2026, 1, 1, tz="UTC")
LEDGER = "{{ dag_run.conf.get('ledger_conn_id') or '' }}"
COMMON = {
    "ledger_conn_id": LEDGER,
    "max_concurrency": 8,
    "max_failures_listed": 5000,
    "max_failure_ratio": 1.0,
}

with DAG("juspay_test_hostile_xcom", schedule=None, start_date=START, catchup=False):

    @task
    def junk(dag_run=None) -> list:
        return json_junk_rows(dag_run.conf["n"], dag_run.conf["seed"], xcom_safe=True)  # what XCom can hold

    BulkFulfilmentOperator(task_id="push", records=junk(), **COMMON)

with DAG("juspay_test_hostile_json", schedule=None, start_date=START, catchup=False):
    BulkFulfilmentOperator(task_id="push", records="{{ dag_run.conf['records_json'] }}", **COMMON)

with DAG("juspay_test_hostile_sql", schedule=None, start_date=START, catchup=False):
    BulkFulfilmentOperator(
        task_id="push",
        sql="SELECT * FROM junk ORDER BY id",
        sql_conn_id="{{ dag_run.conf['sql_conn_id'] }}",
        fetch_size=97,
        **COMMON,
    )
