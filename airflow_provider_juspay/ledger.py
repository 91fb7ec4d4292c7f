"""The delivery ledger: what was sent to Juspay, kept in a table on any DB-API connection.

One row per fulfilment key (merchant id, order id, command, fulfilment id) holds the hash of the
payload, the state, attempts, Juspay's last answer, attempt times and the Airflow run that tried
last. A rerun skips what is delivered, resends what failed, and resends what was in flight when a
process died (Juspay's ALREADY_EXISTS answer turns that into ``already_fulfilled``, never a double).
The API key is never written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from airflow_provider_juspay.fulfilment import FulfilmentRecord, FulfilmentResult, Outcome
from airflow_provider_juspay.sync.dispatcher import Item

__all__ = ["DEFAULT_TABLE", "IN_FLIGHT", "ON_CHANGE", "Ledger", "LedgerPreview", "RunInfo", "payload_hash"]

log = logging.getLogger(__name__)

DEFAULT_TABLE = "juspay_fulfilment_ledger"
IN_FLIGHT = "in_flight"
DELIVERED = frozenset(o.value for o in Outcome if o.is_delivered)
#: States the next run sends again (invalid records never reach the ledger).
UNDELIVERED = tuple(o.value for o in Outcome if o.is_undelivered)
#: What to do with a delivered key whose payload changed since.
ON_CHANGE = ("send", "skip", "fail")
CHANGED_AFTER_DELIVERY = "CHANGED_AFTER_DELIVERY"
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")

_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    merchant_id VARCHAR(128) NOT NULL,
    order_id VARCHAR(255) NOT NULL,
    command VARCHAR(64) NOT NULL,
    fulfillment_id VARCHAR(255) NOT NULL,
    payload_hash CHAR(64) NOT NULL,
    state VARCHAR(32) NOT NULL,
    attempts INTEGER NOT NULL,
    http_status INTEGER,
    error_code VARCHAR(255),
    message VARCHAR(2000),
    first_attempt_at VARCHAR(32) NOT NULL,
    last_attempt_at VARCHAR(32) NOT NULL,
    dag_id VARCHAR(250),
    run_id VARCHAR(250),
    task_id VARCHAR(250),
    try_number INTEGER,
    PRIMARY KEY (merchant_id, order_id, command, fulfillment_id)
)
"""
_COLUMNS = (
    "merchant_id", "order_id", "command", "fulfillment_id", "payload_hash", "state", "attempts",
    "http_status", "error_code", "message", "first_attempt_at", "last_attempt_at",
    "dag_id", "run_id", "task_id", "try_number",
)  # fmt: skip
_KEY = ("merchant_id", "order_id", "command", "fulfillment_id")


@dataclass(frozen=True)
class RunInfo:
    """The Airflow task try that writes the ledger (kept with each attempt, for people to trace)."""

    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    try_number: int | None = None


