"""FulfilmentReportNotifier: the report in a few lines, delivered by another notifier or to the log."""

from __future__ import annotations

import re

import pytest

from airflow_provider_juspay.fulfilment import FulfilmentResult, Outcome
from airflow_provider_juspay.notifications.fulfilment import FulfilmentReportNotifier
from airflow_provider_juspay.sync.report import ReportBuilder
from tests.helpers import FakeTaskInstance, run_dag


def pushed_report(*outcomes: Outcome) -> dict:
    builder = ReportBuilder()
    for i, outcome in enumerate(outcomes):
        builder.add(
            FulfilmentResult(
                order_id=f"N-{i}", outcome=outcome, error_code="RESOURCE_NOT_FOUND", message="No txn"
            )
        )
    return builder.finish().to_dict()


def test_the_message_names_counts_top_errors_and_the_first_failed_orders():
    ti = FakeTaskInstance({("unit_task", "report"): pushed_report(Outcome.SENT, *[Outcome.REJECTED] * 4)})
    sent: list[str] = []
    FulfilmentReportNotifier(notifier=sent.append, max_failures_listed=2).notify({"ti": ti})
    (message,) = sent
    assert "unit_dag / unit_run" in message and "sent 1, rejected 4" in message
    assert "top errors: RESOURCE_NOT_FOUND 4" in message
    # Identical failures read once, with their count and the first ids (as many as listed).
    assert "- 4 x rejected RESOURCE_NOT_FOUND No txn (orders N-1, N-2, ...)" in message
    assert "N-3" not in message and message.count("No txn") == 1
    assert "(4 failures in all)" in message


def test_shards_are_added_up_and_a_missing_report_is_said():
    shards = [pushed_report(Outcome.SENT), pushed_report(Outcome.FAILED)]
    message = FulfilmentReportNotifier(task_id="push").message(
        {"ti": FakeTaskInstance({("push", "report"): shards})}
    )
    assert "2 records: sent 1, failed 1" in message and "1 records failed" in message
    assert "no report was pushed" in FulfilmentReportNotifier().message({"ti": FakeTaskInstance()})


def orders(prefix: str, n: int) -> list[dict]:
    return [
        {"order_id": f"{prefix}-{i}", "fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"}
        for i in range(n)
    ]


@pytest.fixture
def sink(tmp_path, monkeypatch):
    """Where the capturing notifier of the test DAGs writes what it was given."""
    path = tmp_path / "notifications.txt"
    monkeypatch.setenv("JUSPAY_TEST_NOTIFICATIONS", str(path))
    return path


@pytest.mark.e2e
def test_a_real_dag_run_tells_its_success_and_its_failure(airflow_db, sandbox, juspay_conn, sink):
    good = orders("OK", 3)
    assert run_dag("juspay_test_notified", {"records": good}).task_states["push"] == "success"
    unpaid = orders("UNPAID", 4)
    assert run_dag("juspay_test_notified", {"records": unpaid}).task_states["push"] == "failed"
    success, failure = sink.read_text().split("\n=====\n")[:2]
    assert "juspay_test_notified" in success and ": ok" in success and "sent 3" in success
    assert "rejected 4" in failure
    # One line for the four identical refusals, naming the first three orders (the notifier lists 3).
    assert failure.count("rejected RESOURCE_NOT_FOUND") == 1
    assert "4 x rejected RESOURCE_NOT_FOUND" in failure
    assert re.search(r"\(orders UNPAID-\d, UNPAID-\d, UNPAID-\d, \.\.\.\)", failure)
    assert "(4 failures in all)" in failure


@pytest.mark.e2e
def test_on_a_failure_sensor_the_message_names_the_push_whose_log_has_the_cause(
    airflow_db, sandbox, juspay_conn, sink
):
    states = run_dag("juspay_test_notified_check", {"records": orders("UNPAID", 2)}).task_states
    assert states == {"push": "success", "check": "failed"}
    (message,) = [m for m in sink.read_text().split("\n=====\n") if m.strip()]
    assert "task push (checked by check)" in message and "rejected 2" in message
    assert "Every failure and why: the log of task push." in message
    assert "task check:" not in message


@pytest.mark.e2e
def test_push_tasks_carry_a_juspay_dashboard_link(airflow_db, sandbox, juspay_conn, tmp_path, monkeypatch):
    from airflow_provider_juspay.config import portal_url

    monkeypatch.setenv("JUSPAY_TEST_NOTIFICATIONS", str(tmp_path / "n.txt"))
    good = [{"order_id": "LINK-1", "fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"}]
    outcome = run_dag("juspay_test_notified", {"records": good})
    assert outcome.xcom[("push", "_link_JuspayDashboardLink")] == "https://sandbox.portal.juspay.in"
    assert portal_url("https://api.juspay.in") == "https://portal.juspay.in"
    assert portal_url("https://sandbox.juspay.in") == "https://sandbox.portal.juspay.in"
