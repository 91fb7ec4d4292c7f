"""Fixtures of the ledger tests: the ledger's database, a client of the sandbox, a second connection."""

from __future__ import annotations

import sqlite3

import pytest


@pytest.fixture
def db(ledger_db):
    return ledger_db


@pytest.fixture
def client(ledger_client):
    return ledger_client


@pytest.fixture
def connect(db):
    """Opens another connection to the ledger's database (what a heartbeat needs)."""
    if isinstance(db, sqlite3.Connection):
        path = db.execute("PRAGMA database_list").fetchone()[2]
        return lambda: sqlite3.connect(path, check_same_thread=False)
    import psycopg2

    return lambda: psycopg2.connect(db.dsn)
