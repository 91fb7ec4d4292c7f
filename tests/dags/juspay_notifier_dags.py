"""A push whose success and failure are told through FulfilmentReportNotifier to a capturing notifier."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_juspay.notifications.fulfilment import FulfilmentReportNotifier
from airflow_provider_juspay.operators.fulfilment import BulkFulfilmentOperator
from airflow_provider_juspay.sensors.fulfilment import FulfilmentFailureSensor
from tests.notifications.capture import CapturingNotifier

START = pendulum.datetime(2026, 1, 1, tz="UTC")

with DAG(
    "juspay_test_notified", schedule=None, start_date=START, catchup=False, render_template_as_native_obj=True
):
    tell = FulfilmentReportNotifier(notifier=CapturingNotifier(), max_failures_listed=3)
    BulkFulfilmentOperator(
        task_id="push",
        records="{{ dag_run.conf['records'] }}",
        on_success_callback=tell,
        on_failure_callback=tell,
    )

with DAG(
    "juspay_test_notified_check",
    schedule=None,
    start_date=START,
    catchup=False,
    render_template_as_native_obj=True,
):
    # As the nightly example: the notifier on the failure sensor, which fails when the push had failures.
    push = BulkFulfilmentOperator(
        task_id="push", records="{{ dag_run.conf['records'] }}", max_failure_ratio=1.0
    )
    push >> FulfilmentFailureSensor(
        task_id="check",
        sync_task_id="push",
        max_failure_ratio=0.0,
        trigger_rule="all_done",
        on_failure_callback=FulfilmentReportNotifier(notifier=CapturingNotifier()),
    )
