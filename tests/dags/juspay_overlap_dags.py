"""A push that starts at the same moment as another process's: a file barrier, then the bulk push."""

from __future__ import annotations

import pathlib
import time
import uuid

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_juspay.operators.fulfilment import BulkFulfilmentOperator

with DAG(
    "juspay_test_overlap", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False
):

    @task
    def barrier(dag_run=None) -> None:
        """Arrive, then wait until every run has arrived, so that the pushes race for the same keys."""
        folder = pathlib.Path(dag_run.conf["barrier"])
        (folder / uuid.uuid4().hex).touch()
        deadline = time.monotonic() + 120
        while len(list(folder.iterdir())) < dag_run.conf["parties"]:
            if time.monotonic() > deadline:
                raise TimeoutError("the other run never arrived")
            time.sleep(0.005)

    barrier() >> BulkFulfilmentOperator(
        task_id="push",
        sql="{{ dag_run.conf['sql'] }}",
        sql_conn_id="warehouse",
        ledger_conn_id="{{ dag_run.conf['ledger_conn_id'] }}",
        max_concurrency=8,
        fetch_size=100,
        max_failure_ratio=1.0,  # the seeded rows include unknown orders and bad rows
    )
