"""The operators' and sensors' branches as unit tests: execute()/poke() with a stand-in task instance."""

from __future__ import annotations

import json

import pytest
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_juspay.operators.fulfilment import BulkFulfilmentOperator, FulfilmentSyncOperator
from airflow_provider_juspay.sensors.fulfilment import FulfilmentFailureSensor
from airflow_provider_juspay.sensors.order_status import OrderStatusSensor
from airflow_provider_juspay.sync.report import ReportBuilder, RunReport
from tests.helpers import API_KEY, FakeTaskInstance, conn_json, context_with

ROWS = [
    {"order_id": f"U-{i}", "fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"}
    for i in range(5)
]


def bulk(**kwargs) -> BulkFulfilmentOperator:
    return BulkFulfilmentOperator(task_id="push", records=ROWS, max_concurrency=2, **kwargs)


def test_dry_run_sends_nothing_and_reports_what_it_would_send(sandbox, juspay_conn):
    report = bulk(dry_run=True).execute(context_with(FakeTaskInstance()))
    assert (
        report["dry_run"] is True and report["counts"]["not_attempted"] == 5 and report["failure_count"] == 0
    )
    assert sandbox.requests == []


def test_a_refused_key_fails_without_retries_and_pushes_the_report(sandbox, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_JUSPAY_DEFAULT", conn_json(sandbox.base_url).replace(API_KEY, "sk_wrong_1")
    )
    ti = FakeTaskInstance()
    with pytest.raises(AirflowFailException, match="refused the credentials"):
        bulk().execute(context_with(ti))
    assert ti.pushed["report"]["stopped"]["error_code"] == "UNAUTHORIZED"


def test_an_unusable_connection_fails_without_retries(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_JUSPAY_DEFAULT", json.dumps({"conn_type": "juspay", "login": "m1"}))
    with pytest.raises(AirflowFailException, match="API key is missing"):
        bulk().execute(context_with(FakeTaskInstance()))
    with pytest.raises(AirflowFailException, match="API key is missing"):
        FulfilmentSyncOperator(task_id="one", records=ROWS).execute(context_with(FakeTaskInstance()))


def test_limits_decide_once_rows_are_delivered(sandbox, juspay_conn):
    rows = [
        *ROWS,
        {"order_id": "UNPAID-1", "fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"},
    ]
    lenient = BulkFulfilmentOperator(task_id="push", records=rows, max_failures=1)
    assert lenient.execute(context_with(FakeTaskInstance()))["counts"]["rejected"] == 1
    ti = FakeTaskInstance()
    with pytest.raises(AirflowException, match="max_failures=0"):
        BulkFulfilmentOperator(task_id="push", records=rows, max_failures=0).execute(context_with(ti))
    assert ti.pushed["report"]["failure_count"] == 1


def report_with(*outcomes: str, dry_run: bool = False) -> dict:
    from airflow_provider_juspay.fulfilment import FulfilmentResult, Outcome

    builder = ReportBuilder(dry_run=dry_run)
    for i, outcome in enumerate(outcomes):
        builder.add(FulfilmentResult(order_id=f"S-{i}", outcome=Outcome(outcome), error_code="CODE"))
    return builder.finish().to_dict()


@pytest.mark.parametrize(
    "pushed, limits, passes",
    [
        (report_with("sent", "sent"), {}, True),
        (report_with("sent", "rejected"), {}, False),
        (report_with("sent", "rejected"), {"max_failure_ratio": 0.5}, True),
        (report_with("sent", "failed"), {"max_failure_ratio": 0.9}, False),
        (report_with("not_attempted", dry_run=True), {}, True),
        ([report_with("sent"), report_with("rejected")], {"max_failures": 1}, True),
    ],
    ids=["clean", "strict-default", "within-ratio", "undelivered-whatever-the-limit", "dry-run", "shards"],
)
def test_failure_sensor_judges_a_pushed_report(pushed, limits, passes):
    sensor = FulfilmentFailureSensor(task_id="check", sync_task_id="push", **limits)
    ti = FakeTaskInstance({("push", "report"): pushed})
    if passes:
        assert sensor.poke(context_with(ti)) is True
    else:
        with pytest.raises(AirflowFailException):
            sensor.poke(context_with(ti))
    assert RunReport.from_dict(ti.pushed["failures"]).total >= 1


def test_failure_sensor_waits_while_the_sync_has_not_reported():
    sensor = FulfilmentFailureSensor(task_id="check", sync_task_id="push")
    ti = FakeTaskInstance()
    assert sensor.poke(context_with(ti)) is False and ti.pushed == {}


def test_order_sensor_defers_only_when_it_must_wait(sandbox, juspay_conn):
    from airflow.providers.common.compat.sdk import TaskDeferred

    sandbox.orders["WAIT-1"] = "PENDING_VBV"
    waiting = OrderStatusSensor(task_id="wait", order_id="WAIT-1", deferrable=True, timeout=60)
    with pytest.raises(TaskDeferred) as deferred:
        waiting.execute(context_with(FakeTaskInstance()))
    assert deferred.value.trigger.serialize()[1]["target_statuses"] == ["CHARGED"]
    paid = OrderStatusSensor(task_id="wait", order_id="PAID-1", deferrable=True)
    assert paid.execute(context_with(FakeTaskInstance())) is None, "already there: no deferral"


def test_run_history_days_bounds_the_run_history_the_push_writes(sandbox, juspay_conn, tmp_path, monkeypatch):
    import sqlite3
    from datetime import datetime, timedelta, timezone

    from airflow_provider_juspay.sync.ledger.rows import timestamp

    path = tmp_path / "ledger.db"
    monkeypatch.setenv("AIRFLOW_CONN_LEDGER", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    bulk(ledger_conn_id="ledger", run_history_days=2).execute(context_with(FakeTaskInstance()))
    now = datetime.now(timezone.utc)
    with sqlite3.connect(path) as db:
        (claim,) = db.execute("SELECT claim_id FROM juspay_sync_runs").fetchone()
        for age, key in ((3, "old"), (1.5, "recent")):
            db.execute(
                "INSERT INTO juspay_sync_runs (claim_id, merchant_id, ledger_table, started_at, "
                "last_seen_at, lease_s, state) VALUES (?, 'm', 'l', ?, ?, 60, 'success')",
                [key, timestamp(now - timedelta(days=age)), timestamp(now - timedelta(days=age))],
            )
    bulk(ledger_conn_id="ledger", run_history_days=2).execute(context_with(FakeTaskInstance()))
    with sqlite3.connect(path) as db:
        kept = {r[0] for r in db.execute("SELECT claim_id FROM juspay_sync_runs")}
    assert "old" not in kept and {"recent", claim} <= kept and len(kept) == 3
    with pytest.raises(ValueError, match="run_history_days"):
        bulk(run_history_days=0)
