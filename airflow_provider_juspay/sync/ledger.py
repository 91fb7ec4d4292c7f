"""The delivery ledger: what was sent to Juspay, kept in a table on any DB-API connection.

One row per fulfilment key (merchant id, order id, command, fulfilment id) holds the hash of the
payload, the state, attempts, Juspay's last answer, attempt times and the Airflow run that tried
last. A rerun skips what is delivered, resends what failed, and resends what was in flight when a
process died (Juspay's ALREADY_EXISTS answer turns that into ``already_fulfilled``, never a double).
The API key is never written.

Runs may overlap (a retry DAG during the nightly sync, a backfill, shards whose queries overlap).
A run claims a key before sending it: an INSERT of a new key, or a compare-and-set UPDATE of the row
it read, so one run wins each key whatever the database. A claim carries a lease (``lease_s``, 60 s by
default) that a heartbeat renews every quarter lease while the run lives, whatever its rows do; leases
are written and judged on the database's clock, so workers whose clocks disagree still agree on them.
A key another run holds is waited for at the end of the run: delivered by the holder, it is
``skipped``; still renewed, it is ``held_elsewhere`` (that live run delivers it); left by a run that
stopped renewing, it is taken over once the lease has passed and sent. The next try of the same task
takes over its earlier try's keys at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import Any

from airflow_provider_juspay.fulfilment import FulfilmentRecord, FulfilmentResult, Item, Outcome
from airflow_provider_juspay.sync.report import CHANGED_AFTER_DELIVERY, RunReport

__all__ = [
    "DEFAULT_LEASE_S",
    "DEFAULT_TABLE",
    "IN_FLIGHT",
    "ON_CHANGE",
    "LeaseLost",
    "Ledger",
    "LedgerPreview",
    "RunInfo",
    "payload_hash",
]

log = logging.getLogger(__name__)

DEFAULT_TABLE = "juspay_fulfilment_ledger"
IN_FLIGHT = "in_flight"
DELIVERED = frozenset(o.value for o in Outcome if o.is_delivered)
#: States the next run sends again (invalid records never reach the ledger).
UNDELIVERED = tuple(o.value for o in Outcome if o.is_failure and o is not Outcome.INVALID)
#: What to do with a delivered key whose payload changed since.
ON_CHANGE = ("send", "skip", "fail")
#: Seconds a claim holds a key against other runs unless renewed. A live run's heartbeat renews it every
#: quarter lease, however long a record takes, so a dead run's keys go again within about a minute.
DEFAULT_LEASE_S = 60.0
#: Longest pause between two looks at keys another run holds, and at a stop.
_HELD_POLL_S = 1.0
#: Slack on lease expiry for clock readings that are not exact (a database clock read over the network).
_CLOCK_MARGIN_S = 2.0
#: Times a key lost to another run's write is read and decided again before it counts as held.
_CLAIM_ROUNDS = 3
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
    map_index INTEGER,
    claim_id VARCHAR(64),
    lease_until VARCHAR(32),
    PRIMARY KEY (merchant_id, order_id, command, fulfillment_id)
)
"""
#: Columns added since the first release, with their types: ``ensure_table`` adds them when missing.
_ADDED_COLUMNS = (("map_index", "INTEGER"), ("claim_id", "VARCHAR(64)"), ("lease_until", "VARCHAR(32)"))
_COLUMNS = (
    "merchant_id", "order_id", "command", "fulfillment_id", "payload_hash", "state", "attempts",
    "http_status", "error_code", "message", "first_attempt_at", "last_attempt_at",
    "dag_id", "run_id", "task_id", "try_number", "map_index", "claim_id", "lease_until",
)  # fmt: skip
_RUN_COLUMNS = ("dag_id", "run_id", "task_id", "try_number", "map_index")
_KEY = ("merchant_id", "order_id", "command", "fulfillment_id")
_LOOKED_UP = (
    "order_id", "command", "fulfillment_id", "state", "payload_hash", "last_attempt_at",
    *_RUN_COLUMNS, "claim_id", "lease_until",
)  # fmt: skip
#: Outcomes written for a claimed key (held and skipped keys were never claimed; invalid never sent).
_WRITTEN = frozenset(o for o in Outcome if o.is_delivered or o.is_failure) - {Outcome.INVALID}
ABANDONED_IN_FLIGHT = "ABANDONED_IN_FLIGHT"
#: A record to claim: its position in the batch, the record, its payload hash, and its row as read.
_Claim = tuple[int, FulfilmentRecord, str, "dict[str, Any] | None"]


