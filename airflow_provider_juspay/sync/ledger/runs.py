"""The run history beside the ledger: one row per push that has a ledger (every shard and try).

A row is written when the push starts (state ``running``), its ``last_seen_at`` moved on while the run
lives, and completed when it ends (``success``, ``failed`` or ``stopped`` with the stop's code, the
counts by outcome, rows read, records per second, what pacing found, the error that ended it). A row
still ``running`` whose ``last_seen_at`` is older than its ``lease_s`` belongs to a run that was killed
(or whose process is paused): nothing ended it. Rows older than ``retention_days`` are removed by the
runs themselves when they start. The table sits in the ledger's schema, named ``juspay_sync_runs``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from airflow_provider_juspay.fulfilment import FREE_TEXT_FIELDS, Outcome
from airflow_provider_juspay.sync.ledger.dialect import Database
from airflow_provider_juspay.sync.ledger.rows import RunInfo, timestamp
from airflow_provider_juspay.sync.ledger.schema import add_missing_columns, ensure_indexes

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_RETENTION_DAYS", "RUNS_TABLE", "RunHistory", "runs_table_for"]

RUNS_TABLE = "juspay_sync_runs"
#: Days a run's row is kept; older rows are removed by the next run that starts.
DEFAULT_RETENTION_DAYS = 90
#: The counts kept, one column each, in the order of the outcomes.
OUTCOME_COLUMNS = tuple(o.value for o in Outcome)
_PACING_COLUMNS = ("peak_concurrency", "final_concurrency", "throttled")
#: What a run drew from the merchant's shared budget (report ``pacing.budget``): its key, this run's
#: share of what the merchant sent meanwhile, the merchant's total rate then, the tasks drawing.
BUDGET_COLUMNS = (
    ("budget_key", "VARCHAR(255)"),
    ("budget_share", "DOUBLE PRECISION"),
    ("merchant_per_s", "DOUBLE PRECISION"),
    ("budget_tasks", "INTEGER"),
)

_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    claim_id VARCHAR(64) NOT NULL PRIMARY KEY,
    merchant_id VARCHAR(128) NOT NULL,
    ledger_table VARCHAR(255) NOT NULL,
    dag_id VARCHAR(250),
    run_id VARCHAR(250),
    task_id VARCHAR(250),
    map_index INTEGER,
    try_number INTEGER,
    started_at VARCHAR(32) NOT NULL,
    last_seen_at VARCHAR(32) NOT NULL,
    ended_at VARCHAR(32),
    lease_s DOUBLE PRECISION NOT NULL,
    state VARCHAR(16) NOT NULL,
    stop_reason VARCHAR(64),
    {outcomes},
    rows_read INTEGER,
    records_per_s DOUBLE PRECISION,
    peak_concurrency INTEGER,
    final_concurrency INTEGER,
    throttled INTEGER,
    error VARCHAR(2000),
    failures_export VARCHAR(1024),
    failures TEXT,
    {budget}
)
"""
ERROR_SIZE = 2000
#: Failure entries of the run's report kept in its row (order id, outcome, code, message), so a run's
#: failures stay visible after a later run sends the same orders again; messages cut to this size.
FAILURES_KEPT, FAILURE_MESSAGE_SIZE = 100, 300
#: ``field='value': rule`` of an invalid free-text field (fulfillment_data, ...): the value is hidden.
_FREE_TEXT_VALUE = re.compile(rf"\b({'|'.join(FREE_TEXT_FIELDS)})=.*: ([^:]*)$", re.DOTALL)


def kept_failures(failures: Any) -> str | None:
    """The report's failure entries as the row keeps them (JSON), free-text values hidden."""
    kept = []
    for entry in list(failures or [])[:FAILURES_KEPT]:
        if not isinstance(entry, Mapping):
            continue
        message = _FREE_TEXT_VALUE.sub(r"\1=(hidden): \2", str(entry.get("message") or ""))
        kept.append(
            {
                "order_id": None if entry.get("order_id") is None else str(entry.get("order_id"))[:255],
                "outcome": str(entry.get("outcome") or ""),
                "error_code": entry.get("error_code"),
                "message": message[:FAILURE_MESSAGE_SIZE],
            }
        )
    return json.dumps(kept) if kept else None


def runs_table_for(ledger_table: str) -> str:
    """The run history's table, in the ledger table's schema: ``analytics.x`` gives
    ``analytics.juspay_sync_runs``."""
    schema, dot, _ = ledger_table.rpartition(".")
    return f"{schema}{dot}{RUNS_TABLE}"