def payload_hash(record: FulfilmentRecord) -> str:
    """SHA-256 of what is sent (form fields and routing id), stable across runs."""
    payload = {**record.to_form(), "x-routing-id": record.routing_id or ""}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class Ledger:
    """Reads and writes the ledger table through one DB-API connection, from one thread.

    :param connection: a DB-API 2 connection (``DbApiHook.get_conn()``); committed after each batch.
    :param merchant_id: part of every key, so one table can serve several merchants.
    :param batch_size: records looked up / outcomes written per statement batch.
    """

    def __init__(
        self,
        connection: Any,
        *,
        merchant_id: str,
        table: str = DEFAULT_TABLE,
        run: RunInfo | None = None,
        batch_size: int = 200,
        flush_every_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not _TABLE_NAME.match(table):
            raise ValueError(f"ledger table must be a plain [schema.]name, got {table!r}")
        self.connection = connection
        self.merchant_id = merchant_id
        self.table = table
        self.run = run or RunInfo()
        self.batch_size = batch_size
        self._flush_every = flush_every_s
        self._clock = clock
        self._mark = _placeholder(connection)
        self._pending: list[FulfilmentResult] = []
        self._last_flush = clock()

    # -- schema ------------------------------------------------------------------------------

    def ensure_table(self) -> None:
        """Create the table when missing (portable DDL)."""
        cursor = self.connection.cursor()
        try:
            cursor.execute(_DDL.format(table=self.table))
        finally:
            cursor.close()
        self.connection.commit()

    # -- before sending ----------------------------------------------------------------------

    def filter(self, items: Iterable[Item], *, on_change: str = "send") -> Iterator[Item]:
        """Pass on what must be sent (marked in flight first); turn delivered keys into ``skipped``.

        ``on_change`` decides for a delivered key whose payload changed: ``send`` it (the default:
        the warehouse is the source of truth and Juspay answers ALREADY_EXISTS to a true repeat),
        ``skip`` it, or ``fail`` it (outcome ``invalid``, code CHANGED_AFTER_DELIVERY).
        """
        for decided, to_send, known in self._decide(items, on_change):
            self._mark_in_flight(to_send, known)
            yield from decided

    def preview(self, items: Iterable[Item], *, on_change: str = "send") -> Iterator[Item]:
        """What :meth:`filter` would skip and pass on, writing nothing (dry runs); no table means empty."""
        if not self.exists():
            yield from items
            return
        for decided, _, _ in self._decide(items, on_change):
            yield from decided

    def exists(self) -> bool:
        """Whether the table is there (without creating it)."""
        try:
            self._query(f"SELECT 1 FROM {self.table} WHERE 1 = 0", [])
        except Exception:  # each driver has its own Error class: any failure means "not there"
            self.connection.rollback()
            return False
        return True

    def read_only(self) -> LedgerPreview:
        """This ledger as a dry run sees it."""
        return LedgerPreview(self)

    def _decide(
        self, items: Iterable[Item], on_change: str
    ) -> Iterator[tuple[list[Item], list[tuple[FulfilmentRecord, str]], set[tuple[str, str, str]]]]:
        """Per batch: the items with delivered keys decided, the records to send, and the keys known."""
        if on_change not in ON_CHANGE:
            raise ValueError(f"on_change must be one of {ON_CHANGE}, got {on_change!r}")
        batch: list[Item] = []
        for item in items:
            batch.append(item)
            if len(batch) >= self.batch_size:
                yield self._decide_batch(batch, on_change)
                batch = []
        if batch:
            yield self._decide_batch(batch, on_change)

    def _decide_batch(
        self, batch: list[Item], on_change: str
    ) -> tuple[list[Item], list[tuple[FulfilmentRecord, str]], set[tuple[str, str, str]]]:
        records = [item for item in batch if isinstance(item, FulfilmentRecord)]
        known = self._lookup(records)
        to_send: list[tuple[FulfilmentRecord, str]] = []
        decided: list[Item] = []
        for item in batch:
            decided.append(item)
            if not isinstance(item, FulfilmentRecord):
                continue
            digest = payload_hash(item)
            row = known.get(_key(item))
            if row is not None and row["state"] in DELIVERED:
                if row["payload_hash"] == digest:
                    decided[-1] = _result(item, Outcome.SKIPPED, message=f"already {row['state']} (ledger)")
                    continue
                if on_change == "skip":
                    decided[-1] = _result(
                        item, Outcome.SKIPPED, message="changed since delivered; on_change=skip"
                    )
                    continue
                if on_change == "fail":
                    decided[-1] = _result(
                        item,
                        Outcome.INVALID,
                        error_code=CHANGED_AFTER_DELIVERY,
                        message="payload changed since it was delivered; on_change=fail",
                    )
                    continue
            to_send.append((item, digest))
        return decided, to_send, set(known)

    def _lookup(self, records: Sequence[FulfilmentRecord]) -> dict[tuple[str, str, str], dict[str, Any]]:
        if not records:
            return {}
        order_ids = sorted({r.order_id for r in records})
        marks = ", ".join(self._mark(i + 1) for i in range(len(order_ids)))
        sql = (
            f"SELECT order_id, command, fulfillment_id, state, payload_hash, attempts, first_attempt_at "
            f"FROM {self.table} WHERE merchant_id = {self._mark(0)} AND order_id IN ({marks})"
        )
        rows = self._query(sql, [self.merchant_id, *order_ids])
        return {
            (order_id, command, fid): {
                "state": state,
                "payload_hash": digest,
                "attempts": attempts,
                "first_attempt_at": first,
            }
            for order_id, command, fid, state, digest, attempts, first in rows
        }

    def _mark_in_flight(
        self, to_send: list[tuple[FulfilmentRecord, str]], known: set[tuple[str, str, str]]
    ) -> None:
        if not to_send:
            return
        now = _now()
        inserts, updates = [], []
        for record, digest in to_send:
            key = _key(record)
            if key in known:  # also a key repeated within this batch: inserted once, then updated
                updates.append([digest, IN_FLIGHT, now, *self._run_values(), self.merchant_id, *key])
            else:
                known.add(key)
                inserts.append(
                    [
                        self.merchant_id,
                        *key,
                        digest,
                        IN_FLIGHT,
                        0,
                        None,
                        None,
                        None,
                        now,
                        now,
                        *self._run_values(),
                    ]
                )
        self._write(
            inserts,
            updates_sql=self._update_sql(("payload_hash", "state", "last_attempt_at")),
            updates=updates,
        )

    # -- after sending -----------------------------------------------------------------------

    def record(self, results: Iterable[FulfilmentResult]) -> Iterator[FulfilmentResult]:
        """Pass results on, writing the outcome of every sent or stopped record in batches."""
        try:
            for result in results:
                if result.outcome not in (Outcome.SKIPPED, Outcome.INVALID) and result.order_id is not None:
                    self._pending.append(result)
                    if (
                        len(self._pending) >= self.batch_size
                        or self._clock() - self._last_flush >= self._flush_every
                    ):
                        self.flush()
                yield result
        finally:
            self.flush()

    def flush(self) -> None:
        """Write the buffered outcomes now."""
        pending, self._pending = self._pending, []
        self._last_flush = self._clock()
        if not pending:
            return
        now = _now()
        updates = []
        for result in pending:
            key = (result.order_id or "", result.command or "", result.fulfillment_id or "")
            state = result.outcome.value
            updates.append(
                [
                    state,
                    result.attempts,
                    result.http_status,
                    result.error_code,
                    (result.message or "")[:2000] or None,
                    now,
                    *self._run_values(),
                    self.merchant_id,
                    *key,
                ]
            )
        columns = ("state", "attempts", "http_status", "error_code", "message", "last_attempt_at")
        self._write([], updates_sql=self._update_sql(columns, add_attempts=True), updates=updates)

    # -- reading, for sensors and people ------------------------------------------------------

    def summary(
        self, *, run_id: str | None = None, since: str | None = None, until: str | None = None
    ) -> dict:
        """Counts by state and error code, and the failed keys (first 100), for a run or a time window."""
        where, params = [f"merchant_id = {self._mark(0)}"], [self.merchant_id]
        for column, op, value in (
            ("run_id", "=", run_id),
            ("last_attempt_at", ">=", since),
            ("last_attempt_at", "<", until),
        ):
            if value is not None:
                where.append(f"{column} {op} {self._mark(len(params))}")
                params.append(value)
        condition = " AND ".join(where)
        counts = dict(
            self._query(f"SELECT state, COUNT(*) FROM {self.table} WHERE {condition} GROUP BY state", params)
        )
        # Our own constants, not input: safe to write into the statement.
        failure_where = f"{condition} AND state IN ({', '.join(repr(s) for s in UNDELIVERED)})"
        errors = dict(
            self._query(
                f"SELECT COALESCE(error_code, state), COUNT(*) FROM {self.table} WHERE {failure_where} "
                "GROUP BY COALESCE(error_code, state)",
                params,
            )
        )
        failures = [
            {"order_id": o, "command": c, "outcome": s, "error_code": e, "message": m}
            for o, c, s, e, m in self._query(
                f"SELECT order_id, command, state, error_code, message FROM {self.table} "
                f"WHERE {failure_where} ORDER BY last_attempt_at, order_id",
                params,
                limit=100,
            )
        ]
        total = sum(counts.values())
        return {
            "total": total,
            "counts": counts,
            "errors": errors,
            "failures": failures,
            "failed": sum(counts.get(s, 0) for s in UNDELIVERED),
            "in_flight": counts.get(IN_FLIGHT, 0),
        }

    def states(self) -> dict[tuple[str, str, str], str]:
        """Every key of this merchant and its state (for tests and small tables)."""
        rows = self._query(
            f"SELECT order_id, command, fulfillment_id, state FROM {self.table} "
            f"WHERE merchant_id = {self._mark(0)}",
            [self.merchant_id],
        )
        return {(o, c, f): s for o, c, f, s in rows}

    # -- plumbing ----------------------------------------------------------------------------

    def _run_values(self) -> list[Any]:
        return [self.run.dag_id, self.run.run_id, self.run.task_id, self.run.try_number]

    def _update_sql(self, columns: Sequence[str], *, add_attempts: bool = False) -> str:
        names = list(columns)
        sets = []
        for i, name in enumerate(names):
            if name == "attempts" and add_attempts:
                sets.append(f"attempts = attempts + {self._mark(i)}")
            else:
                sets.append(f"{name} = {self._mark(i)}")
        offset = len(names)
        sets += [
            f"{c} = {self._mark(offset + i)}"
            for i, c in enumerate(("dag_id", "run_id", "task_id", "try_number"))
        ]
        offset += 4
        keys = " AND ".join(f"{c} = {self._mark(offset + i)}" for i, c in enumerate(_KEY))
        return f"UPDATE {self.table} SET {', '.join(sets)} WHERE {keys}"

    def _write(self, inserts: list[list[Any]], *, updates_sql: str, updates: list[list[Any]]) -> None:
        cursor = self.connection.cursor()
        try:
            if inserts:
                marks = ", ".join(self._mark(i) for i in range(len(_COLUMNS)))
                cursor.executemany(
                    f"INSERT INTO {self.table} ({', '.join(_COLUMNS)}) VALUES ({marks})",
                    self._params(inserts),
                )
            if updates:
                cursor.executemany(updates_sql, self._params(updates))
        finally:
            cursor.close()
        self.connection.commit()

    def _query(self, sql: str, params: list[Any], limit: int | None = None) -> list[tuple]:
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, self._params([params])[0])
            rows = cursor.fetchmany(limit) if limit else cursor.fetchall()
        finally:
            cursor.close()
        self.connection.commit()  # end the read transaction (Postgres would hold it open)
        return [tuple(row) for row in rows]

    def _params(self, rows: list[list[Any]]) -> list[Any]:
        if self._mark is _named:
            return [{f"p{i}": v for i, v in enumerate(row)} for row in rows]
        return rows


