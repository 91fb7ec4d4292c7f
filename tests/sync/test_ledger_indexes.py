"""The ledger's read indexes: built by a run while the table is small; never rebuilt (no lock) once
there; on a large PostgreSQL ledger left to a person, with the statement that builds it beside the runs."""

from __future__ import annotations

import logging

import pytest

from airflow_provider_juspay.sync.ledger import schema
from airflow_provider_juspay.sync.ledger.dialect import Database
from airflow_provider_juspay.sync.ledger.schema import DEFAULT_TABLE, ensure_table, index_statements

NAMES = [s.split()[5] for s in index_statements(DEFAULT_TABLE)]


class Recording(Database):
    """The ledger's database, keeping the statements it ran."""

    def __init__(self, connection):
        super().__init__(connection)
        self.statements: list[str] = []

    def execute(self, sql, params=None):
        self.statements.append(sql)
        return super().execute(sql, params)


def test_a_small_ledger_gets_its_indexes_once_and_a_later_run_takes_no_lock_for_them(db):
    first = Recording(db)
    ensure_table(first, DEFAULT_TABLE)
    assert all(first.has_index(DEFAULT_TABLE, name) for name in NAMES)
    again = Recording(db)
    ensure_table(again, DEFAULT_TABLE)
    assert not [s for s in again.statements if "CREATE INDEX" in s], "an index that exists is only read"


def test_a_large_postgres_ledger_missing_an_index_is_not_locked_by_a_run(db, monkeypatch, caplog):
    if not hasattr(db, "dsn"):
        pytest.skip("SQLite has no row estimate: its ledgers get their indexes built")
    ledger = Database(db)
    ensure_table(ledger, DEFAULT_TABLE)
    for name in NAMES:
        ledger.execute(f"DROP INDEX {name}")
    ledger.execute(
        f"INSERT INTO {DEFAULT_TABLE} (merchant_id, order_id, command, fulfillment_id, payload_hash, "
        "state, attempts, first_attempt_at, last_attempt_at) "
        "SELECT 'm', 'O' || g, 'C', '', 'h', 'sent', 1, 't', 't' FROM generate_series(1, 500) g"
    )
    ledger.execute(f"ANALYZE {DEFAULT_TABLE}")
    monkeypatch.setattr(schema, "BUILD_INDEX_UP_TO_ROWS", 100)
    recording = Recording(db)
    with caplog.at_level(logging.WARNING):
        ensure_table(recording, DEFAULT_TABLE)
    assert not [s for s in recording.statements if "CREATE INDEX" in s]
    advice = [r.getMessage() for r in caplog.records if "Build it once, beside the runs" in r.getMessage()]
    assert len(advice) == len(NAMES)
    db.autocommit = True  # what a person does with the advice: CONCURRENTLY runs outside a transaction
    try:
        for line in advice:
            ledger.execute(line.split("beside the runs: ")[1])
    finally:
        db.autocommit = False
    assert all(ledger.has_index(DEFAULT_TABLE, name) for name in NAMES)


def test_the_docs_give_the_statements_a_run_logs_for_a_large_ledger():
    import re

    from tests.helpers import REPO

    page = (REPO / "docs" / "syncs.md").read_text()
    shown = re.findall(r"^CREATE INDEX CONCURRENTLY .*?;$", page, re.MULTILINE)
    logged = [
        s.replace("CREATE INDEX", "CREATE INDEX CONCURRENTLY", 1) + ";"
        for s in index_statements(DEFAULT_TABLE)
    ]
    assert shown == logged


def test_an_index_of_the_same_name_in_another_schema_is_not_taken_for_this_ledgers(db):
    if not hasattr(db, "dsn"):
        pytest.skip("SQLite has one schema per file")
    ledger = Database(db)
    ledger.execute("DROP SCHEMA IF EXISTS other_ledgers CASCADE")
    ledger.execute("CREATE SCHEMA other_ledgers")
    ensure_table(ledger, f"other_ledgers.{DEFAULT_TABLE}")  # its indexes carry the same names
    ensure_table(ledger, DEFAULT_TABLE)
    try:
        assert all(ledger.has_index(DEFAULT_TABLE, name) for name in NAMES)
        ledger.execute(f"DROP INDEX {NAMES[0]}")  # ours only (the search path's schema)
        assert not ledger.has_index(DEFAULT_TABLE, NAMES[0])
        assert ledger.has_index(f"other_ledgers.{DEFAULT_TABLE}", NAMES[0])
        ensure_table(ledger, DEFAULT_TABLE)
        assert ledger.has_index(DEFAULT_TABLE, NAMES[0]), "built again, though the other schema has one"
    finally:
        ledger.execute("DROP SCHEMA other_ledgers CASCADE")
