"""Leases: how long a run's claims hold their keys, on the database's clock, renewed by a heartbeat."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_provider_juspay.errors import LeaseLost
from airflow_provider_juspay.sync.ledger.dialect import Database
from airflow_provider_juspay.sync.ledger.rows import timestamp
from airflow_provider_juspay.sync.ledger.schema import Statements

log = logging.getLogger(__name__)

#: Seconds a claim holds a key against other runs unless renewed. A live run's heartbeat renews it every
#: quarter lease, however long a record takes, so a dead run's keys go again within about a minute.
DEFAULT_LEASE_S = 60.0
#: Slack on lease expiry for clock readings that are not exact (a database clock read over the network).
CLOCK_MARGIN_S = 2.0


class LeaseClock:
    """Lease times on the database's clock, read from it once and then followed on this machine's, so
    that workers whose clocks disagree still agree on whose lease has passed."""

    def __init__(self, db: Database, lease_s: float, wall: Callable[[], datetime] | None = None) -> None:
        if lease_s <= 0:
            raise ValueError(f"lease_s must be a positive number of seconds, got {lease_s!r}")
        self.lease_s = lease_s
        self._db = db
        self._wall = wall or (lambda: datetime.now(timezone.utc))
        #: Seconds the database's clock is ahead of this machine's.
        self._offset: float | None = None

    def wall(self) -> str:
        """This machine's time (attempt times, for people and the sensors' windows)."""
        return timestamp(self._wall())

    def now(self) -> datetime:
        """The database's time."""
        if self._offset is None:
            self.sync(self._db)
        return self._wall() + timedelta(seconds=self._offset or 0.0)

    def until(self) -> str:
        """The end of a lease taken or renewed now."""
        return timestamp(self.now() + timedelta(seconds=self.lease_s))

    def live_after(self) -> str:
        """Leases ending after this are a live run's (less slack for readings that are not exact)."""
        return timestamp(self.now() - timedelta(seconds=min(CLOCK_MARGIN_S, self.lease_s / 4)))

    def sync(self, db: Database) -> None:
        """Read the database's clock again; a database without a clock function: this machine's, said once."""
        try:
            self._offset = (db.clock() - self._wall()).total_seconds()
        except Exception as exc:
            if self._offset is None:
                log.warning("Could not read the ledger database's clock (%s); leases use this machine's", exc)
                self._offset = 0.0


class Lease:
    """One run's lease on the keys it claimed: renewed by a heartbeat thread on its own connection when
    there is one, else as outcomes are written; raises
    :class:`~airflow_provider_juspay.errors.LeaseLost` once it could not be renewed for half a lease."""

    def __init__(
        self,
        db: Database,
        statements: Statements,
        clock: LeaseClock,
        *,
        merchant_id: str,
        claim_id: str,
        connect: Callable[[], Any] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self._db = db
        self._statements = statements
        self._merchant_id = merchant_id
        self._claim_id = claim_id
        self._monotonic = monotonic
        self._last_renewal = monotonic()
        self._heartbeat = _Heartbeat(self, connect) if connect is not None else None

    def started(self) -> None:
        """A first key is claimed: the heartbeat starts renewing."""
        if self._heartbeat is not None:
            self._heartbeat.start()

    def check(self) -> None:
        """Raise :class:`~airflow_provider_juspay.errors.LeaseLost` when the heartbeat gave up."""
        if self._heartbeat is not None and self._heartbeat.lost is not None:
            raise LeaseLost(self._heartbeat.lost)

    def renew_if_due(self, holding: bool) -> None:
        """Without a heartbeat, renew when a quarter lease has passed and keys are still held."""
        if (
            self._heartbeat is None
            and holding
            and self._monotonic() - self._last_renewal >= self.clock.lease_s / 4
        ):
            self.renew(self._db)

    def renew(self, db: Database) -> None:
        """Push this run's lease forward: its keys still in flight stay held against other runs."""
        self._last_renewal = self._monotonic()
        db.execute(self._statements.renew, [self.clock.until(), self._merchant_id, self._claim_id])

    def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()


class _Heartbeat:
    """Renews a lease every quarter lease from its own thread and connection, whatever the run's rows do;
    gives up (``lost``) when it could not for half a lease."""

    def __init__(self, lease: Lease, connect: Callable[[], Any]) -> None:
        self._lease = lease
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
        lease_s = self._lease.clock.lease_s
        db: Database | None = None
        last_ok = time.monotonic()
        while not self._stop.wait(lease_s / 4):
            try:
                if db is None:
                    db = self._lease._db.on(self._connect())
                self._lease.clock.sync(db)
                self._lease.renew(db)
                last_ok = time.monotonic()
            except Exception as exc:  # the database is away: try again, on a new connection
                log.warning(
                    "Could not renew the ledger lease (%s: %s); trying again", type(exc).__name__, exc
                )
                _close(db)
                db = None
                if time.monotonic() - last_ok > lease_s / 2:
                    self.lost = (
                        f"the ledger lease could not be renewed for {time.monotonic() - last_ok:.0f} s "
                        f"({type(exc).__name__}: {exc}); stopping before another run takes these keys"
                    )
        _close(db)


def _close(db: Database | None) -> None:
    if db is not None:
        with contextlib.suppress(Exception):
            db.connection.close()
