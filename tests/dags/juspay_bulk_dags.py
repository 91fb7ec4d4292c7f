"""DAGs the bulk operator tests run through ``dag.test()``; SQL and connection ids come from the conf."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_juspay.operators.fulfilment import BulkFulfilmentOperator

START = pendulum.datetime(2026, 1, 1, tz="UTC")
SQL = "{{ dag_run.conf['sql'] }}"
WAREHOUSE = "{{ dag_run.conf.get('sql_conn_id', 'warehouse') }}"

with DAG("juspay_test_bulk", schedule=None, start_date=START, catchup=False):
    # Unknown orders and bad rows are part of the data: allowed here (with no limit, none would be).
    BulkFulfilmentOperator(
        task_id="push",
        sql=SQL,
        sql_conn_id=WAREHOUSE,
        max_concurrency=8,
        fetch_size=50,
        max_failure_ratio=1.0,
    )

with DAG("juspay_test_bulk_strict", schedule=None, start_date=START, catchup=False):
    BulkFulfilmentOperator(task_id="push", sql=SQL, sql_conn_id=WAREHOUSE, max_failure_ratio=0.01)

with DAG("juspay_test_bulk_dry_run", schedule=None, start_date=START, catchup=False):
    BulkFulfilmentOperator(
        task_id="push",
        sql=SQL,
        sql_conn_id=WAREHOUSE,
        dry_run=True,
        ledger_conn_id="warehouse",
        max_failure_ratio=1.0,
    )

for dag_id, limit in (("juspay_test_bulk_records", None), ("juspay_test_bulk_records_lenient", 1.0)):
    with DAG(dag_id, schedule=None, start_date=START, catchup=False, render_template_as_native_obj=True):
        BulkFulfilmentOperator(
            task_id="push",
            records="{{ dag_run.conf['records'] }}",
            column_map={"order": "order_id"},
            defaults={"fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"},
            max_failure_ratio=limit,
        )

with DAG("juspay_test_bulk_ledger", schedule=None, start_date=START, catchup=False):
    BulkFulfilmentOperator(
        task_id="push",
        sql=SQL,
        sql_conn_id=WAREHOUSE,
        ledger_conn_id="{{ dag_run.conf.get('ledger_conn_id', 'warehouse') }}",
        max_concurrency=8,
        max_failure_ratio=1.0,
    )

with DAG("juspay_test_bulk_ledger_short_lease", schedule=None, start_date=START, catchup=False):
    # A dead run's keys go again after 2 s (the default lease is 15 minutes).
    BulkFulfilmentOperator(
        task_id="push",
        sql=SQL,
        sql_conn_id=WAREHOUSE,
        ledger_conn_id="warehouse",
        max_concurrency=8,
        ledger_lease=2,
        max_failure_ratio=1.0,
    )