def index_statements(table: str) -> list[str]:
    """The run history's indexes: the page reads the newest runs and the last days by ``started_at``,
    a DAG run's tab by its ids."""
    name = table.rpartition(".")[2]
    return [
        f"CREATE INDEX IF NOT EXISTS {name}_started_at ON {table} (started_at)",
        f"CREATE INDEX IF NOT EXISTS {name}_dag_run ON {table} (dag_id, run_id)",
    ]


class RunHistory:
    """The row of one run in the run history, through the ledger's connection (its dialect)."""

    def __init__(
        self,
        db: Database,
        table: str,
        *,
        merchant_id: str,
        claim_id: str,
        ledger_table: str,
        run: RunInfo,
        lease_s: float,
        retention_days: int = DEFAULT_RETENTION_DAYS,
    ) -> None:
        self.db = db
        self.table = table
        self.merchant_id = merchant_id
        self.claim_id = claim_id
        self.ledger_table = ledger_table
        self.run = run
        self.lease_s = lease_s
        self.retention_days = retention_days

    def ensure_table(self) -> None:
        """Create the table and its index on ``started_at`` when missing (safe when runs race)."""
        outcomes = ",\n    ".join(f"{name} INTEGER" for name in OUTCOME_COLUMNS)
        budget = ",\n    ".join(f"{name} {kind}" for name, kind in BUDGET_COLUMNS)
        try:
            self.db.execute(_DDL.format(table=self.table, outcomes=outcomes, budget=budget))
        except Exception:  # another run created it first, or the database has no IF NOT EXISTS
            self.db.rollback()
        add_missing_columns(self.db, self.table, BUDGET_COLUMNS)  # a table of a 1.1 pre-release
        ensure_indexes(self.db, self.table, index_statements(self.table))

    def started(self, now: datetime) -> None:
        """The row of a run that starts (``running``); rows past the retention go."""
        columns = (
            "claim_id", "merchant_id", "ledger_table", "dag_id", "run_id", "task_id", "map_index",
            "try_number", "started_at", "last_seen_at", "lease_s", "state",
        )  # fmt: skip
        run = self.run
        map_index = -1 if run.map_index is None else run.map_index  # as the ledger's rows: joins compare it
        values = [
            self.claim_id, self.merchant_id, self.ledger_table, run.dag_id, run.run_id, run.task_id,
            map_index, run.try_number, timestamp(now), timestamp(now), float(self.lease_s), "running",
        ]  # fmt: skip
        binds = self.db.binds()
        self.db.execute(
            f"INSERT INTO {self.table} ({', '.join(columns)}) VALUES ({binds.many(len(columns))})", values
        )
        cutoff = timestamp(now - timedelta(days=self.retention_days))
        removed = self.db.execute(
            f"DELETE FROM {self.table} WHERE started_at < {self.db.binds()()}", [cutoff]
        )
        if removed > 0:
            log.info("Run history: %d rows older than %d days removed", removed, self.retention_days)

    def seen(self, db: Database, now: datetime) -> None:
        """The run is alive (its heartbeat, on its own connection ``db``)."""
        binds = db.binds()
        seen, mine = binds(), binds()
        alive = f"UPDATE {self.table} SET last_seen_at = {seen} WHERE claim_id = {mine} AND state = 'running'"
        db.execute(alive, [timestamp(now), self.claim_id])

    def ended(
        self,
        now: datetime,
        *,
        state: str,
        report: Mapping[str, Any] | None,
        stop_reason: str | None = None,
        error: str | None = None,
    ) -> None:
        """Complete the row: how the run ended, its counts and pacing (from the report's dict)."""
        report = report or {}
        counts = report.get("counts") or {}
        pacing = report.get("pacing") or {}
        budget = pacing.get("budget") or {}
        sets = {
            "ended_at": timestamp(now),
            "last_seen_at": timestamp(now),
            "state": state,
            "stop_reason": stop_reason,
            **{name: int(counts.get(name, 0)) for name in OUTCOME_COLUMNS},
            "rows_read": int(report.get("total", 0)),
            "records_per_s": float(report.get("records_per_s") or 0.0),
            **{name: pacing.get(name) for name in _PACING_COLUMNS},
            "error": error[:ERROR_SIZE] if error else None,
            "failures_export": (report.get("failures_export") or {}).get("path"),
            "failures": kept_failures(report.get("failures")),
            "budget_key": budget.get("key"),
            "budget_share": budget.get("share"),
            "merchant_per_s": budget.get("merchant_sent_per_s"),
            "budget_tasks": budget.get("tasks"),
        }
        binds = self.db.binds()
        assignments = ", ".join(f"{name} = {binds()}" for name in sets)
        self.db.execute(
            f"UPDATE {self.table} SET {assignments} WHERE claim_id = {binds()}",
            [*sets.values(), self.claim_id],
        )
