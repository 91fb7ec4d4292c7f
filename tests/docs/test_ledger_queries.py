"""The ledger page's SQL on the run history and the ledger, run on SQLite and PostgreSQL against rows
written by the provider's own code (a blocks whose first line names a database runs only there)."""

from __future__ import annotations

import re
import sqlite3

from airflow_provider_juspay.sync.ledger import Ledger, RunInfo
from airflow_provider_juspay.sync.ledger.schema import COLUMNS
from tests.helpers import MERCHANT_ID, REPO

FENCE = re.compile(r"^```sql\n(.*?)^```", re.DOTALL | re.MULTILINE)


def queries(dialect: str) -> dict[str, str]:
    """The page's run-history and ledger queries by their first words, those of ``dialect`` included."""
    found = {}
    for code in FENCE.findall((REPO / "docs" / "ledger.md").read_text()):
        first = code.splitlines()[0]
        if first.startswith("-- ") and first[3:].strip().lower() != dialect:
            continue
        found[" ".join(code.split())[:60]] = code
    return found


def fetch(db, sql: str) -> list[tuple]:
    cursor = db.cursor()
    cursor.execute(sql)
    found = [tuple(row) for row in cursor.fetchall()]
    cursor.close()
    db.commit()
    return found


def execute(db, sql: str, params: list) -> None:
    cursor = db.cursor()
    cursor.execute(sql.replace("?", "%s") if not isinstance(db, sqlite3.Connection) else sql, params)
    cursor.close()
    db.commit()


def a_run(
    db, try_number: int, started: str, *, state: str | None, lease_s: float = 600, seen: str | None = None
):
    run = RunInfo("nightly", f"run-{try_number}", "push", try_number)
    ledger = Ledger(db, merchant_id=MERCHANT_ID, run=run, lease_s=lease_s)
    ledger.ensure_table()
    ledger.run_started()
    if state is not None:
        ledger.run_ended(state, {"counts": {"sent": try_number}, "total": try_number})
    execute(db, "UPDATE juspay_sync_runs SET started_at = ?, last_seen_at = ? WHERE claim_id = ?",
            [started, seen or started, ledger.claim_id])  # fmt: skip
    return ledger


def ledger_row(db, order_id: str, state: str, error_code: str | None, at: str, claim_id: str | None = None):
    values = {
        "merchant_id": MERCHANT_ID, "order_id": order_id, "command": "NO_ACTION", "fulfillment_id": "",
        "payload_hash": "0" * 64, "state": state, "attempts": 1, "http_status": None,
        "error_code": error_code,
        "message": None, "first_attempt_at": at, "last_attempt_at": at, "dag_id": "nightly", "run_id": "r",
        "task_id": "push", "try_number": 1, "map_index": -1, "claim_id": claim_id,
        "lease_until": "2999-01-01T00:00:00.000000Z" if state == "in_flight" else None,
    }  # fmt: skip
    marks = ", ".join("?" for _ in COLUMNS)
    execute(db, f"INSERT INTO juspay_fulfilment_ledger ({', '.join(COLUMNS)}) VALUES ({marks})",
            [values[c] for c in COLUMNS])  # fmt: skip


def test_the_ledger_pages_queries_answer_on_sqlite_and_postgresql(ledger_db):
    db = ledger_db
    dialect = "sqlite" if isinstance(db, sqlite3.Connection) else "postgresql"
    a_run(db, 1, "2026-11-25T01:00:00.000000Z", state="failed")
    a_run(db, 2, "2026-11-25T03:00:00.000000Z", state="success")  # the day's last run of the task
    a_run(db, 3, "2026-11-24T01:00:00.000000Z", state="success")
    killed = a_run(db, 4, "2026-11-26T01:00:00.000000Z", state=None, lease_s=1)  # nothing ended it
    a_run(db, 5, "2999-01-01T00:00:00.000000Z", state=None, seen="2999-01-01T00:00:00.000000Z")  # alive
    for order_id in ("O-2", "O-1", "O-3"):
        ledger_row(db, order_id, "rejected", "RESOURCE_NOT_FOUND", "2026-11-26T10:00:00.000000Z")
    ledger_row(db, "O-9", "failed", "TIMEOUT", "2026-11-24T10:00:00.000000Z")  # before the day asked
    ledger_row(db, "O-7", "in_flight", None, "2026-11-26T01:00:05.000000Z", claim_id=killed.claim_id)
    found = queries(dialect)
    assert len(found) == 4, list(found)
    last, failures, in_flight, nothing_ended = found.values()
    last_runs = {(r[3], r[4]) for r in fetch(db, last)}
    assert ("run-2", "success") in last_runs and ("run-1", "failed") not in last_runs
    assert ("run-3", "success") in last_runs, "the 24th's last run too"
    assert fetch(db, failures) == [("rejected", "RESOURCE_NOT_FOUND", 3, "O-1")]
    assert fetch(db, in_flight) == [("O-7", "NO_ACTION", "2999-01-01T00:00:00.000000Z", "nightly", "run-4",
                                     "push", "running")]  # fmt: skip
    assert [r[1] for r in fetch(db, nothing_ended)] == ["run-4"], "killed, and not the live run-5"
