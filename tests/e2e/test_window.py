"""The nightly example's window reads exactly day D, on every warehouse the docs name: SQLite text
timestamps in both ISO forms (``' '`` and ``'T'``), PostgreSQL ``timestamp`` and ``timestamptz`` (the
latter on a server whose zone is not UTC, with the connection the docs show). Rows sit on the edges."""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing
from datetime import datetime, timedelta

import pytest

from bench.support import fresh_postgres_database, postgres_conn_json
from tests.helpers import DAY, airflow_dags_test

pytestmark = pytest.mark.e2e

MIDNIGHT = datetime(DAY.year, DAY.month, DAY.day)
#: (label, time, inside day D?): the last second before, the first second of, the last of, the next day.
EDGES = [
    ("before", MIDNIGHT - timedelta(seconds=1), False),
    ("first", MIDNIGHT, True),
    ("noon", MIDNIGHT + timedelta(hours=12), True),
    ("last", MIDNIGHT + timedelta(days=1, seconds=-1), True),
    ("after", MIDNIGHT + timedelta(days=1), False),
]
COLUMNS = "id, order_id, fulfillment_status, fulfillment_command, updated_at"


def _rows():
    return [(i, f"EDGE-{label}", "SUCCESS", "NO_ACTION", when) for i, (label, when, _) in enumerate(EDGES)]


def sqlite_warehouse(tmp_path, separator: str) -> str:
    path = tmp_path / "warehouse.db"
    with closing(sqlite3.connect(path)) as db:
        db.execute(
            "CREATE TABLE fulfilments (id INTEGER PRIMARY KEY, order_id TEXT, fulfillment_status TEXT, "
            "fulfillment_command TEXT, fulfillment_time TEXT, fulfillment_id TEXT, fulfillment_data TEXT, "
            "routing_id TEXT, customer_email TEXT, updated_at TEXT)"
        )
        db.executemany(
            f"INSERT INTO fulfilments ({COLUMNS}) VALUES (?, ?, ?, ?, ?)",
            [(*row[:4], row[4].isoformat(separator)) for row in _rows()],
        )
        db.commit()
    return json.dumps({"conn_type": "sqlite", "host": str(path)})


def postgres_warehouse(column_type: str) -> str:
    uri = os.environ.get("JUSPAY_TEST_POSTGRES_URI")
    if not uri:
        pytest.skip("no PostgreSQL: set JUSPAY_TEST_POSTGRES_URI (.ci/run does)")
    import psycopg2

    dsn = fresh_postgres_database(uri, "juspay_window")
    with closing(psycopg2.connect(**dsn)) as admin:
        admin.autocommit = True
        with admin.cursor() as cursor:
            # A server whose zone is not UTC: timestamptz bounds would be read as Kolkata time.
            cursor.execute("ALTER DATABASE juspay_window SET timezone TO 'Asia/Kolkata'")
    with closing(psycopg2.connect(**dsn)) as db, db.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE fulfilments (id INTEGER PRIMARY KEY, order_id TEXT, fulfillment_status TEXT, "
            f"fulfillment_command TEXT, fulfillment_time TEXT, fulfillment_id TEXT, fulfillment_data TEXT, "
            f"routing_id TEXT, customer_email TEXT, updated_at {column_type})"
        )
        # The rows' times are UTC (as the warehouse's loader wrote them).
        cursor.executemany(
            f"INSERT INTO fulfilments ({COLUMNS}) VALUES (%s, %s, %s, %s, %s)",
            [(*row[:4], f"{row[4].isoformat(' ')}+00:00") for row in _rows()],
        )
        db.commit()
    # The connection the warehouse page shows for timestamptz columns: the session in UTC.
    return postgres_conn_json(dsn, options="-c timezone=UTC")


@pytest.mark.parametrize(
    "warehouse",
    ["sqlite text 'YYYY-MM-DD HH:MM:SS'", "sqlite text 'YYYY-MM-DDTHH:MM:SS'", "timestamp", "timestamptz"],
)
def test_the_nightly_example_reads_exactly_day_d_at_its_edges(warehouse, airflow_db, sandbox, tmp_path):
    if warehouse.startswith("sqlite"):
        conn = sqlite_warehouse(tmp_path, "T" if "DDT" in warehouse else " ")
    else:
        conn = postgres_warehouse(warehouse)
    # Day D by hand, as the nightly page says: logical date D+1 at noon, interval [D, D+1).
    done = airflow_dags_test(
        "juspay_nightly_sync",
        sandbox,
        f"{DAY + timedelta(days=1)}T12:00:00+00:00",
        AIRFLOW_CONN_WAREHOUSE=conn,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    sent = sorted(order_id for order_id, _ in sandbox.accepted)
    assert sent == sorted(f"EDGE-{label}" for label, _, inside in EDGES if inside), warehouse
