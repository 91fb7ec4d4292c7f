"""Push the records an upstream task produced (an API export, a file, another system) in bulk."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_provider_juspay.operators.fulfilment import BulkFulfilmentOperator


# [START quickstart_dag]
@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["juspay", "example"],
)
def juspay_bulk_from_xcom():
    @task
    def returned_parcels() -> list[dict]:
        """Stands in for a courier's export of parcels returned to the merchant: refund each one."""
        return [{"order": f"RET-{i:05d}", "returned_at": "2026-11-26T09:00:00Z"} for i in range(200)]

    BulkFulfilmentOperator(
        task_id="start_refunds",
        records=returned_parcels(),
        column_map={"order": "order_id", "returned_at": "fulfillment_time"},
        defaults={"fulfillment_status": "SUCCESS", "fulfillment_command": "INITIATE_REFUND"},
    )


juspay_bulk_from_xcom()
# [END quickstart_dag]
