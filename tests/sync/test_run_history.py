"""The run history (juspay_sync_runs) on SQLite and PostgreSQL: one row per run that writes, started,
kept alive, completed; a killed run's row recognisable; old rows removed by the runs themselves."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime, timedelta, timezone

from airflow_provider_juspay.fulfilment import FulfilmentRecord
from airflow_provider_juspay.sync.ledger import Ledger, RunInfo
from airflow_provider_juspay.sync.ledger.rows import timestamp
from tests.helpers import MERCHANT_ID
from tests.sync.test_ledger import rows, run

#: A run still 'running' whose last sign of life is older than its lease: nothing ended it (docs).
KILLED = {
    "sqlite": (
        "SELECT claim_id FROM juspay_sync_runs WHERE state = 'running' "
        "AND julianday(last_seen_at) < julianday('now') - lease_s / 86400.0"
    ),
    "postgres": (
        "SELECT claim_id FROM juspay_sync_runs WHERE state = 'running' "
        "AND CAST(last_seen_at AS timestamptz) < now() - lease_s * interval '1 second'"
    ),
}


def ledger_of(db, try_number=1, lease_s=60.0, **kwargs):
    ledger = Ledger(
        db,
        merchant_id=MERCHANT_ID,
        run=RunInfo("dag", "run-1", "push", try_number, 3),
        lease_s=lease_s,
        **kwargs,
    )
    ledger.ensure_table()
    return ledger


def history(db) -> list[dict]:
    cursor = db.cursor()
    cursor.execute("SELECT * FROM juspay_sync_runs ORDER BY started_at")
    names = [c[0] for c in cursor.description]
    found = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    cursor.close()
    db.commit()
    return found


def dialect(db) -> str:
    return "sqlite" if isinstance(db, sqlite3.Connection) else "postgres"


def test_a_run_writes_its_row_at_the_start_and_completes_it_at_the_end(db, client, sandbox):
    ledger = ledger_of(db)
    ledger.run_started()
    (row,) = history(db)
    assert (row["state"], row["ended_at"], row["dag_id"], row["task_id"]) == ("running", None, "dag", "push")
    assert (row["try_number"], row["map_index"], row["merchant_id"]) == (1, 3, MERCHANT_ID)
    report = run(client, ledger, [*rows(12), {"order_id": "L-x", "fulfillment_status": "NOPE"}])
    ledger.run_ended("success", report)
    (row,) = history(db)
    assert row["state"] == "success" and row["ended_at"] >= row["started_at"] and row["error"] is None
    assert {k: row[k] for k in report["counts"]} == report["counts"], "one column per outcome"
    assert (row["sent"], row["invalid"], row["rows_read"]) == (12, 1, 13)
    assert row["records_per_s"] > 0 and row["lease_s"] == 60


def test_a_failed_or_stopped_run_says_how_it_ended(db, client):
    ledger_of(db).run_started()
    failing = ledger_of(db, try_number=2)
    failing.run_started()
    failing.run_ended("stopped", {"counts": {"not_attempted": 5}, "total": 5}, stop_reason="UNAUTHORIZED",
                      error="Juspay refused the credentials")  # fmt: skip
    ended = {r["try_number"]: r for r in history(db)}
    assert ended[2]["state"] == "stopped" and ended[2]["stop_reason"] == "UNAUTHORIZED"
    assert ended[2]["not_attempted"] == 5 and ended[2]["error"] == "Juspay refused the credentials"
    assert ended[1]["state"] == "running", "the other run's row is its own"


def test_a_killed_run_is_recognisable_by_the_documented_query(db):
    alive = ledger_of(db, lease_s=600)
    alive.run_started()
    killed = ledger_of(db, try_number=2, lease_s=1)
    killed.run_started()  # and nothing more: the process died
    time.sleep(1.3)
    cursor = db.cursor()
    cursor.execute(KILLED[dialect(db)])
    found = [r[0] for r in cursor.fetchall()]
    cursor.close()
    db.commit()
    assert found == [killed.claim_id], "the killed run, not the live one with a long lease"


def test_the_heartbeat_keeps_a_live_runs_row_seen(db, connect):
    ledger = Ledger(
        db, merchant_id=MERCHANT_ID, run=RunInfo("dag", "r", "t", 1), lease_s=0.4, connect=connect
    )
    ledger.ensure_table()
    ledger.run_started()
    watcher = connect()
    (before,) = history(watcher)
    list(ledger.filter([FulfilmentRecord.from_mapping(r) for r in rows(2)]))  # claimed: the heartbeat starts
    time.sleep(0.35)
    (during,) = history(watcher)
    ledger.close()
    watcher.close()
    assert during["last_seen_at"] > before["last_seen_at"], "the heartbeat moved last_seen_at on"


def test_rows_past_the_retention_are_removed_when_a_run_starts(db):
    ledger_of(db).run_started()
    cursor = db.cursor()
    old = timestamp(datetime.now(timezone.utc) - timedelta(days=91))
    cursor.execute(f"UPDATE juspay_sync_runs SET started_at = '{old}'")
    cursor.close()
    db.commit()
    ledger_of(db, try_number=2).run_started()
    assert [r["try_number"] for r in history(db)] == [2], "the 91-day-old row went, 90 days are kept"
    ledger_of(db, try_number=3, retention_days=400).run_started()
    assert len(history(db)) == 2


def test_a_live_run_still_waiting_for_its_first_rows_is_not_taken_for_dead(db, connect):
    """A slow warehouse query: no key claimed for longer than the lease, yet the run is alive."""
    ledger = Ledger(
        db, merchant_id=MERCHANT_ID, run=RunInfo("dag", "r", "t", 1), lease_s=0.8, connect=connect
    )
    ledger.ensure_table()
    ledger.run_started()
    time.sleep(1.6)  # two leases, nothing claimed
    watcher = connect()
    cursor = watcher.cursor()
    cursor.execute(KILLED[dialect(watcher)])
    found = cursor.fetchall()
    cursor.close()
    watcher.close()
    ledger.close()
    assert found == [], "the heartbeat keeps a run seen from its start, not from its first claim"


def test_a_runs_failures_are_kept_in_its_row_with_free_text_values_hidden(db):
    ledger = ledger_of(db)
    ledger.run_started()
    too_long = "order L-2: fulfillment_data='card 4111: cvv 123' + 'x'...: is 20000 characters, over 10000"
    failures = [
        {
            "order_id": "L-1",
            "outcome": "rejected",
            "error_code": "RESOURCE_NOT_FOUND",
            "message": "not found",
        },
        {"order_id": "L-2", "outcome": "invalid", "error_code": "INVALID_RECORD", "message": too_long},
        *({"order_id": f"M-{i}", "outcome": "failed", "message": "timeout"} for i in range(150)),
    ]
    ledger.run_ended("failed", {"counts": {"rejected": 1, "invalid": 1, "failed": 150}, "failures": failures})
    (row,) = history(db)
    kept = json.loads(row["failures"])
    assert len(kept) == 100 and kept[0] == {**failures[0]}, "the report's first 100, as they were"
    assert kept[1]["message"] == "order L-2: fulfillment_data=(hidden): is 20000 characters, over 10000"
    assert "4111" not in row["failures"] and "cvv" not in row["failures"]
