"""A new user's ordinary set-up mistakes, in real DAG runs: each ends in a clear failure that says what
fixes it (without Airflow retries where a retry cannot help), never a green run that did nothing, and
never a credential sent where it does not belong (issue 17)."""

from __future__ import annotations

import csv
import json
import os
import socket
from contextlib import closing
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tests.helpers import API_KEY, REPO, DagBag, conn_json, xcoms

pytestmark = pytest.mark.e2e

GOOD = {"fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"}


def run(dag_id: str, conf: dict | None = None, logical_date: datetime | None = None):
    """``dag.test()`` of a DAG in tests/dags/juspay_setup_dags.py: the run's state, each task's state and
    try number, and the XComs."""
    from airflow.utils.session import create_session

    dag = DagBag(dag_folder=str(REPO / "tests" / "dags" / "juspay_setup_dags.py")).get_dag(dag_id)
    kwargs = {"logical_date": logical_date} if logical_date else {}
    dagrun = dag.test(run_conf=conf or {}, **kwargs)
    with create_session() as session:
        tis = {
            ti.task_id: (str(ti.state), ti.try_number) for ti in dagrun.get_task_instances(session=session)
        }
    return str(dagrun.state), tis, xcoms(dag_id, dagrun.run_id)


# -- an empty data interval ------------------------------------------------------------------------


def test_a_plain_cron_schedule_fails_before_reading_with_the_fix(
    airflow_db, sandbox, juspay_conn, warehouse, capfd
):
    """'@daily' is a CronTriggerTimetable in Airflow 3: start == end, and the templated query reads 0 rows."""
    state, tis, _ = run("juspay_test_cron_daily", logical_date=datetime(2026, 11, 27, tzinfo=timezone.utc))
    out = capfd.readouterr().out
    assert state == "failed" and tis["push"] == ("failed", 1), "failed at once, no Airflow retry"
    assert "data interval is empty" in out and "CronDataIntervalTimetable" in out and "sql" in out
    assert sandbox.requests == []


def test_the_interval_timetable_syncs_the_day(airflow_db, sandbox, juspay_conn, warehouse):
    state, tis, xcom = run(
        "juspay_test_interval_daily", logical_date=datetime(2026, 11, 27, tzinfo=timezone.utc)
    )
    assert state == "success" and tis["push"] == ("success", 1)
    report = xcom[("push", "return_value")]
    assert report["total"] == warehouse.total and report["counts"]["sent"] == warehouse.good


def test_a_source_that_reads_no_rows_warns_and_min_rows_fails_it(
    airflow_db, sandbox, juspay_conn, warehouse, capfd
):
    nothing = {"sql": "SELECT * FROM fulfilments WHERE updated_at < '2000-01-01'"}
    state, _, xcom = run("juspay_test_setup_sql", nothing)
    out = capfd.readouterr().out
    assert state == "success" and xcom[("push", "return_value")]["total"] == 0
    assert "The source read 0 rows" in out and "NO ROWS" in out
    state, tis, _ = run("juspay_test_setup_min_rows", nothing)
    out = capfd.readouterr().out
    # Rows that have not landed yet may land before the retry: this one is retried.
    assert state == "failed" and tis["push"] == ("failed", 2)
    assert "the source read 0 rows, fewer than min_rows=1" in out


# -- a connection of another type ------------------------------------------------------------------


def test_a_postgres_connection_as_juspay_conn_id_sends_nothing_anywhere(
    airflow_db, sandbox, juspay_conn, monkeypatch, capfd
):
    with socket.socket() as database:  # the warehouse's host: neither Juspay's POST nor its credentials
        database.bind(("127.0.0.1", 0))
        database.listen(8)
        database.settimeout(0.2)
        port = database.getsockname()[1]
        monkeypatch.setenv(
            "AIRFLOW_CONN_WAREHOUSE_PG", f"postgresql://wh_user:wh-db-password@127.0.0.1:{port}/dw"
        )
        records = [{"order_id": f"PG-{i}", **GOOD} for i in range(5)]
        state, tis, _ = run("juspay_test_setup", {"records": records, "juspay_conn_id": "warehouse_pg"})
        with pytest.raises(TimeoutError):
            database.accept()
    out = capfd.readouterr().out
    assert state == "failed" and tis["push"] == ("failed", 1)
    assert "'warehouse_pg' is of type 'postgres', not 'juspay'" in out and "juspay_conn_id" in out
    assert "wh-db-password" not in out
    assert sandbox.requests == []


def test_uri_and_json_connections_both_reach_the_sandbox(airflow_db, sandbox, monkeypatch):
    records = [{"order_id": f"URI-{i}", **GOOD} for i in range(3)]
    monkeypatch.setenv(
        "AIRFLOW_CONN_JP_URI", f"juspay://merchant_tests:{API_KEY}@127.0.0.1:{sandbox.port}?max_attempts=2"
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_JP_JSON",
        json.dumps(
            {"conn_type": "juspay", "login": "merchant_tests", "password": API_KEY, "host": "127.0.0.1",
             "port": sandbox.port}
        ),
    )  # fmt: skip
    for conn_id in ("jp_uri", "jp_json"):
        state, _, xcom = run("juspay_test_setup", {"records": records, "juspay_conn_id": conn_id})
        assert (
            state == "success"
            and xcom[("push", "return_value")]["counts"][
                "already_fulfilled" if conn_id == "jp_json" else "sent"
            ]
            == 3
        )


# -- warehouse types and columns -------------------------------------------------------------------


