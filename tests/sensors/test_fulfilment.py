"""The failure check and the order-status sensor in real DAG runs against the sandbox."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from contextlib import closing
from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_juspay.fulfilment import FulfilmentRecord
from airflow_provider_juspay.sensors.fulfilment import FulfilmentFailureSensor
from airflow_provider_juspay.sync.ledger import Ledger
from tests.helpers import MERCHANT_ID, SELECT_ALL, conn_json, run_dag

pytestmark = pytest.mark.e2e


def test_failure_check_passes_fails_and_soft_fails_on_a_real_report(
    airflow_db, sandbox, juspay_conn, warehouse
):
    run = run_dag("juspay_test_failure_check", {"sql": SELECT_ALL})
    assert run.task_states["push"] == "success"
    assert run.task_states["strict"] == "failed"
    assert run.task_states["lenient"] == "success"
    assert run.task_states["soft"] == "skipped"
    failures = run.xcom[("strict", "report")]
    assert failures["failure_count"] == warehouse.unknown + warehouse.bad
    assert failures["errors"] == {"RESOURCE_NOT_FOUND": warehouse.unknown, "INVALID_RECORD": warehouse.bad}
    assert len(failures["failures"]) == 5, "capped at max_failures_listed"
    assert {f["order_id"] for f in failures["failures"]} & set(warehouse.unknown_ids)


def test_failure_check_reads_the_ledger_window(airflow_db, sandbox, juspay_conn, warehouse):
    since = (datetime.now(timezone.utc) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S")
    run_dag("juspay_test_bulk_ledger", {"sql": SELECT_ALL})
    run = run_dag("juspay_test_ledger_check", {"since": since})
    assert run.task_states["check"] == "success"
    summary = run.xcom[("check", "report")]
    assert (
        summary["failure_count"] == warehouse.unknown
        and summary["total"] == warehouse.good + warehouse.unknown
    )
    assert summary["errors"] == {"RESOURCE_NOT_FOUND": warehouse.unknown}


def test_failure_check_in_reschedule_mode_waits_for_in_flight_keys_then_soft_fails(
    airflow_db, sandbox, juspay_conn, warehouse
):
    since = (datetime.now(timezone.utc) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S")
    path = json.loads(os.environ["AIRFLOW_CONN_WAREHOUSE"])["host"]
    with closing(sqlite3.connect(path)) as db:
        ledger = Ledger(db, merchant_id=MERCHANT_ID)
        ledger.ensure_table()
        record = FulfilmentRecord.from_mapping(
            {"order_id": "STUCK-1", "fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"}
        )
        list(ledger.filter([record]))  # in flight, as if a sync were still running
    run = run_dag("juspay_test_ledger_check", {"since": since})
    assert run.task_states["check"] == "skipped", "timed out waiting, soft_fail skips"


def test_failure_check_needs_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one"):
        FulfilmentFailureSensor(task_id="x")
    with pytest.raises(ValueError, match="run_id or a time window"):
        FulfilmentFailureSensor(task_id="x", ledger_conn_id="w")


@pytest.mark.parametrize("task_id", ["wait_poke", "wait_deferred"])
def test_order_status_sensor_succeeds_on_charged(airflow_db, sandbox, juspay_conn, task_id):
    run = run_dag("juspay_test_order_status", {"order_id": "PAID-1"})
    assert run.task_states[task_id] == "success"


@pytest.mark.parametrize("order_id", ["DECLINED-1", "UNKNOWN-1"])
def test_order_status_sensor_fails_fast_on_terminal_failure_and_not_found(
    airflow_db, sandbox, juspay_conn, order_id
):
    sandbox.orders["DECLINED-1"] = "JUSPAY_DECLINED"
    run = run_dag("juspay_test_order_status", {"order_id": order_id})
    assert run.task_states == {"wait_poke": "failed", "wait_deferred": "failed"}
    assert sum(1 for r in sandbox.requests if r.method == "GET") <= 4, "failed fast, did not poll on"


def test_rescheduled_order_sensor_waits_out_the_not_found_grace_then_fails(airflow_db, sandbox, juspay_conn):
    started = time.monotonic()
    run = run_dag("juspay_test_order_status_reschedule", {"order_id": "UNKNOWN-5"})
    assert run.task_states["wait"] == "failed"
    polls = [r for r in sandbox.requests if r.method == "GET"]
    assert len(polls) >= 2, "NOT_FOUND was polled again after a reschedule, within the grace"
    # Had each reschedule restarted the 2 s grace, it would have polled on to the 20 s timeout.
    assert time.monotonic() - started < 15


def test_rescheduled_order_sensor_succeeds_when_the_order_appears_within_the_grace(
    airflow_db, sandbox, juspay_conn
):
    sandbox.orders["LATE-1"] = "NOT_FOUND"
    timer = threading.Timer(1.0, lambda: sandbox.orders.__setitem__("LATE-1", "CHARGED"))
    timer.start()
    run = run_dag("juspay_test_order_status_reschedule", {"order_id": "LATE-1"})
    timer.join()
    assert run.task_states["wait"] == "success"


def test_failure_check_fails_on_transient_failures_whatever_its_ratio(
    airflow_db, sandbox, monkeypatch, warehouse
):
    monkeypatch.setenv("AIRFLOW_CONN_JUSPAY_DEFAULT", conn_json(sandbox.base_url, max_attempts=1))
    sandbox.script("error", 3)  # three rows fail for good: a small share, but not delivered
    run = run_dag("juspay_test_failure_check", {"sql": SELECT_ALL})
    assert run.task_states["push"] == "failed"
    assert run.task_states["lenient"] == "failed", "max_failure_ratio=0.5 does not excuse undelivered rows"
    summary = run.xcom[("lenient", "report")]
    assert summary["counts"]["failed"] == 3 and summary["failure_ratio"] < 0.5


def test_failure_check_counts_keys_left_in_flight_past_their_lease(
    airflow_db, sandbox, juspay_conn, warehouse
):
    since = (datetime.now(timezone.utc) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S")
    path = json.loads(os.environ["AIRFLOW_CONN_WAREHOUSE"])["host"]
    with closing(sqlite3.connect(path)) as db:
        ledger = Ledger(db, merchant_id=MERCHANT_ID, lease_s=0.01)
        ledger.ensure_table()
        record = FulfilmentRecord.from_mapping(
            {"order_id": "DEAD-1", "fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"}
        )
        list(ledger.filter([record]))  # in flight in a process that then died
    time.sleep(0.05)
    run = run_dag("juspay_test_ledger_check", {"since": since})
    assert run.task_states["check"] != "success", "a key a dead process left is not delivered"
    summary = run.xcom[("check", "report")]
    assert summary["errors"] == {"ABANDONED_IN_FLIGHT": 1} and summary["counts"]["not_attempted"] == 1


def test_failure_check_fails_at_once_when_the_push_ended_without_a_report(
    airflow_db, sandbox, juspay_conn, warehouse, capfd
):
    """A push whose query does not run fails before it has a report: the check says so, at once, instead
    of waiting out its timeout for a report that will never come (or passing on the reports it has)."""
    started = time.monotonic()
    run = run_dag("juspay_test_failure_check", {"sql": "SELECT * FROM no_such_table"})
    output = "".join(capfd.readouterr())
    assert run.task_states["push"] == "failed"
    assert run.task_states["strict"] == "failed" and run.task_states["lenient"] == "failed"
    assert run.task_states["soft"] == "skipped", "soft_fail still applies"
    assert "1 of 1 instances of 'push' ended without a report (push: failed)" in output
    assert time.monotonic() - started < 25, "judged at once, not after the sensors' 30 s timeout"
    assert sandbox.requests == []
