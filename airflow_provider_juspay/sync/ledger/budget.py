"""A merchant's pacing budget, kept beside the ledger: one token bucket (GCRA) that every task sending
for the merchant draws from, on the database's clock.

Juspay's limit is per merchant, so the pace is found once per merchant, not once per task: the row
``juspay_rate_budget`` holds the rate found so far and the "theoretical arrival time" (``tat``) of
the next free token. A task takes tokens in batches (one statement, several requests' worth); the
tokens of a batch are evenly spaced at the merchant's rate, queued after those already granted, so
tasks that all want more share the rate in turns, and a task that ends leaves its turns to the
others at once. The rate grows only while the tasks use their tokens up as they come due (the budget
is what holds them back), by a share per half second; one 429 burst cuts it once, whoever saw it (a
429 of a request sent before the last cut, or soon after, is part of the same burst); a long
``Retry-After`` holds every task. Members (``juspay_rate_members``) say which tasks draw now, so that
a batch is about a quarter second of the merchant's rate split between them.

Plain SQL on PostgreSQL and SQLite (both tested); elsewhere, a statement the database refuses makes
the task pace itself (``sync.shared_pacing``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from airflow_provider_juspay.sync.ledger.dialect import Database, driver_of

__all__ = [
    "BUDGET_TABLE",
    "MEMBERS_TABLE",
    "BudgetStore",
    "Grant",
    "Members",
    "budget_tables_for",
]

BUDGET_TABLE = "juspay_rate_budget"
MEMBERS_TABLE = "juspay_rate_members"
#: A budget starts here when it is new (requests/s), then grows quickly until the first 429.
INITIAL_RATE = 100.0
#: The rate never goes below it (a 429 storm must not stop a run: the retry waits do the rest).
MIN_RATE = 1.0
#: The rate grows at most this often, and not within this long of a cut (its answers are still coming).
GROW_EVERY_S = 0.5
#: Growth factors per step: before the first 429 ever (slow start); within ``CALM_S`` of the last
#: cut (probe slowly where the limit was found); and past it (the limit may have risen: regrow briskly).
SLOW_START_GROWTH = 1.1
PROBE_GROWTH = 1.01
REGROW = 1.05
#: Seconds without a cut after which growth is brisk again (as CUBIC grows faster far from its last loss).
CALM_S = 10.0
#: The first cut of a budget (the end of its slow start, which overshoots by up to half or more while
#: a server's burst allowance drains) halves the rate, as TCP's first loss.
FIRST_CUT = 0.5
#: A 429 of a request sent before the last cut, or within this many seconds after it (tokens already
#: granted at the old rate, requests already on the wire), is part of the burst that was cut for.
BURST_S = 0.3
#: A budget unused this long restarts from half its rate in slow start (the limit may have moved).
IDLE_RESET_S = 600.0
#: A member not seen for this long has ended (or stalls): it no longer counts in the split.
MEMBER_LIVE_S = 5.0
#: A clock stepped back (NTP, a VM restored) leaves times in the row ahead of the database's now; no
#: grant starts later than this past now (the queue is a fraction of a second; a hold at most a minute),
#: and a cut "in the future" counts as now: no task waits out the step.
MAX_QUEUE_S = 2.0
MAX_HOLD_S = 60.0
_NO_CAP = 1e12


def budget_tables_for(ledger_table: str) -> tuple[str, str]:
    """The budget's two tables, in the ledger table's schema."""
    schema, dot, _ = ledger_table.rpartition(".")
    return f"{schema}{dot}{BUDGET_TABLE}", f"{schema}{dot}{MEMBERS_TABLE}"


@dataclass(frozen=True)
class Grant:
    """Tokens taken: the first is free at ``start`` (the database's epoch seconds), the others follow
    every ``interval`` seconds; ``now`` is the database's time of the take."""

    count: int
    start: float
    interval: float
    now: float
    rate: float  #: the merchant's rate after the take (requests/s)
    cut_at: float  #: when the rate was last cut (epoch seconds; 0: never)
    granted: float  #: tokens granted to every task since the budget was created
    slow_start: bool = False  #: no 429 yet: the rate still grows fast


@dataclass(frozen=True)
class Members:
    """The tasks drawing from a budget now."""

    count: int
    cap: float | None  #: the lowest ``rate_limit`` among them, if any set one


_DDL_BUDGET = """
CREATE TABLE IF NOT EXISTS {table} (
    budget_key VARCHAR(255) NOT NULL PRIMARY KEY,
    rate DOUBLE PRECISION NOT NULL,
    tat DOUBLE PRECISION NOT NULL,
    hold_until DOUBLE PRECISION NOT NULL,
    cut_at DOUBLE PRECISION NOT NULL,
    cut_rate DOUBLE PRECISION,
    grown_at DOUBLE PRECISION NOT NULL,
    cuts INTEGER NOT NULL,
    granted DOUBLE PRECISION NOT NULL,
    last_grant DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
)
"""

_DDL_MEMBERS = """
CREATE TABLE IF NOT EXISTS {table} (
    budget_key VARCHAR(255) NOT NULL,
    member VARCHAR(64) NOT NULL,
    seen_at DOUBLE PRECISION NOT NULL,
    cap DOUBLE PRECISION,
    PRIMARY KEY (budget_key, member)
)
"""

#: The database's clock in epoch seconds, one value per statement (SQLite's 'now' and PostgreSQL's
#: now() are fixed for the statement), and its GREATEST/LEAST.
_DIALECTS = {
    "sqlite3": ("((julianday('now') - 2440587.5) * 86400.0)", "MAX", "MIN"),
    "psycopg2": ("CAST(EXTRACT(EPOCH FROM now()) AS DOUBLE PRECISION)", "GREATEST", "LEAST"),
    "psycopg": ("CAST(EXTRACT(EPOCH FROM now()) AS DOUBLE PRECISION)", "GREATEST", "LEAST"),
}
_DEFAULT_DIALECT = ("CAST(EXTRACT(EPOCH FROM CURRENT_TIMESTAMP) AS DOUBLE PRECISION)", "GREATEST", "LEAST")
_NAME = re.compile(r"(?<![:\w]):([a-z_]+)")


class BudgetStore:
    """The budget's statements for one merchant key, on one connection (the caller serialises them).

    :param db: a connection to the ledger's database (not the ledger's own: it is used from worker
        threads while the ledger writes from another).
    :param ledger_table: the budget's tables go in its schema.
    :param key: the merchant (and the Juspay host: the sandbox's limit is not production's).
    """

    def __init__(self, db: Database, ledger_table: str, key: str) -> None:
        self.db = db
        self.key = key
        self.table, self.members_table = budget_tables_for(ledger_table)
        self._now, self._greatest, self._least = _DIALECTS.get(driver_of(db.connection), _DEFAULT_DIALECT)

    def ensure(self) -> None:
        """Create the tables and this key's row when missing (safe when tasks race); a budget idle for
        long restarts from half its rate in slow start."""
        for ddl, table in ((_DDL_BUDGET, self.table), (_DDL_MEMBERS, self.members_table)):
            try:
                self.db.execute(ddl.format(table=table))
            except Exception:  # another task created it first
                self.db.rollback()
        try:
            created = self._run(
                f"INSERT INTO {self.table} (budget_key, rate, tat, hold_until, cut_at, cut_rate, grown_at,"
                " cuts, granted, last_grant, updated_at)"
                f" SELECT :key, :rate, {self._now}, 0, 0, CAST(NULL AS DOUBLE PRECISION), {self._now},"
                f" 0, 0, 0, {self._now}"
                f" WHERE NOT EXISTS (SELECT 1 FROM {self.table} WHERE budget_key = :key)",
                key=self.key, rate=INITIAL_RATE,
            )  # fmt: skip
        except self.db.integrity_errors:  # another task inserted it first
            self.db.rollback()
            created = 0
        if not created:
            self._run(
                f"UPDATE {self.table} SET rate = {self._greatest}(:min, rate * 0.5), cut_rate = NULL,"
                f" updated_at = {self._now} WHERE budget_key = :key AND updated_at < {self._now} - :idle",
                min=MIN_RATE, key=self.key, idle=IDLE_RESET_S,
            )  # fmt: skip

    def take(self, count: int, cap: float | None = None, *, busy: bool = True) -> Grant:
        """Take ``count`` tokens (one statement); the rate grows by a step when the taker is ``busy`` (it
        used its last tokens up as they came due: the budget is what holds it back)."""
        clock, least = self._now, self._least
        grow = (
            f":busy = 1 AND {clock} - {least}(grown_at, {clock}) >= :every"
            f" AND {clock} - {least}(cut_at, {clock}) >= :every"
        )
        factor = (
            f"CASE WHEN cut_rate IS NULL THEN :slow WHEN {self._now} - cut_at < :calm THEN :probe"
            " ELSE :regrow END"
        )
        rows = self._query(
            f"UPDATE {self.table} SET"
            f" tat = {self._greatest}({least}(tat, {clock} + :queue), {clock},"
            f" {least}(hold_until, {clock} + :hold)) + :n / rate,"
            " last_grant = :n / rate,"
            " granted = granted + :n,"
            f" rate = {self._least}(:cap, CASE WHEN {grow} THEN rate * {factor} ELSE rate END),"
            f" grown_at = CASE WHEN {grow} THEN {self._now} ELSE grown_at END,"
            f" updated_at = {self._now}"
            " WHERE budget_key = :key"
            f" RETURNING tat, last_grant, rate, {self._now}, cut_at, granted, cut_rate",
            n=float(count), cap=_NO_CAP if cap is None else float(cap), busy=int(busy), every=GROW_EVERY_S,
            queue=MAX_QUEUE_S, hold=MAX_HOLD_S,
            slow=SLOW_START_GROWTH, calm=CALM_S, regrow=REGROW, probe=PROBE_GROWTH, key=self.key,
        )  # fmt: skip
        if not rows:
            raise LookupError(f"no budget row for {self.key!r} (call ensure() first)")
        tat, span, rate, now, cut_at, granted = (float(v) for v in rows[0][:6])
        return Grant(count, tat - span, span / count, now, rate, cut_at, granted, rows[0][6] is None)

    def cut(self, sent_at: float, factor: float) -> float | None:
        """Cut the rate to ``factor`` of itself (the first cut: ``FIRST_CUT``) for a 429 of a request
        sent at ``sent_at`` (database time), unless a cut already answered its burst; returns the new
        rate if this call cut."""
        rows = self._query(
            f"UPDATE {self.table} SET"
            f" cut_rate = CASE WHEN cut_rate IS NULL THEN {self._greatest}(:min, rate * :first)"
            " ELSE rate END,"
            f" rate = {self._greatest}(:min, rate * CASE WHEN cut_rate IS NULL THEN :first ELSE :factor END),"
            f" cut_at = {self._now}, cuts = cuts + 1, updated_at = {self._now}"
            f" WHERE budget_key = :key AND {self._least}(cut_at, {self._now}) + :burst < :sent"
            " RETURNING rate",
            min=MIN_RATE, first=FIRST_CUT, factor=factor, key=self.key, burst=BURST_S, sent=sent_at,
        )  # fmt: skip
        return float(rows[0][0]) if rows else None

    def hold(self, seconds: float) -> None:
        """No task takes a token for ``seconds`` (a long Retry-After, a used-up published quota)."""
        self._run(
            f"UPDATE {self.table} SET hold_until = {self._greatest}(hold_until, {self._now} + :s)"
            " WHERE budget_key = :key",
            s=seconds, key=self.key,
        )  # fmt: skip

    def beat(self, member: str, cap: float | None) -> Members:
        """This task draws now (with its ``rate_limit``, if any): the members seen lately and their cap."""
        seen = self._run(
            f"UPDATE {self.members_table} SET seen_at = {self._now}, cap = :cap"
            " WHERE budget_key = :key AND member = :member",
            cap=cap, key=self.key, member=member,
        )  # fmt: skip
        if not seen:
            self._run(
                f"INSERT INTO {self.members_table} (budget_key, member, seen_at, cap)"
                f" VALUES (:key, :member, {self._now}, :cap)",
                key=self.key, member=member, cap=cap,
            )  # fmt: skip
        count, lowest = self._query(
            f"SELECT COUNT(*), MIN(cap) FROM {self.members_table}"
            f" WHERE budget_key = :key AND seen_at > {self._now} - :live",
            key=self.key, live=MEMBER_LIVE_S,
        )[0]  # fmt: skip
        return Members(max(int(count), 1), None if lowest is None else float(lowest))

    def leave(self, member: str) -> None:
        """This task no longer draws (and members gone for an hour are forgotten)."""
        self._run(
            f"DELETE FROM {self.members_table} WHERE budget_key = :key"
            f" AND (member = :member OR seen_at < {self._now} - 3600)",
            key=self.key, member=member,
        )  # fmt: skip

    def state(self) -> dict[str, Any]:
        """The row as it is (tests, the bench)."""
        columns = ("rate", "tat", "hold_until", "cut_at", "cut_rate", "cuts", "granted")
        select = f"SELECT {', '.join(columns)} FROM {self.table} WHERE budget_key = :key"
        found = self._query(select, key=self.key)
        return dict(zip(columns, found[0], strict=True)) if found else {}

    # -- plumbing ----------------------------------------------------------------------------------

    def _bound(self, sql: str, values: dict[str, Any]) -> tuple[str, list[Any]]:
        binds, params = self.db.binds(), []

        def mark(match: re.Match[str]) -> str:
            params.append(values[match.group(1)])
            return binds()

        return _NAME.sub(mark, sql), params

    def _run(self, sql: str, **values: Any) -> int:
        statement, params = self._bound(sql, values)
        return self.db.execute(statement, params)

    def _query(self, sql: str, **values: Any) -> list[tuple[Any, ...]]:
        statement, params = self._bound(sql, values)
        return self.db.query(statement, params)
