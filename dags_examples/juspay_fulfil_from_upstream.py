"""Tell Juspay about orders that an upstream task produced (ad-hoc pushes, event-driven DAGs).

Needs a ``juspay_default`` connection, e.g.
``AIRFLOW_CONN_JUSPAY_DEFAULT='{"conn_type": "juspay", "login": "<merchant id>", "password": "<api key>"}'``.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_provider_juspay.operators.fulfilment import FulfilmentSyncOperator


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["juspay", "example"],
)
def juspay_fulfil_from_upstream():
    @task(multiple_outputs=True)
    def delivered_order() -> dict:
        """Stands in for a real upstream: a courier webhook, a delivery system's export, ..."""
        return {"order_id": "ORD-1001", "delivered_at": "2026-11-26T18:30:00+05:30", "awb": "AWB-77001"}

    @task
    def refunds_to_start() -> list[dict]:
        return [
            {
                "order_id": "ORD-1002",
                "fulfillment_status": "SUCCESS",
                "fulfillment_command": "INITIATE_REFUND",
            },
            {
                "order_id": "ORD-1003",
                "fulfillment_status": "SUCCESS",
                "fulfillment_command": "INITIATE_REFUND",
            },
        ]

    delivered = delivered_order()
    # [START howto_single_order]
    tell_delivery = FulfilmentSyncOperator(
        task_id="tell_juspay_delivered",
        order_id="{{ ti.xcom_pull(task_ids='delivered_order')['order_id'] }}",
        fulfillment_status="SUCCESS",
        fulfillment_command="NO_ACTION",
        fulfillment_time="{{ ti.xcom_pull(task_ids='delivered_order')['delivered_at'] }}",
        fulfillment_id="{{ ti.xcom_pull(task_ids='delivered_order')['awb'] }}",
        fulfillment_data={
            "courier": "BlueDart",
            "awb": "{{ ti.xcom_pull(task_ids='delivered_order')['awb'] }}",
        },
    )
    # [END howto_single_order]
    delivered >> tell_delivery

    # [START howto_single_records]
    FulfilmentSyncOperator(task_id="tell_juspay_refunds", records=refunds_to_start())
    # [END howto_single_records]


juspay_fulfil_from_upstream()