def test_numeric_order_ids_from_postgres_are_sent_as_integer_text(
    airflow_db, sandbox, juspay_conn, monkeypatch
):
    uri = os.environ.get("JUSPAY_TEST_POSTGRES_URI")
    if not uri:
        pytest.skip("no PostgreSQL: set JUSPAY_TEST_POSTGRES_URI (.ci/run does)")
    import psycopg2

    with closing(psycopg2.connect(uri)) as db, db.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS numeric_orders")
        cursor.execute(
            "CREATE TABLE numeric_orders (order_id NUMERIC(20, 0), awb NUMERIC(12, 2), "
            "fulfillment_status TEXT, fulfillment_command TEXT)"
        )
        cursor.executemany(
            "INSERT INTO numeric_orders VALUES (%s, %s, 'SUCCESS', 'NO_ACTION')",
            [(Decimal(9_000_000_000_000 + i), Decimal(i)) for i in range(20)]
            + [(Decimal("77"), Decimal("1.5"))],
        )
        db.commit()
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_PG", uri)
    sql = (
        "SELECT order_id, awb AS fulfillment_id, fulfillment_status, fulfillment_command FROM numeric_orders"
    )
    state, _, xcom = run("juspay_test_setup_sql", {"sql": sql, "sql_conn_id": "warehouse_pg"})
    sent = {r.order_id: r.form.get("fulfillment_id") for r in sandbox.requests}
    assert sent["9000000000000"] == "0" and sent["9000000000019"] == "19" and len(sent) == 20
    report = xcom[("push", "return_value")] if state == "success" else xcom[("push", "report")]
    assert report["counts"]["sent"] == 20 and report["counts"]["invalid"] == 1
    (bad,) = report["failures"]
    assert bad["order_id"] == "77" and "CAST(fulfillment_id AS BIGINT)" in bad["message"]


def test_columns_that_name_no_field_fail_on_the_first_batch_with_a_column_map(
    airflow_db, sandbox, juspay_conn, capfd
):
    records = [
        {"ord_ref": f"C-{i}", "state": "SUCCESS", "action": "NO_ACTION", "note": "x"} for i in range(50)
    ]
    state, tis, _ = run("juspay_test_setup", {"records": records})
    out = capfd.readouterr().out
    assert state == "failed" and tis["push"] == ("failed", 1), "no Airflow retry: the columns stay the same"
    assert "columns seen: ord_ref, state, action, note" in out
    assert (
        "column_map={'ord_ref': 'order_id', 'state': 'fulfillment_status', 'action': 'fulfillment_command'}"
        in out
    )
    assert "retry sends only" not in out
    assert sandbox.requests == []


def test_every_row_invalid_fails_without_retry_and_advises_the_data(
    airflow_db, sandbox, juspay_conn, capfd, tmp_path
):
    export = tmp_path / "failures.csv"
    records = [
        {"order_id": f"V-{i}", "fulfillment_status": "DELIVERED", "fulfillment_command": "NO_ACTION",
         "fulfillment_id": f"AWB-{i}"}
        for i in range(12)
    ]  # fmt: skip
    state, tis, xcom = run("juspay_test_setup", {"records": records, "failures_path": str(export)})
    out = capfd.readouterr().out
    assert state == "failed" and tis["push"] == ("failed", 1)
    assert "every one of the 12 records was invalid" in out and "fix the data, the column_map" in out
    assert "retry sends only" not in out
    # The twelve identical refusals read once, with the count and the first order ids.
    assert "12 x invalid INVALID_RECORD fulfillment_status='DELIVERED': must be SUCCESS or FAILURE" in out
    rows = list(csv.DictReader(export.open()))
    assert len(rows) == 12 and rows[0]["fulfillment_id"] == "AWB-0" and rows[0]["command"] == "NO_ACTION"
    assert xcom[("push", "report")]["counts"]["invalid"] == 12
    assert sandbox.requests == []


def test_a_refused_key_reads_once_names_the_environment_and_logs_no_error_before_the_task_fails(
    airflow_db, sandbox, monkeypatch, capfd
):
    monkeypatch.setenv(
        "AIRFLOW_CONN_JUSPAY_DEFAULT", conn_json(sandbox.base_url).replace(API_KEY, "sk_live_wrong_env")
    )
    records = [{"order_id": f"K-{i}", **GOOD} for i in range(30)]
    state, tis, xcom = run("juspay_test_setup", {"records": records})
    out = capfd.readouterr().out
    assert state == "failed" and tis["push"] == ("failed", 1)
    assert f"Juspay at a local sandbox ({sandbox.base_url}) refused the credentials" in out
    assert "extra 'environment'" in out and "sk_live_wrong_env" not in out
    # The same refusal for every unsent row reads once in the table, with a count.
    assert out.count("not sent: the run stopped: Juspay refused the credentials") == 1
    errors = [line for line in out.splitlines() if "[error" in line]
    assert errors and "Stopping the run" not in "\n".join(errors), "the task's own error is the first ERROR"
    assert xcom[("push", "report")]["stopped"]["error_code"] == "UNAUTHORIZED"


def test_a_push_without_a_ledger_that_meets_delivered_orders_suggests_one_once(
    airflow_db, sandbox, juspay_conn, capfd
):
    records = [
        {"order_id": f"NL-{i}", "fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"}
        for i in range(30)
    ]
    state, _, _ = run("juspay_test_setup", {"records": records})
    first = capfd.readouterr().out
    assert state == "success" and "ledger_conn_id=" not in first, "nothing was there before: no hint"
    state, _, xcom = run("juspay_test_setup", {"records": records})
    again = capfd.readouterr().out
    assert state == "success" and xcom[("push", "return_value")]["counts"]["already_fulfilled"] == 30
    assert again.count("30 orders were already at Juspay (ALREADY_EXISTS)") == 1, again[-3000:]
    assert "Give it ledger_conn_id=" in again
