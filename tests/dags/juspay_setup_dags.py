"""DAGs of a new user's ordinary set-up mistakes (issue 17), run through ``dag.test()``."""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG
from airflow.timetables.interval import CronDataIntervalTimetable

from airflow_provider_juspay.operators.fulfilment import BulkFulfilmentOperator

START = pendulum.datetime(2026, 11, 1, tz="UTC")
#: As the README teaches: the rows of the run's data interval.
INTERVAL_SQL = (
    "SELECT * FROM fulfilments WHERE updated_at >= '{{ data_interval_start.to_datetime_string() }}' "
    "AND updated_at < '{{ data_interval_end.to_datetime_string() }}' ORDER BY id"
)
#: An Airflow retry would show as a second try: these tasks may retry at once.
RETRY = {"retries": 1, "retry_delay": timedelta(seconds=0)}

# The trap: a plain cron string is a CronTriggerTimetable in Airflow 3, whose interval is empty.
for dag_id, schedule in (
    ("juspay_test_cron_daily", "@daily"),
    ("juspay_test_interval_daily", CronDataIntervalTimetable("@daily", timezone="UTC")),
):
    with DAG(dag_id, schedule=schedule, start_date=START, catchup=False):
        # The seeded day has unknown orders and bad rows: allowed here (with no limit, none would be).
        BulkFulfilmentOperator(
            task_id="push", sql=INTERVAL_SQL, sql_conn_id="warehouse", max_failure_ratio=1.0, **RETRY
        )

with DAG(
    "juspay_test_setup", schedule=None, start_date=START, catchup=False, render_template_as_native_obj=True
):
    # Records from the conf, as an upstream task's XCom; juspay_conn_id as a user may get it wrong.
    BulkFulfilmentOperator(
        task_id="push",
        records="{{ dag_run.conf['records'] }}",
        juspay_conn_id="{{ dag_run.conf.get('juspay_conn_id', 'juspay_default') }}",
        failures_path="{{ dag_run.conf.get('failures_path') }}",
        **RETRY,
    )

for dag_id, min_rows in (("juspay_test_setup_sql", None), ("juspay_test_setup_min_rows", 1)):
    with DAG(dag_id, schedule=None, start_date=START, catchup=False):
        BulkFulfilmentOperator(
            task_id="push",
            sql="{{ dag_run.conf['sql'] }}",
            sql_conn_id="{{ dag_run.conf.get('sql_conn_id', 'warehouse') }}",
            min_rows=min_rows,
            **RETRY,
        )

with DAG("juspay_test_ledger_lost", schedule=None, start_date=START, catchup=False):
    # The lease of the ledger test that loses its database (the default is 60 s; the test sets a shorter one).
    BulkFulfilmentOperator(
        task_id="push",
        sql="{{ dag_run.conf['sql'] }}",
        sql_conn_id="warehouse",
        ledger_conn_id="{{ dag_run.conf['ledger_conn_id'] }}",
        ledger_lease=float(os.environ.get("JUSPAY_TEST_LEASE", "60")),
        max_concurrency=8,
        max_failure_ratio=1.0,
    )