class LeaseLost(RuntimeError):
    """The heartbeat could not renew this run's lease for half of it: its keys may soon go to another run."""


@dataclass(frozen=True)
class RunInfo:
    """The Airflow task try that writes the ledger (kept with each attempt, for people to trace)."""

    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    try_number: int | None = None
    map_index: int | None = None

    def is_earlier_try_of(self, row: dict[str, Any]) -> bool:
        """Whether ``row`` was written by an earlier try of this same task instance (now over)."""
        return (
            self.dag_id is not None
            and self.try_number is not None
            and row["try_number"] is not None
            and (row["dag_id"], row["run_id"], row["task_id"]) == (self.dag_id, self.run_id, self.task_id)
            and _map_index(row["map_index"]) == _map_index(self.map_index)
            and row["try_number"] < self.try_number
        )


def payload_hash(record: FulfilmentRecord) -> str:
    """SHA-256 of what is sent (form fields and routing id), stable across runs."""
    payload = {**record.to_form(), "x-routing-id": record.routing_id or ""}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class Ledger:
    """Reads and writes the ledger table through one DB-API connection, from one thread.

    :param connection: a DB-API 2 connection (``DbApiHook.get_conn()``); committed after each batch.
    :param merchant_id: part of every key, so one table can serve several merchants.
    :param batch_size: records looked up / outcomes written per statement batch.
    :param lease_s: seconds this run's claims hold their keys against other runs (renewed as it goes).
    :param placeholder: the bind marker of the connection (``DbApiHook.placeholder``); sniffed from
        the driver's ``paramstyle`` when not given.
    :param connect: opens another connection to the same database, for the heartbeat thread that renews
        this run's lease (e.g. ``DbApiHook.get_conn``); without it the lease is renewed as outcomes are
        written, which a run stuck on slow records may not do in time.
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
        lease_s: float = DEFAULT_LEASE_S,
        placeholder: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] | None = None,
        connect: Callable[[], Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not _TABLE_NAME.match(table):
            raise ValueError(f"ledger table must be a plain [schema.]name, got {table!r}")
        if lease_s <= 0:
            raise ValueError(f"lease_s must be a positive number of seconds, got {lease_s!r}")
        self.connection = connection
        self.merchant_id = merchant_id
        self.table = table
        self.run = run or RunInfo()
        self.batch_size = batch_size
        self.lease_s = lease_s
        #: Identifies this run's claims; unique per Ledger (one per task try).
        self.claim_id = uuid.uuid4().hex
        self._flush_every = flush_every_s
        self._clock = clock
        self._wall = wall_clock or (lambda: datetime.now(timezone.utc))
        self._mark = _marker(placeholder) if placeholder else _placeholder(connection)
        self._integrity_errors = _integrity_errors(connection)
        self._pending: list[FulfilmentResult] = []
        #: Keys this run holds in flight and has not yet written an outcome for.
        self._claimed: set[tuple[str, str, str]] = set()
        #: Keys another run held when this one wanted them: the record, and the lease seen then.
        self._held: dict[tuple[str, str, str], tuple[FulfilmentRecord, str | None]] = {}
        self._last_flush = clock()
        self._last_renewal = clock()
        self._sleep = sleep
        #: Seconds the database's clock is ahead of this machine's (leases are on the database's clock).
        self._clock_offset: float | None = None
        self._heartbeat = _Heartbeat(self, connect) if connect is not None else None

    # -- schema ------------------------------------------------------------------------------

    def ensure_table(self) -> None:
        """Create the table when missing and add columns newer releases need (portable DDL).

        Safe when several runs start together: losing a race to create the table or add a column is fine.
        """
        try:
            self._execute(_DDL.format(table=self.table))
        except Exception:
            self.connection.rollback()
            if not self.exists():
                raise
        for name, kind in _ADDED_COLUMNS:
            if self._has_column(name):
                continue
            try:
                self._execute(f"ALTER TABLE {self.table} ADD COLUMN {name} {kind}")
            except Exception:
                self.connection.rollback()
                if not self._has_column(name):
                    raise

    def exists(self) -> bool:
        """Whether the table is there (without creating it)."""
        return self._has_column("state")

    def _has_column(self, name: str) -> bool:
        try:
            self._query(f"SELECT {name} FROM {self.table} WHERE 1 = 0", [])
        except Exception:  # each driver has its own Error class: any failure means "not there"
            self.connection.rollback()
            return False
        return True

    # -- before sending ----------------------------------------------------------------------

    def filter(
        self, items: Iterable[Item], *, on_change: str = "send", stopped: Callable[[], bool] | None = None
    ) -> Iterator[Item]:
        """Pass on what this run must send, claimed in flight first; decide the rest here.

        A delivered key with the same payload becomes ``skipped``; one whose payload changed follows
        ``on_change``: ``send`` it (the default: the warehouse is the source of truth and Juspay
        answers ALREADY_EXISTS to a true repeat), ``skip`` it, or ``fail`` it (outcome ``invalid``,
        code CHANGED_AFTER_DELIVERY). A key another live run holds in flight becomes ``held_elsewhere``.
        Once ``stopped()`` is true, nothing more is claimed: records pass on unclaimed, to be counted
        ``not_attempted``, and the ledger is left as it was for them.

        Keys another run holds are not passed on: :meth:`settle_held` decides them after the rest.
        """
        for batch in self._batches(items, on_change):
            if stopped is not None and stopped():
                yield from self._preview_batch(batch, on_change)
            else:
                yield from self._claim_batch(batch, on_change)

    def preview(self, items: Iterable[Item], *, on_change: str = "send") -> Iterator[Item]:
        """What :meth:`filter` would skip and pass on, writing nothing (dry runs); no table means empty."""
        if not self.exists():
            yield from items
            return
        for batch in self._batches(items, on_change):
            yield from self._preview_batch(batch, on_change)

    def read_only(self) -> LedgerPreview:
        """This ledger as a dry run sees it."""
        return LedgerPreview(self)

    def _batches(self, items: Iterable[Item], on_change: str) -> Iterator[list[Item]]:
        if on_change not in ON_CHANGE:
            raise ValueError(f"on_change must be one of {ON_CHANGE}, got {on_change!r}")
        batch: list[Item] = []
        for item in items:
            batch.append(item)
            if len(batch) >= self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def _preview_batch(self, batch: list[Item], on_change: str) -> list[Item]:
        """The batch with what the ledger decides replaced by results; the rest passed on unclaimed."""
        decided = list(batch)
        results, _, _ = self._decide(batch, _record_positions(batch), on_change)
        for i, result in results.items():
            decided[i] = result
        return decided

    def _claim_batch(self, batch: list[Item], on_change: str) -> list[Item]:
        """The batch with what the ledger decides replaced by results; the rest claimed for this run.

        A key another run wrote between our read and our claim is read and decided again.
        """
        self._check_lease()
        decided = list(batch)
        positions = _record_positions(batch)
        held_elsewhere: set[int] = set()
        for _ in range(_CLAIM_ROUNDS):
            results, claims, held = self._decide(batch, positions, on_change)
            for i, result in results.items():
                decided[i] = result
            held_elsewhere |= held
            positions = self._claim(claims)
            if not positions:
                break
        # Still contended after every round (another run is at it right now), or held by another run:
        # decided at the end of the run (settle_held), once their holder had its chance.
        held_elsewhere |= set(positions)
        for i in held_elsewhere:
            record = batch[i]
            assert isinstance(record, FulfilmentRecord)
            self._held.setdefault(_key(record), (record, None))
        return [item for i, item in enumerate(decided) if i not in held_elsewhere]

    def settle_held(
        self, *, on_change: str = "send", stopped: Callable[[], bool] | None = None
    ) -> Iterator[Item]:
        """Decide the keys :meth:`filter` found held by other runs, once this run's own are done: wait
        until each is delivered (``skipped``), renewed by a live holder (``held_elsewhere``: that run sends
        it) or left by a holder that stopped renewing (claimed here, to send), at most about one lease.
        """
        stopped = stopped or (lambda: False)
        if not self._held:
            return
        held, self._held = self._held, {}
        log.info("%d keys are held by other runs: waiting for them (at most %.0f s)", len(held), self.lease_s)
        deadline = self._clock() + self.lease_s + 2 * _CLOCK_MARGIN_S
        poll = max(0.01, min(_HELD_POLL_S, self.lease_s / 8))
        still: dict[tuple[str, str, str], FulfilmentResult] = {}
        while held and not stopped():
            known = self._lookup([record for record, _ in held.values()])
            live_after = self._live_after()
            decide = []
            for key, (record, seen) in list(held.items()):
                row = known.get(key)
                lease = row["lease_until"] if row is not None else None
                if row is None or row["state"] != IN_FLIGHT or not self._held_by_a_live_run(row, live_after):
                    decide.append(record)  # delivered, failed, or left by its holder: decided below
                elif seen is not None and lease is not None and lease > seen:
                    still[key] = _result(
                        record,
                        Outcome.HELD_ELSEWHERE,
                        message=f"in flight in {_holder(row)}, which is alive (renewed its lease to "
                        f"{lease}): that run sends it",
                    )
                else:
                    held[key] = (record, lease)
                    continue
                del held[key]
            if decide:
                yield from self._claim_batch(list(decide), on_change)
                # What the claim found held again goes back to waiting, with the lease seen now.
                for key, entry in self._held.items():
                    held.setdefault(key, entry)
                self._held = {}
            if held and self._clock() >= deadline:
                break
            if held:
                self._sleep(poll)
        for key, (record, _) in held.items():  # stopped, or out of time: that run's to deliver
            still[key] = _result(
                record, Outcome.HELD_ELSEWHERE, message="in flight in another run when this one ended"
            )
        yield from still.values()

    def _decide(
        self, batch: list[Item], positions: list[int], on_change: str
    ) -> tuple[dict[int, FulfilmentResult], list[_Claim], set[int]]:
        """One read of the ledger: a result for each record it decides, a claim to make for the others,
        and the positions another run holds (their results are ``held_elsewhere``)."""
        records = [batch[i] for i in positions]
        known = self._lookup(records)  # type: ignore[arg-type]
        live_after = self._live_after()
        results: dict[int, FulfilmentResult] = {}
        held: set[int] = set()
        claims: list[_Claim] = []
        taken: set[tuple[str, str, str]] = set()
        for i, record in zip(positions, records, strict=True):
            assert isinstance(record, FulfilmentRecord)
            key = _key(record)
            if key in self._claimed or key in taken:
                results[i] = _result(
                    record, Outcome.HELD_ELSEWHERE, message="an earlier row of this run holds this key"
                )
                continue
            digest = payload_hash(record)
            row = known.get(key)
            verdict = self._verdict(record, digest, row, live_after, on_change)
            if verdict is not None:
                results[i] = verdict
                if verdict.outcome is Outcome.HELD_ELSEWHERE:
                    held.add(i)  # another run's: a claim passes it over, a preview reports it
                continue
            taken.add(key)
            claims.append((i, record, digest, row))
        return results, claims, held

    def _verdict(
        self,
        record: FulfilmentRecord,
        digest: str,
        row: dict[str, Any] | None,
        live_after: str,
        on_change: str,
    ) -> FulfilmentResult | None:
        """The result for a key that is not to be sent by this run, or None to send (claim) it."""
        if row is None:
            return None
        if row["state"] in DELIVERED:
            if row["payload_hash"] == digest:
                return _result(record, Outcome.SKIPPED, message=f"already {row['state']} (ledger)")
            if on_change == "skip":
                return _result(record, Outcome.SKIPPED, message="changed since delivered; on_change=skip")
            if on_change == "fail":
                return _result(
                    record,
                    Outcome.INVALID,
                    error_code=CHANGED_AFTER_DELIVERY,
                    message="payload changed since it was delivered; on_change=fail",
                )
            return None
        if row["state"] == IN_FLIGHT and self._held_by_a_live_run(row, live_after):
            return _result(
                record,
                Outcome.HELD_ELSEWHERE,
                message=f"in flight in {_holder(row)}, lease until {row['lease_until']}: that run sends it",
            )
        return None

    def _held_by_a_live_run(self, row: dict[str, Any], live_after: str) -> bool:
        if row["claim_id"] == self.claim_id:
            return True
        if self.run.is_earlier_try_of(row):
            return False  # Airflow starts a task's next try only after the last one ended
        return row["lease_until"] is not None and bool(row["lease_until"] > live_after)

    def _lookup(self, records: Sequence[FulfilmentRecord]) -> dict[tuple[str, str, str], dict[str, Any]]:
        if not records:
            return {}
        order_ids = sorted({r.order_id for r in records})
        marks = ", ".join(self._mark(i + 1) for i in range(len(order_ids)))
        sql = (
            f"SELECT {', '.join(_LOOKED_UP)} "
            f"FROM {self.table} WHERE merchant_id = {self._mark(0)} AND order_id IN ({marks})"
        )
        rows = self._query(sql, [self.merchant_id, *order_ids])
        return {(row[0], row[1], row[2]): dict(zip(_LOOKED_UP, row, strict=True)) for row in rows}

    def _claim(self, to_claim: list[_Claim]) -> list[int]:
        """Claim keys for this run; returns the positions of those another run took first."""
        if not to_claim:
            return []
        now, lease = self._now(), self._lease_until()
        if self._heartbeat is not None:
            self._heartbeat.start()
        # Rows are always locked in key order, so two runs claiming the same keys cannot deadlock.
        to_claim = sorted(to_claim, key=lambda claim: _key(claim[1]))
        new = [(i, record, digest) for i, record, digest, row in to_claim if row is None]
        seen = [(i, record, digest, row) for i, record, digest, row in to_claim if row is not None]
        lost = self._insert_claims(new, now, lease)
        cursor = self.connection.cursor()
        try:
            for i, record, digest, row in seen:
                cursor.execute(
                    self._cas_sql, self._params([self._cas_values(record, digest, row, now, lease)])[0]
                )
                if cursor.rowcount != 1:
                    lost.append(i)
        finally:
            cursor.close()
        self.connection.commit()
        won = {i for i, *_ in to_claim} - set(lost)
        self._claimed.update(_key(record) for i, record, *_ in to_claim if i in won)
        return sorted(lost)

    def _insert_claims(self, new: list[tuple[int, FulfilmentRecord, str]], now: str, lease: str) -> list[int]:
        if not new:
            return []
        rows = [self._insert_values(record, digest, now, lease) for _, record, digest in new]
        try:
            self._executemany(self._insert_sql, rows)
            return []
        except self._integrity_errors:
            self.connection.rollback()
        lost = []  # another run inserted some of these keys first: one at a time, to know which
        for (i, _, _), values in zip(new, rows, strict=True):
            try:
                self._executemany(self._insert_sql, [values])
            except self._integrity_errors:
                self.connection.rollback()
                lost.append(i)
        return lost

    def _insert_values(self, record: FulfilmentRecord, digest: str, now: str, lease: str) -> list[Any]:
        return [
            self.merchant_id, *_key(record), digest, IN_FLIGHT, 0, None, None, None, now, now,
            *self._run_values(), self.claim_id, lease,
        ]  # fmt: skip

    def _cas_values(
        self, record: FulfilmentRecord, digest: str, row: dict[str, Any], now: str, lease: str
    ) -> list[Any]:
        return [
            digest, IN_FLIGHT, now, *self._run_values(), self.claim_id, lease,
            self.merchant_id, *_key(record),
            row["state"], row["last_attempt_at"], row["claim_id"] or "", row["lease_until"] or "",
        ]  # fmt: skip

    # -- after sending -----------------------------------------------------------------------

    def record(self, results: Iterable[FulfilmentResult]) -> Iterator[FulfilmentResult]:
        """Pass results on, writing the outcome of every key this run claimed, in batches.

        When something upstream fails (the database, the warehouse, a timeout), what is known is
        still written if the database allows, and the original error is the one raised.
        """
        try:
            for result in results:
                key = _result_key(result)
                if result.outcome in _WRITTEN and key in self._claimed:
                    self._pending.append(result)
                    if (
                        len(self._pending) >= self.batch_size
                        or self._clock() - self._last_flush >= self._flush_every
                    ):
                        self.flush()
                yield result
        except BaseException:
            self._flush_quietly()
            raise
        self.flush()

    def flush(self) -> None:
        """Write the buffered outcomes now (and, without a heartbeat, renew this run's lease when due)."""
        self._check_lease()
        pending, self._pending = self._pending, []
        self._last_flush = self._clock()
        if pending:
            now = self._now()
            updates = []
            for result in sorted(pending, key=_result_key):  # key order: see _claim
                key = _result_key(result)
                self._claimed.discard(key)
                updates.append(
                    [
                        result.outcome.value,
                        result.attempts,
                        result.http_status,
                        (result.error_code or "")[:255] or None,  # the columns' sizes
                        (result.message or "")[:2000] or None,
                        now,
                        *self._run_values(),
                        self.merchant_id,
                        *key,
                        self.claim_id,
                    ]
                )
            self._executemany(self._outcome_sql, updates)
        if (
            self._heartbeat is None
            and self._claimed
            and self._clock() - self._last_renewal >= self.lease_s / 4
        ):
            self._renew(self.connection)

    def close(self) -> None:
        """Stop the heartbeat (its keys still in flight keep their lease until it passes)."""
        if self._heartbeat is not None:
            self._heartbeat.stop()

    def _check_lease(self) -> None:
        if self._heartbeat is not None and self._heartbeat.lost is not None:
            raise LeaseLost(self._heartbeat.lost)

    def _renew(self, connection: Any) -> None:
        """Push this run's lease forward: its keys still in flight stay held against other runs."""
        self._last_renewal = self._clock()
        cursor = connection.cursor()
        try:
            cursor.execute(
                self._renew_sql,
                self._params([[self._lease_until(), self.merchant_id, self.claim_id, IN_FLIGHT]])[0],
            )
        finally:
            cursor.close()
        connection.commit()

    @cached_property
    def _renew_sql(self) -> str:
        return (
            f"UPDATE {self.table} SET lease_until = {self._mark(0)} WHERE merchant_id = {self._mark(1)} "
            f"AND claim_id = {self._mark(2)} AND state = {self._mark(3)}"
        )

    def _sync_clock(self, connection: Any) -> None:
        """Read the database's clock: leases are written and judged on it, whatever this machine's says."""
        cursor = connection.cursor()
        try:
            cursor.execute(_CLOCK_SQL.get(_driver(connection), _CLOCK_SQL[""]))
            value = cursor.fetchone()[0]
            connection.commit()
        except Exception as exc:  # a database without these functions: this machine's clock, said once
            connection.rollback()
            if self._clock_offset is None:
                log.warning("Could not read the ledger database's clock (%s); leases use this machine's", exc)
                self._clock_offset = 0.0
            return
        finally:
            cursor.close()
        self._clock_offset = (_as_utc(value) - self._wall()).total_seconds()

    def _flush_quietly(self) -> None:
        try:
            self.connection.rollback()
            self.flush()
        except Exception as exc:  # the database is what failed: the caller raises the first error
            log.warning(
                "Could not write %d outcomes to the ledger after the run failed (%s: %s); "
                "their keys stay in flight and the next try sends them again",
                len(self._pending) + len(self._claimed),
                type(exc).__name__,
                exc,
            )

    # -- reading, for sensors and people ------------------------------------------------------

    def summary(
        self, *, run_id: str | None = None, since: str | None = None, until: str | None = None
    ) -> RunReport:
        """A report of the keys a run, or a time window, last wrote: counts, errors, the first 100 failures.

        Keys in flight in a live run are counted in ``in_flight``; those whose lease has passed were left
        by a dead process and count as ``not_attempted`` (code ABANDONED_IN_FLIGHT) until sent again.
        """
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
        now_mark = self._mark(len(params))
        abandoned = self._query(
            f"SELECT COUNT(*) FROM {self.table} WHERE {condition} AND state = '{IN_FLIGHT}' "
            f"AND (lease_until IS NULL OR lease_until < {now_mark})",
            [*params, _timestamp(self._lease_now())],
        )[0][0]
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
        live = counts.pop(IN_FLIGHT, 0) - abandoned
        if abandoned:  # left by a dead process: not delivered, and no run is sending them
            errors[ABANDONED_IN_FLIGHT] = abandoned
            counts[Outcome.NOT_ATTEMPTED.value] = counts.get(Outcome.NOT_ATTEMPTED.value, 0) + abandoned
        report = RunReport(
            total=sum(counts.values()) + live, errors=errors, failures=failures, in_flight=live
        )
        report.counts.update(counts)
        return report

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
        return [
            self.run.dag_id, self.run.run_id, self.run.task_id, self.run.try_number, self.run.map_index
        ]  # fmt: skip

    def _now(self) -> str:
        """This machine's time (attempt times, for people and the sensors' windows)."""
        return _timestamp(self._wall())

    def _lease_now(self) -> datetime:
        """The database's time (leases), read from it once and then followed on this machine's clock."""
        if self._clock_offset is None:
            self._sync_clock(self.connection)
        return self._wall() + timedelta(seconds=self._clock_offset or 0.0)

    def _live_after(self) -> str:
        """Leases ending after this are a live run's: the database's time, less slack for readings that
        are not exact."""
        return _timestamp(self._lease_now() - timedelta(seconds=min(_CLOCK_MARGIN_S, self.lease_s / 4)))

    def _lease_until(self) -> str:
        return _timestamp(self._lease_now() + timedelta(seconds=self.lease_s))

    @cached_property
    def _insert_sql(self) -> str:
        marks = ", ".join(self._mark(i) for i in range(len(_COLUMNS)))
        return f"INSERT INTO {self.table} ({', '.join(_COLUMNS)}) VALUES ({marks})"

    @cached_property
    def _cas_sql(self) -> str:
        """Claim a key only if its row is still as it was read: one run wins, whatever the database."""
        sets = ("payload_hash", "state", "last_attempt_at", *_RUN_COLUMNS, "claim_id", "lease_until")
        m = iter(range(100))
        assignments = ", ".join(f"{c} = {self._mark(next(m))}" for c in sets)
        key = " AND ".join(f"{c} = {self._mark(next(m))}" for c in _KEY)
        seen = (
            f"state = {self._mark(next(m))} AND last_attempt_at = {self._mark(next(m))} "
            f"AND COALESCE(claim_id, '') = {self._mark(next(m))} "
            f"AND COALESCE(lease_until, '') = {self._mark(next(m))}"
        )
        return f"UPDATE {self.table} SET {assignments} WHERE {key} AND {seen}"

    @cached_property
    def _outcome_sql(self) -> str:
        """Write an outcome, only while this run still holds the key."""
        m = iter(range(100))
        sets = [f"state = {self._mark(next(m))}", f"attempts = attempts + {self._mark(next(m))}"]
        sets += [f"{c} = {self._mark(next(m))}" for c in ("http_status", "error_code", "message")]
        sets += [f"last_attempt_at = {self._mark(next(m))}"]
        sets += [f"{c} = {self._mark(next(m))}" for c in _RUN_COLUMNS]
        sets += ["lease_until = NULL"]
        key = " AND ".join(f"{c} = {self._mark(next(m))}" for c in _KEY)
        return f"UPDATE {self.table} SET {', '.join(sets)} WHERE {key} AND claim_id = {self._mark(next(m))}"

    def _execute(self, sql: str) -> None:
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql)
        finally:
            cursor.close()
        self.connection.commit()

    def _executemany(self, sql: str, rows: list[list[Any]]) -> None:
        cursor = self.connection.cursor()
        try:
            cursor.executemany(sql, self._params(rows))
        finally:
            cursor.close()
        self.connection.commit()

    def _query(self, sql: str, params: list[Any], limit: int | None = None) -> list[tuple[Any, ...]]:
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

    def filter(
        self, items: Iterable[Item], *, on_change: str = "send", stopped: Callable[[], bool] | None = None
    ) -> Iterator[Item]:
        return self.ledger.preview(items, on_change=on_change)

    def record(self, results: Iterable[FulfilmentResult]) -> Iterator[FulfilmentResult]:
        return iter(results)

    def settle_held(
        self, *, on_change: str = "send", stopped: Callable[[], bool] | None = None
    ) -> Iterator[Item]:
        return iter(())


