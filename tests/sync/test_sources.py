"""Streaming SQL rows from a DB-API connection."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_juspay.errors import MappingError
from airflow_provider_juspay.sync.sources import check_columns, stream_query, unmapped_columns


class CountingConnection:
    """A real sqlite3 connection whose cursors report each fetchmany size."""

    def __init__(self, conn):
        self.conn = conn
        self.fetches: list[int] = []

    def cursor(self):
        outer = self
        inner = self.conn.cursor()

        class Cursor:
            description = property(lambda self: inner.description)

            def execute(self, *args):
                return inner.execute(*args)

            def fetchmany(self, size):
                outer.fetches.append(size)
                return inner.fetchmany(size)

            def close(self):
                inner.close()

        return Cursor()


@pytest.fixture
def db():
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (order_id TEXT, fulfillment_status TEXT, note TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?, ?)", [(f"O-{i}", "SUCCESS", "n") for i in range(25)])
    return conn


def test_rows_stream_in_batches_as_dicts(db):
    counting = CountingConnection(db)
    seen_columns = []
    rows = stream_query(
        counting,
        "SELECT * FROM t WHERE order_id != ?",
        ["O-0"],
        fetch_size=10,
        on_columns=seen_columns.append,
    )
    first = next(rows)
    assert first == {"order_id": "O-1", "fulfillment_status": "SUCCESS", "note": "n"}
    assert counting.fetches == [10], "one batch read, not the whole result"
    assert len(list(rows)) == 23
    assert seen_columns == [["order_id", "fulfillment_status", "note"]]


def test_statement_without_result_set_is_refused(db):
    with pytest.raises(ValueError, match="SELECT"):
        list(stream_query(db, "UPDATE t SET note = 'x'"))


def test_unmapped_columns_are_the_ones_naming_no_field():
    assert unmapped_columns(
        ["id", "state", "note", "order_id"], {"id": "order_id", "state": "fulfillment_status"}
    ) == ["note"]


def test_postgres_rows_come_through_a_server_side_cursor():
    import os

    uri = os.environ.get("JUSPAY_TEST_POSTGRES_URI")
    if not uri:
        pytest.skip("no PostgreSQL: set JUSPAY_TEST_POSTGRES_URI (.ci/run does)")
    import psycopg2

    conn = psycopg2.connect(uri)
    try:
        rows = stream_query(conn, "SELECT g AS order_id FROM generate_series(1, 5000) AS g", fetch_size=100)
        assert next(rows) == {"order_id": 1}
        with conn.cursor() as probe:
            probe.execute("SELECT name FROM pg_cursors")
            open_cursors = [name for (name,) in probe.fetchall()]
        assert any(name.startswith("juspay_bulk_") for name in open_cursors), open_cursors
        assert sum(1 for _ in rows) == 4999
    finally:
        conn.close()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text(max_size=30), max_size=40),
    st.dictionaries(
        st.text(max_size=20), st.sampled_from(["order_id", "fulfillment_status", "x"]), max_size=5
    ),
)
def test_any_columns_pass_or_fail_with_a_mapping_error_that_names_them(columns, column_map):
    try:
        check_columns(columns, column_map, None)
    except MappingError as exc:
        assert "columns seen" in str(exc) and "column_map=" in str(exc)
    else:
        named = {column_map.get(c, c) for c in columns}
        assert {"order_id", "fulfillment_status", "fulfillment_command"} <= named