class LedgerPreview:
    """A ledger as a dry run sees it: it tells what would be skipped and writes nothing."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def filter(self, items: Iterable[Item], *, on_change: str = "send") -> Iterator[Item]:
        return self.ledger.preview(items, on_change=on_change)

    def record(self, results: Iterable[FulfilmentResult]) -> Iterator[FulfilmentResult]:
        return iter(results)


def _key(record: FulfilmentRecord) -> tuple[str, str, str]:
    return (record.order_id, record.fulfillment_command, record.fulfillment_id or "")


def _result(record: FulfilmentRecord, outcome: Outcome, **kwargs: Any) -> FulfilmentResult:
    return FulfilmentResult(
        order_id=record.order_id,
        outcome=outcome,
        command=record.fulfillment_command,
        fulfillment_id=record.fulfillment_id,
        **kwargs,
    )


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _qmark(_: int) -> str:
    return "?"


def _format(_: int) -> str:
    return "%s"


def _numeric(i: int) -> str:
    return f":{i + 1}"


def _named(i: int) -> str:
    return f":p{i}"


def _placeholder(connection: Any) -> Callable[[int], str]:
    """The bind marker of the connection's driver (DB-API ``paramstyle``)."""
    module = sys.modules.get(type(connection).__module__.split(".")[0])
    style = getattr(module, "paramstyle", "qmark")
    return {
        "qmark": _qmark,
        "format": _format,
        "pyformat": _format,
        "numeric": _numeric,
        "named": _named,
    }.get(style, _qmark)