def _key(record: FulfilmentRecord) -> tuple[str, str, str]:
    return (record.order_id, record.fulfillment_command, record.fulfillment_id or "")


def _result(record: FulfilmentRecord, outcome: Outcome, **kwargs: Any) -> FulfilmentResult:
    return FulfilmentResult(
        order_id=record.order_id,
        outcome=outcome,
        command=record.fulfillment_command,
        fulfillment_id=record.fulfillment_id,
        position=record.position,
        **kwargs,
    )


def _record_positions(batch: list[Item]) -> list[int]:
    return [i for i, item in enumerate(batch) if isinstance(item, FulfilmentRecord)]


def _result_key(result: FulfilmentResult) -> tuple[str, str, str]:
    return (result.order_id or "", result.command or "", result.fulfillment_id or "")


def _timestamp(moment: datetime) -> str:
    """UTC, fixed width: compares as text in SQL and in Python."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _map_index(value: int | None) -> int:
    return -1 if value is None else int(value)


def _holder(row: dict[str, Any]) -> str:
    if row["dag_id"] is None:
        return "another run"
    where = f"{row['dag_id']}/{row['run_id']}/{row['task_id']}"
    if _map_index(row["map_index"]) >= 0:
        where += f"[{row['map_index']}]"
    return f"{where} try {row['try_number']}"


def _integrity_errors(connection: Any) -> tuple[type[BaseException], ...]:
    """The driver's IntegrityError (a duplicate key), from the connection or its module (DB-API)."""
    error = getattr(connection, "IntegrityError", None)
    if error is None:
        module = sys.modules.get(type(connection).__module__.split(".")[0])
        error = getattr(module, "IntegrityError", None)
    return (error,) if isinstance(error, type) else (Exception,)


