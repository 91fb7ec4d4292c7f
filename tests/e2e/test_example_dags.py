"""The DAGs users copy from dags_examples/: they parse without touching connections, and they run."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest

from tests.helpers import API_KEY, DAY, REPO, DagBag, airflow_dags_test, conn_json, xcoms

pytestmark = pytest.mark.e2e

EXAMPLES = REPO / "dags_examples"


@pytest.fixture
def no_connection_lookups(monkeypatch):
    """Record every connection lookup; parse-time lookups are a bug (they hit the DB every parse)."""
    from airflow.sdk import BaseHook, Connection

    calls: list[str] = []

    def record(conn_id, *args, **kwargs):
        calls.append(conn_id)
        raise AssertionError(f"connection {conn_id!r} fetched at parse time")

    monkeypatch.setattr(BaseHook, "get_connection", classmethod(lambda cls, conn_id: record(conn_id)))
    monkeypatch.setattr(Connection, "get", classmethod(lambda cls, conn_id, *a, **k: record(conn_id)))
    return calls


def test_example_dags_import_without_errors_or_connection_lookups(airflow_db, no_connection_lookups):
    bag = DagBag(dag_folder=str(EXAMPLES))
    assert bag.import_errors == {}
    assert "juspay_fulfil_from_upstream" in bag.dag_ids
    assert no_connection_lookups == []
    for dag_id in bag.dag_ids:
        assert "juspay" in bag.get_dag(dag_id).tags


def test_upstream_example_runs_with_airflow_dags_test(airflow_db, sandbox):
    env = {
        **os.environ,
        "AIRFLOW__CORE__DAGS_FOLDER": str(EXAMPLES),
        "AIRFLOW_CONN_JUSPAY_DEFAULT": conn_json(sandbox.base_url),
    }
    done = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", "juspay_fulfil_from_upstream"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    received = {(r.order_id, r.form["fulfillment_command"]): r for r in sandbox.requests}
    assert set(received) == {
        ("ORD-1001", "NO_ACTION"),
        ("ORD-1002", "INITIATE_REFUND"),
        ("ORD-1003", "INITIATE_REFUND"),
    }
    delivered = received[("ORD-1001", "NO_ACTION")].form
    assert delivered["fulfillment_time"] == "2026-11-26T13:00:00", "18:30 IST sent as UTC, the default zone"
    assert delivered["fulfillment_id"] == "AWB-77001"
    assert all(r.status == 200 for r in sandbox.requests)
    assert "state=success" in done.stdout + done.stderr
    assert API_KEY not in done.stdout + done.stderr, "the task log shows the API key"


def test_nightly_example_pushes_the_days_rows_with_airflow_dags_test(airflow_db, sandbox, warehouse):
    env = {
        **os.environ,
        "AIRFLOW__CORE__DAGS_FOLDER": str(EXAMPLES),
        "AIRFLOW_CONN_JUSPAY_DEFAULT": conn_json(sandbox.base_url),
    }
    # A manual run's data interval ends at its logical date: the run of DAY + 1 covers DAY's rows.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "airflow",
            "dags",
            "test",
            "juspay_nightly_sync",
            (DAY + timedelta(days=1)).isoformat(),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = xcoms("juspay_nightly_sync")[("push_fulfilments", "return_value")]
    assert report["total"] == warehouse.total
    assert report["counts"]["sent"] == warehouse.good and report["counts"]["rejected"] == warehouse.unknown
    assert report["counts"]["invalid"] == warehouse.bad
    assert len(sandbox.accepted) == warehouse.good and sandbox.doubles() == {}
    assert (
        "Columns not sent (they name no record field): id, customer_email, updated_at"
        in done.stdout + done.stderr
    )


def test_nightly_example_sends_nothing_for_a_day_without_rows(airflow_db, sandbox, warehouse):
    env = {
        **os.environ,
        "AIRFLOW__CORE__DAGS_FOLDER": str(EXAMPLES),
        "AIRFLOW_CONN_JUSPAY_DEFAULT": conn_json(sandbox.base_url),
    }
    done = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", "juspay_nightly_sync", DAY.isoformat()],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert xcoms("juspay_nightly_sync")[("push_fulfilments", "return_value")]["total"] == 0
    assert sandbox.requests == []


def run_example(dag_id: str, sandbox, *args: str) -> subprocess.CompletedProcess:
    done = airflow_dags_test(dag_id, sandbox, *args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_sharded_example_maps_one_task_per_shard_and_covers_every_row_once(airflow_db, sandbox, warehouse):
    run_example("juspay_sharded_sync", sandbox, (DAY + timedelta(days=1)).isoformat())
    reports = [v for (task, key, *_), v in xcoms("juspay_sharded_sync").items() if key == "return_value"]
    assert len(reports) == 4, "one mapped task per shard"
    summary = xcoms("juspay_sharded_sync")[("check_failures", "report")]
    assert summary["total"] == warehouse.total, "the failure check added up the four shards"
    assert summary["failure_count"] == warehouse.unknown + warehouse.bad
    assert sum(r["total"] for r in reports) == warehouse.total
    assert sum(r["counts"]["sent"] for r in reports) == warehouse.good
    assert sandbox.doubles() == {} and len(sandbox.accepted) == warehouse.good


def test_xcom_example_refunds_every_returned_parcel(airflow_db, sandbox):
    run_example("juspay_bulk_from_xcom", sandbox)
    report = xcoms("juspay_bulk_from_xcom")[("start_refunds", "return_value")]
    assert report["counts"]["sent"] == report["total"] == 200
    assert {command for _, command in sandbox.accepted} == {"INITIATE_REFUND"}


def test_retry_failed_example_sends_only_the_failed_keys(airflow_db, sandbox, warehouse):
    night = (DAY + timedelta(days=1)).isoformat()
    run_example("juspay_nightly_sync", sandbox, night)
    delivered_at_night = len(sandbox.accepted)
    sandbox.orders.update({order_id: "CHARGED" for order_id in warehouse.unknown_ids})  # paid by morning
    run_example("juspay_retry_failed", sandbox, night + "T06:00:00+00:00")
    report = xcoms("juspay_retry_failed")[("retry_failed", "return_value")]
    assert report["total"] == report["counts"]["sent"] == warehouse.unknown
    assert len(sandbox.accepted) == delivered_at_night + warehouse.unknown and sandbox.doubles() == {}
    assert {order for order, _ in sandbox.accepted} >= set(warehouse.unknown_ids)
