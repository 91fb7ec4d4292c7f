"""The delivery ledger: what was sent to Juspay, kept in a table on any DB-API connection.

One row per fulfilment key (merchant id, order id, command, fulfilment id) holds the hash of the
payload, the state, attempts, Juspay's last answer, attempt times and the Airflow run that tried
last. A rerun skips what is delivered, resends what failed, and resends what was in flight when a
process died (Juspay's ALREADY_EXISTS answer turns that into ``already_fulfilled``, never a double).
The API key is never written.

Runs may overlap (a retry DAG during the nightly sync, a backfill, shards whose queries overlap).
A run claims a key before sending it (``claims``); a claim carries a lease (``lease``) that a heartbeat
renews while the run lives, on the database's clock; each claimed key then gets its outcome
(``outcomes``); sensors and reports read what runs wrote (``reader``). The table and its statements are
in ``schema``, what differs between drivers in ``dialect``, the named types in ``rows``.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_juspay.errors import LeaseLost
from airflow_provider_juspay.fulfilment import FulfilmentRecord, FulfilmentResult, Item
from airflow_provider_juspay.sync.ledger.budget import BudgetStore
from airflow_provider_juspay.sync.ledger.claims import DEFAULT_WAIT_LIMIT_S, ON_CHANGE, Claims
from airflow_provider_juspay.sync.ledger.dialect import Database, driver_of, marker_for
from airflow_provider_juspay.sync.ledger.lease import (
    DEFAULT_LEASE_S,
    Lease,
    LeaseClock,
    statement_timeout,
    steady_clock,
)
from airflow_provider_juspay.sync.ledger.outcomes import DEFAULT_FLUSH_EVERY_S, OutcomeWriter
from airflow_provider_juspay.sync.ledger.reader import LedgerReader
from airflow_provider_juspay.sync.ledger.rows import IN_FLIGHT, Key, RunInfo, payload_hash
from airflow_provider_juspay.sync.ledger.runs import DEFAULT_RETENTION_DAYS, RunHistory, runs_table_for
from airflow_provider_juspay.sync.ledger.schema import (
    DEFAULT_TABLE,
    checked_table_name,
    ensure_table,
    table_exists,
)
from airflow_provider_juspay.sync.ledger.schema import Statements as _Statements
from airflow_provider_juspay.sync.report import RunReport

if TYPE_CHECKING:
    from airflow_provider_juspay.sync.shared_pacing import SharedPacer

log = logging.getLogger(__name__)

#: Longest a budget statement may take (lock waits included) before the task paces itself: every worker
#: of the task waits for it.
BUDGET_STATEMENT_TIMEOUT_S = 2.0

__all__ = [
    "DEFAULT_LEASE_S",
    "DEFAULT_RETENTION_DAYS",
    "DEFAULT_TABLE",
    "DEFAULT_WAIT_LIMIT_S",
    "IN_FLIGHT",
    "ON_CHANGE",
    "Key",
    "LeaseLost",
    "Ledger",
    "LedgerPreview",
    "RunInfo",
    "payload_hash",
]


def _shareable(connection: Any) -> Any:
    """The connection, usable from the workers' threads in turn: a SQLite connection (which refuses any
    thread but its own) is opened again on the same file with that check off."""
    if driver_of(connection) != "sqlite3":
        return connection
    path = next((row[2] for row in connection.execute("PRAGMA database_list") if row[1] == "main"), "")
    connection.close()
    return sqlite3.connect(path or ":memory:", check_same_thread=False)


class Ledger:
    """The ledger of one run: claims keys before they are sent and writes their outcomes, through one
    DB-API connection, from one thread.

    :param connection: a DB-API 2 connection (``DbApiHook.get_conn()``); committed after each batch.
    :param merchant_id: part of every key, so one table can serve several merchants.
    :param table: the table, ``[schema.]name``; created by :meth:`ensure_table`.
    :param run: the Airflow task try that writes (kept with each attempt, for people to trace).
    :param batch_size: records looked up / outcomes written per statement batch.
    :param flush_every_s: longest wait before buffered outcomes are written.
    :param lease_s: seconds this run's claims hold their keys against other runs (renewed as it goes).
    :param placeholder: the bind marker of the connection (``DbApiHook.placeholder``); sniffed from
        the driver's ``paramstyle`` when not given.
    :param connect: opens another connection to the same database, for the heartbeat thread that renews
        this run's lease (e.g. ``DbApiHook.get_conn``); without it the lease is renewed as outcomes are
        written, which a run stuck on slow records may not do in time.
    :param wait_limit_s: longest wait for keys another run holds without renewing its lease; past it
        they are ``not_attempted`` (HELD_BY_STALLED_RUN) and the run is not green.
    :param clock: the steady clock leases and the fence are judged on (never stepped).
    :param retention_days: days the run history keeps a run's row (older rows go when a run starts).

    Every statement on its connections is bounded
    (:func:`~airflow_provider_juspay.sync.ledger.lease.statement_timeout`). A sender asks :meth:`admit`
    right before each request: it passes only while this run's lease on the key holds.
    """

    def __init__(
        self,
        connection: Any,
        *,
        merchant_id: str,
        table: str = DEFAULT_TABLE,
        run: RunInfo | None = None,
        batch_size: int = 200,
        flush_every_s: float = DEFAULT_FLUSH_EVERY_S,
        lease_s: float = DEFAULT_LEASE_S,
        placeholder: str | None = None,
        clock: Callable[[], float] = steady_clock,
        wall_clock: Callable[[], datetime] | None = None,
        connect: Callable[[], Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        wait_limit_s: float = DEFAULT_WAIT_LIMIT_S,
        retention_days: int = DEFAULT_RETENTION_DAYS,
    ) -> None:
        self.table = checked_table_name(table)
        self.merchant_id = merchant_id
        self.run = run or RunInfo()
        self.batch_size = batch_size
        self.lease_s = lease_s
        #: Identifies this run's claims; unique per Ledger (one per task try).
        self.claim_id = uuid.uuid4().hex
        self.db = Database(connection, marker_for(placeholder) if placeholder else None)
        self.db.limit_statements(statement_timeout(lease_s))
        statements = _Statements.for_table(self.db, table)
        lease_clock = LeaseClock(self.db, lease_s, wall_clock, steady=clock)
        self._lease = Lease(
            self.db, statements, lease_clock,
            merchant_id=merchant_id, claim_id=self.claim_id, connect=connect, monotonic=clock,
        )  # fmt: skip
        self._claims = Claims(
            self.db, statements, self._lease,
            merchant_id=merchant_id, claim_id=self.claim_id, run=self.run, monotonic=clock, sleep=sleep,
            wait_limit_s=wait_limit_s,
        )  # fmt: skip
        self._outcomes = OutcomeWriter(
            self.db, statements, self._lease, self._claims.claimed,
            merchant_id=merchant_id, claim_id=self.claim_id, run=self.run,
            batch_size=batch_size, flush_every_s=flush_every_s, monotonic=clock,
        )  # fmt: skip
        self._reader = LedgerReader(self.db, table, merchant_id, lease_clock)
        self._clock = lease_clock
        self._connect = connect
        #: This run's row in the run history (``juspay_sync_runs`` beside the table).
        self.history = RunHistory(
            self.db, runs_table_for(self.table),
            merchant_id=merchant_id, claim_id=self.claim_id, ledger_table=self.table, run=self.run,
            lease_s=lease_s, retention_days=retention_days,
        )  # fmt: skip
        self._lease.on_beat = lambda db: self.history.seen(db, lease_clock.now())

    @property
    def connection(self) -> Any:
        return self.db.connection

    # -- the fence ---------------------------------------------------------------------------------

    def admit(self, record: FulfilmentRecord) -> None:
        """Return only if this run may send ``record`` now: it holds the key's lease, confirmed by the
        database less than a lease (less a margin) ago; else raise
        :class:`~airflow_provider_juspay.errors.LeaseLost` (the run stops)."""
        self._lease.admit(Key.of(record))

    def progressed(self) -> None:
        """An answer arrived: the run moves (the heartbeat renews only a run that does)."""
        self._lease.progressed()

    def on_lost(self, stop: Callable[[str], None]) -> None:
        """Call ``stop`` with the reason once this run's lease is lost."""
        self._lease.on_lost = stop

    @property
    def lost(self) -> str | None:
        """Why this run lost its lease, if it did."""
        return self._lease.lost

    # -- the table ---------------------------------------------------------------------------------

    def ensure_table(self) -> None:
        """Make the database ready for a run that writes: a SQLite file in WAL (a query may still be
        reading it), the table created when missing, with the columns newer releases need (safe when
        runs race). A dry run, which writes nothing, does not call it."""
        self.db.let_readers_write_beside()
        ensure_table(self.db, self.table)
        self.history.ensure_table()

    def run_started(self) -> None:
        """This run's row in the run history: ``running`` (after :meth:`ensure_table`), kept seen by
        the heartbeat from now on."""
        self.history.started(self._clock.now())
        self._lease.keep_alive()

    def run_ended(
        self,
        state: str,
        report: Mapping[str, Any] | None,
        *,
        stop_reason: str | None = None,
        error: str | None = None,
    ) -> None:
        """Complete this run's row: ``success``, ``failed`` or ``stopped``, with its report's counts."""
        self.history.ended(
            self._clock.now(), state=state, report=report, stop_reason=stop_reason, error=error
        )

    def exists(self) -> bool:
        """Whether the table is there (without creating it)."""
        return table_exists(self.db, self.table)

    # -- before sending ----------------------------------------------------------------------------

    def filter(
        self, items: Iterable[Item], *, on_change: str = "send", stopped: Callable[[], bool] | None = None
    ) -> Iterator[Item]:
        """Pass on what this run must send, claimed in flight first; decide the rest here.

        A delivered key with the same payload becomes ``skipped``; one whose payload changed follows
        ``on_change``: ``send`` it (the default: the warehouse is the source of truth and Juspay
        answers ALREADY_EXISTS to a true repeat), ``skip`` it, or ``fail`` it (outcome ``invalid``,
        code CHANGED_AFTER_DELIVERY). Once ``stopped()`` is true, nothing more is claimed: records pass
        on unclaimed, to be counted ``not_attempted``, and the ledger is left as it was for them.

        Keys another run holds are not passed on: :meth:`settle_held` decides them after the rest.
        """
        for batch in self._batches(items, on_change):
            if stopped is not None and (stopped() or self._lease.lost is not None):
                yield from self._claims.preview_batch(batch, on_change)
                continue
            try:
                claimed = self._claims.claim_batch(batch, on_change)
            except LeaseLost:
                if stopped is None:
                    raise
                # Lost between the look above and the claim (the heartbeat's thread): nothing was
                # claimed; the run is stopping, so the batch passes on unclaimed, to be not_attempted.
                claimed = self._claims.preview_batch(batch, on_change)
            yield from claimed

    def settle_held(
        self, *, on_change: str = "send", stopped: Callable[[], bool] | None = None
    ) -> Iterator[Item]:
        """Decide the keys :meth:`filter` found held by other runs, once this run's own are done:
        ``skipped`` when their holder delivered them, ``held_elsewhere`` while it lives, else sent here."""
        return self._claims.settle_held(on_change, stopped or (lambda: False))

    def preview(self, items: Iterable[Item], *, on_change: str = "send") -> Iterator[Item]:
        """What :meth:`filter` would skip and pass on, writing nothing (dry runs); no table means empty."""
        if not self.exists():
            yield from items
            return
        for batch in self._batches(items, on_change):
            yield from self._claims.preview_batch(batch, on_change)

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

    # -- after sending -----------------------------------------------------------------------------

    def write_outcomes(self, results: Iterable[FulfilmentResult]) -> Iterator[FulfilmentResult]:
        """Pass results on, writing the outcome of every key this run claimed (see
        :class:`~airflow_provider_juspay.sync.ledger.outcomes.OutcomeWriter`)."""
        return self._outcomes.write(results)

    def flush(self) -> None:
        """Write the buffered outcomes now."""
        self._outcomes.flush()

    def close(self) -> None:
        """Stop the heartbeat and give back the keys this run claimed and never sent (the next run sends
        them at once); keys a request went out for keep their lease until it passes."""
        try:
            if self._claims.claimed:
                given = self._outcomes.release_unsent()
                if given:
                    log.info("Gave back %d keys this run claimed and never sent", given)
        except Exception as exc:  # the database may be what failed: their lease passes instead
            with contextlib.suppress(Exception):
                self.db.rollback()
            log.warning("Could not give back the keys never sent (%s: %s)", type(exc).__name__, exc)
        finally:
            self._lease.stop()

    # -- the merchant's pacing budget -----------------------------------------------------------------

    def shared_pacer(
        self,
        host: str,
        *,
        rate_limit: float | None = None,
        max_batch: int | None = None,
        max_pause: float = 30.0,
    ) -> SharedPacer | None:
        """A pacer drawing from the merchant's budget beside this ledger (on a connection of its own:
        workers use it while this one writes), or None, said in the log, when the database cannot keep
        one (no second connection, or it refuses the budget's statements): the task paces itself.

        :param host: Juspay's host (the sandbox's limit is not production's): with the merchant id, the
            budget's key.
        """
        from airflow_provider_juspay.sync.shared_pacing import SharedPacer  # it reads the budget's module

        if self._connect is None:
            log.warning("Pacing: no second connection to the ledger's database: this task paces itself")
            return None
        key = f"{host}/{self.merchant_id}"
        connection = None
        try:
            connection = _shareable(self._connect())
            db = self.db.on(connection)
            db.limit_statements(BUDGET_STATEMENT_TIMEOUT_S)
            store = BudgetStore(db, self.table, key)
            store.ensure()
        except Exception as exc:
            if connection is not None:
                with contextlib.suppress(Exception):
                    connection.close()
            log.warning(
                "Pacing: the merchant's shared budget could not be kept in the ledger's database (%s: %s); "
                "this task paces itself",
                type(exc).__name__, str(exc).splitlines()[0][:300] if str(exc) else "",
            )  # fmt: skip
            return None
        return SharedPacer(
            store, member=self.claim_id, rate_limit=rate_limit, max_batch=max_batch, max_pause=max_pause
        )

    # -- reading, for sensors and people ------------------------------------------------------------

    def run_report(
        self, *, run_id: str | None = None, since: str | None = None, until: str | None = None
    ) -> RunReport:
        """A report of the keys a run, or a time window, last wrote (see
        :meth:`~airflow_provider_juspay.sync.ledger.reader.LedgerReader.run_report`)."""
        return self._reader.run_report(run_id=run_id, since=since, until=until)

    def states(self) -> dict[Key, str]:
        """Every key of this merchant and its state (for tests and small tables)."""
        return self._reader.states()


class LedgerPreview:
    """A ledger as a dry run sees it: it tells what would be skipped and writes nothing."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def filter(
        self, items: Iterable[Item], *, on_change: str = "send", stopped: Callable[[], bool] | None = None
    ) -> Iterator[Item]:
        return self.ledger.preview(items, on_change=on_change)

    def write_outcomes(self, results: Iterable[FulfilmentResult]) -> Iterator[FulfilmentResult]:
        return iter(results)

    def settle_held(
        self, *, on_change: str = "send", stopped: Callable[[], bool] | None = None
    ) -> Iterator[Item]:
        return iter(())