def _marker(placeholder: str) -> Callable[[int], str]:
    """A marker function from an Airflow hook's ``placeholder`` (``?``, ``%s``, ``:1``...)."""
    if placeholder == "?":
        return _qmark
    if placeholder == "%s":
        return _format
    raise ValueError(f"unsupported placeholder {placeholder!r}")


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


#: The database's current time, as precise as each gives it (SQLite's CURRENT_TIMESTAMP has whole seconds).
_CLOCK_SQL = {
    "sqlite3": "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')",
    # PostgreSQL's CURRENT_TIMESTAMP is the transaction's start: the clock itself, please.
    "psycopg2": "SELECT clock_timestamp()",
    "psycopg": "SELECT clock_timestamp()",
    "": "SELECT CURRENT_TIMESTAMP",
}


def _driver(connection: Any) -> str:
    return type(connection).__module__.split(".")[0]


def _as_utc(value: Any) -> datetime:
    """A database's timestamp (text or datetime); one without a zone is UTC (SQLite's is)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip().replace(" ", "T", 1))
    if not isinstance(value, datetime):
        raise TypeError(f"not a timestamp: {value!r}")
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class _Heartbeat:
    """Renews a ledger's lease every quarter lease from its own thread and connection, whatever the
    run's rows do; gives up (``lost``) when it could not for half a lease."""

    def __init__(self, ledger: Ledger, connect: Callable[[], Any]) -> None:
        self._ledger = ledger
        self._connect = connect
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: str | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="juspay-ledger-heartbeat", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        ledger = self._ledger
        every = ledger.lease_s / 4
        connection = None
        last_ok = time.monotonic()
        while not self._stop.wait(every):
            try:
                if connection is None:
                    connection = self._connect()
                ledger._sync_clock(connection)
                ledger._renew(connection)
                last_ok = time.monotonic()
            except Exception as exc:  # the database is away: try again, on a new connection
                log.warning(
                    "Could not renew the ledger lease (%s: %s); trying again", type(exc).__name__, exc
                )
                with contextlib.suppress(Exception):
                    if connection is not None:
                        connection.close()
                connection = None
                if time.monotonic() - last_ok > ledger.lease_s / 2:
                    self.lost = (
                        f"the ledger lease could not be renewed for {time.monotonic() - last_ok:.0f} s "
                        f"({type(exc).__name__}: {exc}); stopping before another run takes these keys"
                    )
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()
