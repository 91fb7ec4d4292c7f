"""DAGs the file-source tests run through ``dag.test()``; the path and the export come from the conf."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_juspay.operators.fulfilment import BulkFulfilmentOperator

START = pendulum.datetime(2026, 1, 1, tz="UTC")

with DAG("juspay_test_files", schedule=None, start_date=START, catchup=False):
    BulkFulfilmentOperator(
        task_id="push",
        path="{{ dag_run.conf['path'] }}",
        failures_path="{{ dag_run.conf.get('failures_path') or '' }}",
        column_map={"order": "order_id", "status": "fulfillment_status"},
        defaults={"fulfillment_command": "NO_ACTION"},
        ledger_conn_id="{{ dag_run.conf.get('ledger_conn_id') or '' }}",
        max_concurrency=8,
        max_failure_ratio=1.0,
        max_failures_listed=3,
    )

with DAG("juspay_test_sql_export", schedule=None, start_date=START, catchup=False):
    BulkFulfilmentOperator(
        task_id="push",
        sql="{{ dag_run.conf['sql'] }}",
        sql_conn_id="warehouse",
        failures_path="{{ dag_run.conf['failures_path'] }}",
        max_failure_ratio=1.0,
    )

with DAG("juspay_test_files_dry_run", schedule=None, start_date=START, catchup=False):
    BulkFulfilmentOperator(
        task_id="push",
        path="{{ dag_run.conf['path'] }}",
        failures_path="{{ dag_run.conf['failures_path'] }}",
        column_map={"order": "order_id", "status": "fulfillment_status"},
        defaults={"fulfillment_command": "NO_ACTION"},
        dry_run=True,
        max_failure_ratio=1.0,
    )
