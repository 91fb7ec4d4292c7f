"""The peer of case 1: one HttpOperator task per record, by dynamic task mapping."""

from __future__ import annotations

import os

import pendulum
from airflow.providers.http.operators.http import HttpOperator
from airflow.sdk import DAG

N = int(os.environ.get("BENCH_MAPPED_N", "5"))
PREFIX = os.environ.get("BENCH_PREFIX", "mapped")

with DAG(
    "bench_http_mapped", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False
):
    HttpOperator.partial(
        task_id="post",
        http_conn_id="juspay_http",
        method="POST",
        data={"fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"},
        headers={
            "Authorization": os.environ.get("BENCH_AUTHORIZATION", ""),
            "x-merchantid": "bench_merchant",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    ).expand(endpoint=[f"/orders/{PREFIX}-{i}/fulfillment" for i in range(N)])
