"""Leases: how long a run's claims hold their keys, on the database's clock, and the fence that lets a
request leave only while the run's lease on its key is known to hold.

A key's lease is confirmed when the database accepted it: at the claim, then at each renewal that
updated the key (a renewal touches every key the run believes it holds, one by one in key order). Each
key's deadline is the moment on this machine's monotonic clock when its last confirmed lease began,
plus the lease, less a safety margin. :meth:`Lease.admit` checks it right before a request goes on the
wire; a run paused past it, or whose renewals stopped landing, sends nothing more and stops.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_provider_juspay.errors import LeaseLost
from airflow_provider_juspay.sync.ledger.dialect import Database
from airflow_provider_juspay.sync.ledger.rows import Key, timestamp
from airflow_provider_juspay.sync.ledger.schema import Statements

log = logging.getLogger(__name__)

#: Seconds a claim holds a key against other runs unless renewed. A live run's heartbeat renews it every
#: quarter lease while the run makes progress, so a dead or stuck run's keys go again within about a minute.
DEFAULT_LEASE_S = 60.0
#: Slack on lease expiry for clock readings that are not exact (a database clock read over the network).
CLOCK_MARGIN_S = 2.0
#: Longest safety margin: a run stops sending this long before its lease ends.
MAX_FENCE_MARGIN_S = 5.0


_BOOTTIME: int | None = getattr(time, "CLOCK_BOOTTIME", None)


def steady_clock() -> float:
    """Seconds on a clock no one can step: ``CLOCK_BOOTTIME`` where there is one (it also counts the
    time a machine or VM was suspended), else ``time.monotonic``."""
    return time.clock_gettime(_BOOTTIME) if _BOOTTIME is not None else time.monotonic()


def fence_margin(lease_s: float) -> float:
    """How long before its lease ends a run stops sending: a quarter lease, at most 5 s."""
    return min(lease_s / 4, MAX_FENCE_MARGIN_S)


def statement_timeout(lease_s: float) -> float:
    """The longest a ledger statement may take: half a lease, at least 5 s (SQLite's own default)."""
    return max(lease_s / 2, 5.0)


class LeaseClock:
    """Lease times on the database's clock: read from it, then followed on this machine's monotonic
    clock, so that neither disagreeing workers nor a worker's clock stepped (NTP, a VM resumed) changes
    whose lease has passed."""

    def __init__(
        self,
        db: Database,
        lease_s: float,
        wall: Callable[[], datetime] | None = None,
        steady: Callable[[], float] = steady_clock,
    ) -> None:
        if lease_s <= 0:
            raise ValueError(f"lease_s must be a positive number of seconds, got {lease_s!r}")
        self.lease_s = lease_s
        self._db = db
        self._wall = wall or (lambda: datetime.now(timezone.utc))
        self._steady = steady
        #: The database's time at a moment of the steady clock.
        self._anchor: tuple[datetime, float] | None = None
        self._lock = threading.Lock()

    def wall(self) -> str:
        """This machine's time (attempt times, for people and the sensors' windows)."""
        return timestamp(self._wall())

    def now(self) -> datetime:
        """The database's time."""
        if self._anchor is None:
            self.sync(self._db)
        with self._lock:
            assert self._anchor is not None
            at, steady = self._anchor
        return at + timedelta(seconds=self._steady() - steady)

    def until(self) -> str:
        """The end of a lease taken or renewed now."""
        return timestamp(self.now() + timedelta(seconds=self.lease_s))

    def live_after(self) -> str:
        """Leases ending after this are a live run's (less slack for readings that are not exact)."""
        return timestamp(self.now() - timedelta(seconds=min(CLOCK_MARGIN_S, self.lease_s / 4)))

    def seconds_until(self, moment: str) -> float:
        """Seconds from now until ``moment`` (a timestamp the ledger holds), on the database's clock."""
        return (_parse(moment) - self.now()).total_seconds()

    def sync(self, db: Database) -> None:
        """Read the database's clock again; a database without a clock function: this machine's wall
        clock once, then the steady clock (said once)."""
        before = self._steady()
        try:
            at = db.clock()
        except Exception as exc:
            if self._anchor is None:
                log.warning("Could not read the ledger database's clock (%s); leases use this machine's", exc)
                with self._lock:
                    self._anchor = (self._wall(), before)
            return
        after = self._steady()
        with self._lock:
            self._anchor = (at, (before + after) / 2)


class Holdings:
    """The keys this run holds in flight with no outcome written yet, each with the steady-clock time its
    last confirmed lease began; shared by the claims, the outcome writer, the heartbeat and the senders."""

    def __init__(self) -> None:
        self._since: dict[Key, float] = {}
        #: Keys a request of this run was let out for: their fate is Juspay's until an answer says.
        self._sent: set[Key] = set()
        self._lock = threading.Lock()

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._since

    def __len__(self) -> int:
        with self._lock:
            return len(self._since)

    def __bool__(self) -> bool:
        return len(self) > 0

    def add(self, keys: Iterable[Key], since: float) -> None:
        with self._lock:
            for key in keys:
                self._since[key] = since

    def discard(self, key: Key) -> None:
        with self._lock:
            self._since.pop(key, None)
            self._sent.discard(key)

    def mark_sent(self, key: Key) -> None:
        with self._lock:
            self._sent.add(key)

    def unsent(self) -> list[Key]:
        """Keys held that no request of this run went out for (safe to give back at once), in key order."""
        with self._lock:
            return sorted(set(self._since) - self._sent)

    def snapshot(self) -> list[Key]:
        """The keys held now, in key order (the order every statement of the ledger locks rows in)."""
        with self._lock:
            return sorted(self._since)

    def confirm(self, keys: Iterable[Key], since: float) -> None:
        """A renewal that began at ``since`` updated these keys (those written meanwhile stay gone)."""
        with self._lock:
            for key in keys:
                if key in self._since:
                    self._since[key] = max(self._since[key], since)

    def since(self, key: Key) -> float | None:
        with self._lock:
            return self._since.get(key)

    def oldest(self) -> float | None:
        """When the least recently confirmed lease began, or None when nothing is held."""
        with self._lock:
            return min(self._since.values(), default=None)


class Lease:
    """One run's lease on the keys it claimed, and the fence in front of every request.

    Renewed by a heartbeat thread on its own connection when there is one (else as outcomes are written),
    only while the run makes progress. It is lost, and the run stops (``on_lost``), when a key's deadline
    passed without a renewal, a renewal found a key taken over, or the run made no progress for a lease.
    """

    def __init__(
        self,
        db: Database,
        statements: Statements,
        clock: LeaseClock,
        *,
        merchant_id: str,
        claim_id: str,
        connect: Callable[[], Any] | None = None,
        monotonic: Callable[[], float] = steady_clock,
    ) -> None:
        self.clock = clock
        self.holdings = Holdings()
        self.margin_s = fence_margin(clock.lease_s)
        self._db = db
        self._statements = statements
        self._merchant_id = merchant_id
        self._claim_id = claim_id
        self._monotonic = monotonic
        self._last_renewal = monotonic()
        self._last_progress = monotonic()
        self._renewed = threading.Condition()
        #: Why the lease was lost, once it was.
        self.lost: str | None = None
        #: Called once, with the reason, when the lease is lost (the engine stops the run).
        self.on_lost: Callable[[str], None] | None = None
        #: Called by the heartbeat after each renewal, on its connection (the run history's "alive").
        self.on_beat: Callable[[Database], None] | None = None
        self._heartbeat = _Heartbeat(self, connect) if connect is not None else None

    # -- the fence -----------------------------------------------------------------------------------

    def claimed(self, keys: Iterable[Key], began: float) -> None:
        """Keys this run claimed in a statement that began at ``began``: held from then on."""
        self.holdings.add(keys, began)
        self.progressed()
        if self._heartbeat is not None:
            self._heartbeat.start()

    def deadline(self, key: Key) -> float | None:
        """When this run must stop sending ``key`` (steady clock), or None when it does not hold it."""
        since = self.holdings.since(key)
        return None if since is None else since + self.clock.lease_s - self.margin_s

    def admit(self, key: Key) -> None:
        """Return only if this run may put ``key`` on the wire now; else raise
        :class:`~airflow_provider_juspay.errors.LeaseLost` (and the run stops).

        A deadline that has passed gets one chance: the heartbeat renews at once, and the request waits
        for that renewal (at most a statement timeout); a run resumed from a pause sends again only once
        the database has confirmed that it still holds its keys.
        """
        if self.lost is not None:
            raise LeaseLost(self.lost)
        deadline = self.deadline(key)
        if deadline is None:
            self.lose(f"the key {key} is not held by this run")
            raise LeaseLost(self.lost or "")
        if self._monotonic() < deadline:
            self.holdings.mark_sent(key)
            return
        if self._heartbeat is not None:
            # Only a renewal that begins now can confirm the key (one under way may predate a pause).
            self._heartbeat.wake()
            wait_until = self._monotonic() + statement_timeout(self.clock.lease_s) / 2
            with self._renewed:
                while self.lost is None and self._monotonic() < wait_until:
                    deadline = self.deadline(key)
                    if deadline is not None and self._monotonic() < deadline:
                        self.holdings.mark_sent(key)
                        return
                    self._renewed.wait(0.05)
        self.lose(
            f"this run's lease on its keys was not renewed in time (the last confirmed renewal of "
            f"{key[0]!r} began {self._monotonic() - (self.holdings.since(key) or 0):.0f} s ago, lease "
            f"{self.clock.lease_s:g} s): it sends nothing more, since another run may have taken them over"
        )
        raise LeaseLost(self.lost or "")

    def progressed(self) -> None:
        """The run moved: an answer arrived, keys were claimed or outcomes written (see the heartbeat)."""
        self._last_progress = self._monotonic()

    def idle_for(self) -> float:
        return self._monotonic() - self._last_progress

    def keep_alive(self) -> None:
        """Start the heartbeat now, before any claim: a run still waiting for its first rows (a slow
        query) beats too, so the run history does not take it for dead."""
        if self._heartbeat is not None:
            self._heartbeat.start()

    def overdue(self) -> bool:
        """Whether some key's deadline has passed without a confirmed renewal."""
        oldest = self.holdings.oldest()
        return oldest is not None and self._monotonic() >= oldest + self.clock.lease_s - self.margin_s

    def lose(self, reason: str) -> None:
        """The lease is lost: nothing more is sent; the run stops (once)."""
        with self._renewed:
            if self.lost is not None:
                return
            self.lost = reason
            self._renewed.notify_all()
        log.warning("Lost the ledger lease: %s", reason)
        if self.on_lost is not None:
            self.on_lost(reason)

    def check(self) -> None:
        """Raise :class:`~airflow_provider_juspay.errors.LeaseLost` once the lease is lost."""
        if self.lost is not None:
            raise LeaseLost(self.lost)

    # -- renewing ------------------------------------------------------------------------------------

    def renew_if_due(self) -> None:
        """Without a heartbeat, renew when a quarter lease has passed and keys are still held."""
        if (
            self._heartbeat is None
            and self.holdings
            and self._monotonic() - self._last_renewal >= self.clock.lease_s / 4
        ):
            self.renew(self._db)

    def renew(self, db: Database) -> None:
        """Push the lease of every key this run holds forward, one key at a time in key order (the
        order outcomes are written in, so the two connections never deadlock). Confirmed only for the
        keys the database updated; a key it did not, and that this run has not written since, was taken
        over: the lease is lost."""
        began = self._monotonic()
        self._last_renewal = began
        keys = self.holdings.snapshot()
        if keys:
            until = self.clock.until()
            changed = db.execute_each(
                self._statements.renew_key,
                [[until, self._merchant_id, *key, self._claim_id] for key in keys],
            )
            taken = [key for key, n in zip(keys, changed, strict=True) if n != 1 and key in self.holdings]
            if taken:
                self.lose(
                    f"{len(taken)} keys this run held were taken over by another run (e.g. order "
                    f"{taken[0][0]!r}): its lease had lapsed"
                )
                return
            self.holdings.confirm([k for k, n in zip(keys, changed, strict=True) if n == 1], began)
        with self._renewed:
            self._renewed.notify_all()

    def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()


class _Heartbeat:
    """Renews a lease every quarter lease from its own thread and connection, while the run makes
    progress; a run that made none for a lease (a hung connection, a stuck source) lets it lapse and
    stops. Every statement is bounded by a timeout, so a hung database never holds a lease either."""

    def __init__(self, lease: Lease, connect: Callable[[], Any]) -> None:
        self._lease = lease
        self._connect = connect
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="juspay-ledger-heartbeat", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Renew now (a sender found its deadline passed)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            # A renewal hung on a dead connection is not waited out: the thread is a daemon.
            self._thread.join(timeout=min(10.0, self._lease.clock.lease_s / 2))

    def _run(self) -> None:
        lease = self._lease
        lease_s = lease.clock.lease_s
        db: Database | None = None
        last_beat = lease._monotonic()
        while not self._stop.is_set() and lease.lost is None:
            self._wake.wait(lease_s / 4)
            self._wake.clear()
            if self._stop.is_set():
                break
            now = lease._monotonic()
            if now - last_beat > lease_s / 2:
                # This thread stood still too: the whole process was paused (SIGSTOP, a VM stall), not
                # stuck. Renew now: the database says whether another run took the keys meanwhile.
                lease.progressed()
            last_beat = now
            if lease.holdings and lease.idle_for() > lease_s:
                lease.lose(
                    f"the run made no progress for {lease.idle_for():.0f} s (no answer, no claim, no "
                    "outcome written): its lease is left to lapse so that another run can send its keys"
                )
                break
            try:
                if db is None:
                    db = lease._db.on(self._connect())
                    db.limit_statements(max(1.0, lease_s / 4))
                lease.clock.sync(db)
                lease.renew(db)
                _beat(lease, db)
            except Exception as exc:  # the database is away or slow: try again, on a new connection
                _close(db)
                db = None
                if lease.overdue():
                    lease.lose(
                        f"the ledger lease could not be renewed in time ({type(exc).__name__}: {exc}); "
                        "stopping before another run takes these keys"
                    )
                    break
                log.warning(
                    "Could not renew the ledger lease (%s: %s); trying again", type(exc).__name__, exc
                )
        _close(db)


def _beat(lease: Lease, db: Database) -> None:
    """Tell ``on_beat`` the run is alive; its failure is said, never the lease's."""
    if lease.on_beat is None:
        return
    try:
        lease.on_beat(db)
    except Exception as exc:
        db.rollback()
        log.warning("Could not mark the run alive in the run history (%s: %s)", type(exc).__name__, exc)


def _close(db: Database | None) -> None:
    if db is not None:
        with contextlib.suppress(Exception):
            db.connection.close()


def _parse(moment: str) -> datetime:
    return datetime.strptime(moment, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
