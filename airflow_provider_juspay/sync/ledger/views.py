"""What the Juspay page and a run's tab show, read from one ledger and its run history (no Airflow).

Every read is limited to the DAGs the viewer may read (``dag_ids``; an empty set reads nothing) and
bounded (a limit, or a window of days), so the page answers quickly at a year of history: the run
history is read through its ``started_at`` index, the ledger through ``(state, last_attempt_at)``
and ``claim_id`` (both created by :meth:`~airflow_provider_juspay.sync.ledger.Ledger.ensure_table`).
Nothing here writes.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_provider_juspay.sync.ledger.dialect import Database
from airflow_provider_juspay.sync.ledger.rows import IN_FLIGHT, UNDELIVERED, timestamp
from airflow_provider_juspay.sync.ledger.runs import OUTCOME_COLUMNS, runs_table_for
from airflow_provider_juspay.sync.ledger.schema import checked_table_name

__all__ = ["DayCounts", "FailureReason", "HeldKey", "LedgerViews", "OrderFailure", "SyncRun"]

_RUN_COLUMNS = (
    "claim_id", "merchant_id", "dag_id", "run_id", "task_id", "map_index", "try_number", "started_at",
    "last_seen_at", "ended_at", "lease_s", "state", "stop_reason", *OUTCOME_COLUMNS, "rows_read",
    "records_per_s", "peak_concurrency", "final_concurrency", "throttled", "error", "failures_export",
    "failures", "budget_key", "budget_share", "merchant_per_s", "budget_tasks",
)  # fmt: skip


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class SyncRun:
    """One push (a task try, or one shard of it) as its run-history row holds it."""

    claim_id: str
    merchant_id: str
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    try_number: int
    started_at: datetime
    last_seen_at: datetime
    ended_at: datetime | None
    lease_s: float
    state: str
    stop_reason: str | None
    counts: dict[str, int]
    rows_read: int
    records_per_s: float
    peak_concurrency: int | None
    final_concurrency: int | None
    throttled: int | None
    error: str | None
    failures_export: str | None
    #: The run's own failure entries (its report's first ones: order id, outcome, code, message).
    failures: list[dict[str, Any]]
    now: datetime = field(repr=False)
    #: The merchant's shared budget it drew from, its share of what the merchant sent meanwhile, the
    #: merchant's total rate then and the tasks drawing (None: it paced itself).
    budget_key: str | None = None
    budget_share: float | None = None
    merchant_per_s: float | None = None
    budget_tasks: int | None = None

    @classmethod
    def of(cls, row: Sequence[Any], now: datetime) -> SyncRun:
        values = dict(zip(_RUN_COLUMNS, row, strict=True))
        counts = {name: int(values.pop(name) or 0) for name in OUTCOME_COLUMNS}
        started, seen = _parse(values.pop("started_at")), _parse(values.pop("last_seen_at"))
        failures = _failures(values.pop("failures"))
        return cls(
            **{k: v for k, v in values.items() if k not in ("map_index", "try_number", "ended_at")},
            map_index=int(values["map_index"] if values["map_index"] is not None else -1),
            try_number=int(values["try_number"] or 0),
            started_at=started,  # type: ignore[arg-type]
            last_seen_at=seen,  # type: ignore[arg-type]
            ended_at=_parse(values["ended_at"]),
            failures=failures,
            counts=counts,
            now=now,
        )

    @property
    def killed(self) -> bool:
        """Still ``running``, but not seen for longer than its lease: nothing will end it."""
        return self.state == "running" and self.now - self.last_seen_at > timedelta(seconds=self.lease_s)

    @property
    def shown_state(self) -> str:
        return "killed" if self.killed else self.state

    @property
    def duration_s(self) -> float:
        end = self.ended_at or (self.last_seen_at if self.killed else self.now)
        return max(0.0, (end - self.started_at).total_seconds())


@dataclass(frozen=True)
class DayCounts:
    """Rows by outcome of the runs that started on one day (UTC)."""

    day: str
    counts: dict[str, int]


@dataclass(frozen=True)
class FailureReason:
    """One failure code: how many orders fail with it now, and one of them to look at."""

    state: str
    error_code: str | None
    orders: int
    example_order_id: str
    example_message: str | None


@dataclass(frozen=True)
class HeldKey:
    """A key in flight: claimed by a run that has not written its outcome (yet)."""

    order_id: str
    command: str
    fulfillment_id: str
    lease_until: datetime | None
    dag_id: str | None
    run_id: str | None
    task_id: str | None
    map_index: int
    run_state: str | None  # the holder's run-history state, "killed" when its heartbeat stopped


@dataclass(frozen=True)
class OrderFailure:
    """An order that failed in a run, with Juspay's answer (or the transport's error)."""

    order_id: str
    command: str
    fulfillment_id: str
    state: str
    http_status: int | None
    error_code: str | None
    message: str | None
    attempts: int
    task_id: str | None
    map_index: int


class LedgerViews:
    """Read-only queries over one ledger table and the run history beside it."""

    def __init__(self, connection: Any, ledger_table: str) -> None:
        """``connection``: a DB-API connection to the ledger's database (or its
        :class:`~airflow_provider_juspay.sync.ledger.dialect.Database`)."""
        self.db = connection if isinstance(connection, Database) else Database(connection)
        self.table = checked_table_name(ledger_table)
        self.runs_table = runs_table_for(self.table)

    def now(self) -> datetime:
        """The database's clock (UTC): what the runs' heartbeats are judged on."""
        return self.db.clock()

    def _first(self, sql: str, params: list[Any], limit: int) -> list[tuple[Any, ...]]:
        # LIMIT in the statement (not only fetchmany): the database stops at the index's first rows
        return self.db.query(f"{sql} LIMIT {int(limit)}", params, limit=limit)

    def _mine(self, binds: Any) -> str:
        # the run history is one per schema: several ledger tables there share it (names: any case)
        return f"LOWER(ledger_table) = LOWER({binds()})"

    def _in(self, column: str, values: Collection[str], binds: Any) -> str:
        return f"{column} IN ({', '.join(binds() for _ in values)})"

    def recent_runs(self, dag_ids: Collection[str], now: datetime, limit: int = 50) -> list[SyncRun]:
        """The latest runs of these DAGs, newest first."""
        if not dag_ids:
            return []
        binds = self.db.binds()
        sql = (
            f"SELECT {', '.join(_RUN_COLUMNS)} FROM {self.runs_table} "
            f"WHERE {self._mine(binds)} AND {self._in('dag_id', dag_ids, binds)} ORDER BY started_at DESC"
        )
        return [SyncRun.of(row, now) for row in self._first(sql, [self.table, *dag_ids], limit)]

    def run(self, dag_id: str, run_id: str, now: datetime) -> list[SyncRun]:
        """Every push (task, shard, try) of one DAG run, in task order."""
        binds = self.db.binds()
        sql = (
            f"SELECT {', '.join(_RUN_COLUMNS)} FROM {self.runs_table} WHERE {self._mine(binds)} "
            f"AND dag_id = {binds()} AND run_id = {binds()} ORDER BY task_id, map_index, try_number"
        )
        return [SyncRun.of(row, now) for row in self._first(sql, [self.table, dag_id, run_id], 1000)]

    def outcomes_per_day(self, dag_ids: Collection[str], now: datetime, days: int = 14) -> list[DayCounts]:
        """Rows by outcome per day (UTC) of the runs started in the last ``days`` days, oldest first;
        days without runs are there with zeros."""
        first = (now - timedelta(days=days - 1)).date()
        wanted = [(first + timedelta(days=i)).isoformat() for i in range(days)]
        totals = {day: dict.fromkeys(OUTCOME_COLUMNS, 0) for day in wanted}
        if dag_ids:
            binds = self.db.binds()
            since = binds()
            sums = ", ".join(f"SUM({name})" for name in OUTCOME_COLUMNS)
            sql = (
                f"SELECT SUBSTR(started_at, 1, 10), {sums} FROM {self.runs_table} "
                f"WHERE started_at >= {since} AND {self._mine(binds)} "
                f"AND {self._in('dag_id', dag_ids, binds)} GROUP BY SUBSTR(started_at, 1, 10)"
            )
            params = [f"{first.isoformat()}T", self.table, *dag_ids]
            for day, *counts in self.db.query(sql, params):
                if day in totals:
                    totals[day] = {n: int(c or 0) for n, c in zip(OUTCOME_COLUMNS, counts, strict=True)}
        return [DayCounts(day, counts) for day, counts in totals.items()]

    def top_failures(
        self, dag_ids: Collection[str], now: datetime, days: int = 7, limit: int = 10
    ) -> list[FailureReason]:
        """The codes the most orders fail with now (last attempt in the last ``days`` days)."""
        if not dag_ids:
            return []
        binds = self.db.binds()
        states = ", ".join(binds() for _ in UNDELIVERED)
        since = binds()
        sql = (
            f"SELECT state, error_code, COUNT(*), MIN(order_id), MIN(message) FROM {self.table} "
            f"WHERE state IN ({states}) AND last_attempt_at >= {since} "
            f"AND {self._in('dag_id', dag_ids, binds)} "
            f"GROUP BY state, error_code ORDER BY COUNT(*) DESC, error_code"
        )
        params = [*UNDELIVERED, timestamp(now - timedelta(days=days)), *dag_ids]
        return [
            FailureReason(state, code, int(n), str(order), message)
            for state, code, n, order, message in self._first(sql, params, limit)
        ]

    def held_keys(
        self, dag_ids: Collection[str], now: datetime, limit: int = 100
    ) -> tuple[int, list[HeldKey]]:
        """How many keys are in flight for these DAGs, and the ``limit`` oldest with their holder."""
        if not dag_ids:
            return 0, []
        binds = self.db.binds()
        where = f"l.state = '{IN_FLIGHT}' AND {self._in('l.dag_id', dag_ids, binds)}"
        (total,) = self.db.query(f"SELECT COUNT(*) FROM {self.table} l WHERE {where}", [*dag_ids])[0]
        sql = (
            "SELECT l.order_id, l.command, l.fulfillment_id, l.lease_until, l.dag_id, l.run_id, l.task_id, "
            f"l.map_index, r.state, r.last_seen_at, r.lease_s FROM {self.table} l "
            f"LEFT JOIN {self.runs_table} r ON r.claim_id = l.claim_id WHERE {where} "
            "ORDER BY l.last_attempt_at"
        )
        held = []
        for order, command, fid, lease, dag, run, task, map_index, state, seen, lease_s in self._first(
            sql, [*dag_ids], limit
        ):
            if state == "running" and seen and now - _parse(seen) > timedelta(seconds=float(lease_s)):  # type: ignore[operator]
                state = "killed"
            held.append(
                HeldKey(order, command, fid, _parse(lease), dag, run, task, _map_index(map_index), state)
            )
        return int(total), held

    def failures_of(self, claim_ids: Iterable[str], limit: int = 500) -> tuple[int, list[OrderFailure]]:
        """The orders that failed under these claims (a run's pushes) and are still undelivered."""
        claims = list(claim_ids)
        if not claims:
            return 0, []
        binds = self.db.binds()
        states = ", ".join(binds() for _ in UNDELIVERED)
        where = f"state IN ({states}) AND {self._in('claim_id', claims, binds)}"
        params = [*UNDELIVERED, *claims]
        (total,) = self.db.query(f"SELECT COUNT(*) FROM {self.table} WHERE {where}", params)[0]
        sql = (
            "SELECT order_id, command, fulfillment_id, state, http_status, error_code, message, attempts, "
            f"task_id, map_index FROM {self.table} WHERE {where} ORDER BY order_id, command, fulfillment_id"
        )
        failures = [
            OrderFailure(o, c, f, s, h, e, m, int(a or 0), t, _map_index(mi))
            for o, c, f, s, h, e, m, a, t, mi in self._first(sql, params, limit)
        ]
        return int(total), failures


def _failures(text: Any) -> list[dict[str, Any]]:
    try:
        found = json.loads(text) if text else []
    except ValueError:  # a row written by hand: shown without its failures
        return []
    if not isinstance(found, list):
        return []
    keys = ("order_id", "outcome", "error_code", "message")  # every one there: the page reads each
    return [{key: f.get(key) for key in keys} for f in found if isinstance(f, dict)]


def _map_index(value: Any) -> int:
    return -1 if value is None else int(value)
