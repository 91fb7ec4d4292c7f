"""A push whose success and failure are told through FulfilmentReportNotifier to a capturing notifier."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_juspay.notifications.fulfilment import FulfilmentReportNotifier
from airflow_provider_juspay.operators.fulfilment import BulkFulfilmentOperator
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
