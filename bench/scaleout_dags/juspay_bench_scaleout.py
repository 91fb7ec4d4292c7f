"""The scale-out benchmark's DAG: the day's rows split in ``shards`` (from the run's conf), one mapped
push each, spread by the executor over its workers."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_provider_juspay.operators.fulfilment import BulkFulfilmentOperator


@dag(schedule=None, start_date=pendulum.datetime(2026, 11, 1, tz="UTC"), catchup=False, tags=["juspay"])
def juspay_bench_scaleout():
    @task
    def shard_queries(dag_run=None) -> list[str]:
        shards = int(dag_run.conf.get("shards", 1))
        table = dag_run.conf.get("table", "bench_fulfilments")
        return [
            f"SELECT order_id, fulfillment_status, fulfillment_command FROM {table} "
            f"WHERE id % {shards} = {shard} ORDER BY id"
            for shard in range(shards)
        ]

    BulkFulfilmentOperator.partial(
        task_id="push_shard", sql_conn_id="warehouse", max_concurrency=16, max_failure_ratio=0.0
    ).expand(sql=shard_queries())


juspay_bench_scaleout()
