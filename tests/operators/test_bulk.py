"""BulkFulfilmentOperator in real DAG runs: a SQLite (and PostgreSQL) warehouse into the sandbox."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest

from airflow_provider_juspay.operators.fulfilment import BulkFulfilmentOperator
from tests.helpers import SELECT_ALL, run_dag

pytestmark = pytest.mark.e2e


def assert_report_matches_the_warehouse(report, seeded, sandbox):
    counts = report["counts"]
    assert report["total"] == seeded.total == sum(counts.values())
    assert counts["sent"] == seeded.good
    assert counts["rejected"] == seeded.unknown
    assert counts["invalid"] == seeded.bad
    assert report["errors"] == {"RESOURCE_NOT_FOUND": seeded.unknown, "INVALID_RECORD": seeded.bad}
    assert sandbox.doubles() == {}
    assert len(sandbox.accepted) == seeded.good
    sent_ids = {r.order_id for r in sandbox.requests}
    assert not any(f["order_id"] in sent_ids for f in report["failures"] if f["outcome"] == "invalid")


def test_init_checks_arguments_without_connection_work():
    with pytest.raises(ValueError, match="exactly one source"):
        BulkFulfilmentOperator(task_id="t")
    with pytest.raises(ValueError, match="sql_conn_id"):
        BulkFulfilmentOperator(task_id="t", sql="SELECT 1")
    with pytest.raises(ValueError, match="max_failure_ratio"):
        BulkFulfilmentOperator(task_id="t", records=[], max_failure_ratio=2)
    assert BulkFulfilmentOperator(task_id="t", sql="x.sql", sql_conn_id="w").template_ext == (".sql",)


def test_sqlite_warehouse_every_row_one_outcome(airflow_db, sandbox, juspay_conn, warehouse):
    run = run_dag("juspay_test_bulk", {"sql": SELECT_ALL})
    assert run.state == "success"
    report = run.xcom[("push", "return_value")]
    assert_report_matches_the_warehouse(report, warehouse, sandbox)
    assert report["dry_run"] is False and report["records_per_s"] > 0
    invalid = [f for f in report["failures"] if f["outcome"] == "invalid"]
    assert any("DELIVERED" in f["message"] for f in invalid)
    received = next(r for r in sandbox.requests if r.status == 200)
    assert "customer_email" not in received.form and "updated_at" not in received.form


def test_postgres_warehouse_streams_with_a_server_side_cursor(
    airflow_db, sandbox, juspay_conn, postgres_warehouse
):
    run = run_dag("juspay_test_bulk", {"sql": SELECT_ALL, "sql_conn_id": "warehouse_pg"})
    assert run.state == "success"
    assert_report_matches_the_warehouse(run.xcom[("push", "return_value")], postgres_warehouse, sandbox)


def test_max_failed_ratio_fails_the_task_after_reporting(airflow_db, sandbox, juspay_conn, warehouse):
    run = run_dag("juspay_test_bulk_strict", {"sql": SELECT_ALL})
    assert run.task_states["push"] == "failed"
    report = run.xcom[("push", "report")]
    assert report["total"] == warehouse.total
    assert report["counts"]["sent"] == warehouse.good, "the good rows were still delivered"


def test_dry_run_validates_and_sends_and_writes_nothing(airflow_db, sandbox, juspay_conn, make_warehouse):
    path, warehouse = make_warehouse(600)
    run = run_dag("juspay_test_bulk_dry_run", {"sql": SELECT_ALL})
    report = run.xcom[("push", "return_value")]
    assert report["dry_run"] is True
    assert report["counts"]["invalid"] == warehouse.bad
    assert report["counts"]["not_attempted"] == warehouse.good + warehouse.unknown
    assert sandbox.requests == []
    with closing(sqlite3.connect(path)) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "juspay_fulfilment_ledger" not in tables, "a dry run leaves no ledger behind"


def test_records_from_xcom_with_column_map_and_defaults(airflow_db, sandbox, juspay_conn):
    records = [{"order": f"X-{i}", "note": "ignored"} for i in range(50)]
    run = run_dag("juspay_test_bulk_records", {"records": records})
    report = run.xcom[("push", "return_value")]
    assert report["counts"]["sent"] == 50
    assert {order for order, _ in sandbox.accepted} == {f"X-{i}" for i in range(50)}


def test_revoked_key_fails_the_task_and_counts_the_rest(airflow_db, sandbox, juspay_conn, warehouse):
    sandbox.rotate_key("sk_test_rotated_away_123")
    run = run_dag("juspay_test_bulk", {"sql": SELECT_ALL})
    assert run.task_states["push"] == "failed"
    report = run.xcom[("push", "report")]
    assert report["total"] == warehouse.total
    assert report["counts"]["not_attempted"] >= warehouse.good - 16
    assert sandbox.status_counts[401] <= 16


def test_names_deprecated_in_0_2_are_gone_in_1_0_and_say_so():
    from airflow_provider_juspay.sensors.fulfilment import FulfilmentFailureSensor

    with pytest.raises(TypeError, match=r"max_failed_ratio was renamed .* use max_failure_ratio"):
        BulkFulfilmentOperator(task_id="old_bulk", records=[], max_failed_ratio=0.3)
    with pytest.raises(TypeError, match="max_listed was renamed max_failures_listed"):
        FulfilmentFailureSensor(task_id="old_check", sync_task_id="push", max_listed=7)


def test_limits_are_checked_when_the_dag_is_parsed():
    from airflow_provider_juspay.operators.fulfilment import FulfilmentSyncOperator
    from airflow_provider_juspay.sensors.fulfilment import FulfilmentFailureSensor

    for make in (
        lambda **kw: BulkFulfilmentOperator(task_id="b", records=[], **kw),
        lambda **kw: FulfilmentSyncOperator(task_id="s", records=[], **kw),
        lambda **kw: FulfilmentFailureSensor(task_id="f", sync_task_id="b", **kw),
    ):
        with pytest.raises(ValueError, match="max_failure_ratio"):
            make(max_failure_ratio=1.5)
        with pytest.raises(ValueError, match="max_failures"):
            make(max_failures=-1)
