"""Junk rows through the bulk operator in real DAG runs: from XCom, JSON text and SQL; ledger or not."""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing

import pytest

from airflow_provider_juspay.fulfilment import RECORD_FIELDS
from tests.helpers import run_dag
from tests.hostile import JUNK_COLUMNS, is_valid, json_junk_rows, sql_junk_rows

pytestmark = pytest.mark.e2e

N = 1500
DELIVERED_HERE = ("sent", "already_fulfilled", "skipped", "held_elsewhere")


def assert_every_row_judged(outcome, rows, sandbox):
    assert outcome.task_states["push"] == "success", outcome.task_states
    report = outcome.xcom[("push", "return_value")]
    good = sum(is_valid(row) for row in rows)
    assert report["total"] == len(rows) == sum(report["counts"].values())
    assert sum(report["counts"][o] for o in DELIVERED_HERE) == good > N // 5, report["counts"]
    assert report["counts"]["invalid"] == len(rows) - good
    invalid = [f for f in report["failures"] if f["outcome"] == "invalid"]
    assert len(invalid) == len(rows) - good
    for failure in invalid:
        message = failure["message"]
        assert message.startswith("row "), message
        assert any(name in message for name in RECORD_FIELDS) or "not a mapping" in message, message
    assert sandbox.format_violations == []
    assert all(status < 500 for status in sandbox.status_counts)
    return report


@pytest.fixture
def sqlite_ledger(tmp_path, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_LEDGER_SQLITE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "l.db")})
    )
    return "ledger_sqlite"


@pytest.mark.parametrize("ledger", [None, "ledger_sqlite"])
def test_junk_from_xcom(airflow_db, sandbox, juspay_conn, sqlite_ledger, ledger):
    outcome = run_dag("juspay_test_hostile_xcom", {"n": N, "seed": 11, "ledger_conn_id": ledger})
    assert_every_row_judged(outcome, json_junk_rows(N, 11, xcom_safe=True), sandbox)


@pytest.mark.parametrize("ledger", [None, "ledger_sqlite"])
def test_junk_from_json_text_counts_rows_not_characters(
    airflow_db, sandbox, juspay_conn, sqlite_ledger, ledger
):
    rows = json_junk_rows(N, 12)
    text = json.dumps(rows)  # lone surrogates travel as \\ud800 escapes, NaN as NaN
    outcome = run_dag("juspay_test_hostile_json", {"records_json": text, "ledger_conn_id": ledger})
    report = assert_every_row_judged(outcome, json.loads(text), sandbox)
    assert report["total"] == N < len(text)


def read_back(connect, sql="SELECT * FROM junk ORDER BY id"):
    with closing(connect()) as db:
        cursor = db.cursor()
        cursor.execute(sql)
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def test_junk_from_a_sqlite_warehouse_with_its_ledger(
    airflow_db, sandbox, juspay_conn, tmp_path, monkeypatch
):
    path = tmp_path / "junk.db"
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"CREATE TABLE junk (id INTEGER PRIMARY KEY, {', '.join(JUNK_COLUMNS)})")
        marks = ", ".join("?" * (len(JUNK_COLUMNS) + 1))
        db.executemany(
            f"INSERT INTO junk VALUES ({marks})", [(i, *row) for i, row in enumerate(sql_junk_rows(N, 13))]
        )
        db.commit()
    monkeypatch.setenv("AIRFLOW_CONN_JUNK", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    outcome = run_dag("juspay_test_hostile_sql", {"sql_conn_id": "junk", "ledger_conn_id": "junk"})
    rows = [{k: v for k, v in row.items() if k != "id"} for row in read_back(lambda: sqlite3.connect(path))]
    assert_every_row_judged(outcome, rows, sandbox)


def test_junk_from_a_postgres_warehouse_with_its_ledger(airflow_db, sandbox, juspay_conn, monkeypatch):
    uri = os.environ.get("JUSPAY_TEST_POSTGRES_URI")
    if not uri:
        pytest.skip("no PostgreSQL: set JUSPAY_TEST_POSTGRES_URI (.ci/run does)")
    import psycopg2

    with closing(psycopg2.connect(uri)) as db, db.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS junk")
        cursor.execute("DROP TABLE IF EXISTS juspay_fulfilment_ledger")
        cursor.execute(
            f"CREATE TABLE junk (id INTEGER PRIMARY KEY, {', '.join(c + ' TEXT' for c in JUNK_COLUMNS)})"
        )
        rows = [
            (i, *(None if v is None else str(v) for v in row))
            for i, row in enumerate(sql_junk_rows(N, 14, nul=False))
        ]
        cursor.executemany(f"INSERT INTO junk VALUES ({', '.join(['%s'] * (len(JUNK_COLUMNS) + 1))})", rows)
        db.commit()
    monkeypatch.setenv("AIRFLOW_CONN_JUNK_PG", uri)
    outcome = run_dag("juspay_test_hostile_sql", {"sql_conn_id": "junk_pg", "ledger_conn_id": "junk_pg"})
    read = [{k: v for k, v in row.items() if k != "id"} for row in read_back(lambda: psycopg2.connect(uri))]
    assert_every_row_judged(outcome, read, sandbox)
