"""Pacing from a merchant's shared budget: the pacer of a task whose ledger keeps the budget.

Each task holds a few tokens taken from the budget (``sync.ledger.budget``) and hands them to its
workers in order; when they run out, one worker takes the next batch (one statement). A 429 cuts the
merchant's rate once per burst, whoever saw it; a long ``Retry-After`` holds every task. If the
database cannot be reached, the task paces itself from its last share (a local
:class:`~airflow_provider_juspay.sync.pacer.Pacer` at the merchant's rate over the tasks it saw), says
so once, and tries the database again later.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from airflow_provider_juspay.ratelimit import RateLimitHint
from airflow_provider_juspay.sync.ledger.budget import BURST_S, BudgetStore, Members
from airflow_provider_juspay.sync.pacer import MAX_RESET_HOLD_S, POLICY_SHARE, Pacer, RateMeter

__all__ = ["BudgetHung", "SharedPacer"]

log = logging.getLogger(__name__)

#: A batch is about this many seconds of the merchant's rate, split between the tasks drawing: tasks
#: take turns this often, a cut reaches every task within it, and each task asks the database a few
#: times a second.
BATCH_S = 0.25
#: The same in slow start, when the rate grows fastest and its first cut must reach every task soonest.
SLOW_START_BATCH_S = 0.05
#: A task takes its next batch when the last token it holds is due within this many seconds: it never
#: holds more than a batch ahead (workers that find no token wait for the task's turn), and it sends on
#: without a gap.
LEAD_S = 0.02
#: A task says it draws (and counts the others) this often.
BEAT_S = 1.0
#: Longest wait for one budget statement, the connection's own timeouts aside (a network that stalls
#: mid-statement answers none): past it the task paces itself for the rest of the run.
CALL_DEADLINE_S = 3.0
#: After the database failed, the task paces itself this long before it asks again.
RETRY_DB_S = 30.0
#: A cut goes no deeper than this share ...
DEEPEST_CUT = 0.5
#: ... and no shallower than this one.
CUT = 0.9
#: Weight of each answer in the moving share that got through (about the last 10 answers): a cut goes
#: to that share of the rate, when it is deeper than ``CUT`` (a capacity halved at once).
_THROUGH_WEIGHT = 0.1


class SharedPacer:
    """The :class:`~airflow_provider_juspay.sync.pacer.Pacer` interface over a shared budget;
    thread-safe.

    :param store: the budget's statements, on a connection of this task's own.
    :param member: this task's name among the budget's members (its claim id).
    :param rate_limit: this task's cap, requests/s; the merchant's budget keeps to the lowest cap among
        the tasks drawing (a merchant-wide cap).
    :param max_batch: tokens taken at most at once (a push of 3 records takes no more than 3).
    :param max_pause: cap on a hold for a 429's Retry-After.
    """

    shared = True

    def __init__(
        self,
        store: BudgetStore,
        *,
        member: str,
        rate_limit: float | None = None,
        max_batch: int | None = None,
        max_pause: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_limit is not None and rate_limit <= 0:
            raise ValueError(f"rate_limit must be a positive number of requests per second, got {rate_limit}")
        self.store = store
        self.member = member
        self.rate_limit = rate_limit
        self._max_batch = max_batch
        self._max_pause = max_pause
        self._clock = clock
        self._lock = threading.Condition()
        #: The run's stop: a worker waiting for the task's next turn gives up when it is set.
        self.stopped = threading.Event()
        self._stock: collections.deque[float] = collections.deque()  # token times, on our clock
        self._last_due = -math.inf  # when the last token taken is due (our clock)
        self._interval = 0.0
        self._offset = 0.0  # database time minus our clock
        self._members = Members(1, None)
        self._beat_at = -math.inf
        self._advised: float | None = None
        self._rate: float | None = None
        self._known_cut_at = 0.0
        self._through = 1.0  # moving share of answers that were not 429
        self._slow_start = True
        self._cut_refused = False  # a cut was refused (another task's): wait for the next batch
        self._paused_until = 0.0
        self._local: Pacer | None = None
        self._closed = False
        self._caller = _Caller()
        self._hung = False
        self._retry_db_at = 0.0
        #: Why this task paces itself, if the database failed it.
        self.fallback: str | None = None
        self.pauses = 0
        self.paused_s = 0.0
        #: This task's cuts, tokens used, statements and their time; the budget's grants seen.
        self.cuts = 0
        self.used = 0
        self.queries = 0
        self.query_s = 0.0
        self.max_members = 1
        self._first: tuple[float, float] | None = None  # (database time, granted) at the first take
        self._last: tuple[float, float] | None = None
        self._meter = RateMeter(clock())
        self._started = clock()

    # -- the Pacer interface -----------------------------------------------------------------------

    @property
    def rate(self) -> float | None:
        """The merchant's rate found so far (requests per second)."""
        return self._rate

    @property
    def measured_rate(self) -> float:
        """This task's requests per second over the last full second."""
        return self._meter.rate

    @property
    def drawing(self) -> bool:
        """Whether this task draws from the shared budget now (False while it paces itself)."""
        return self._local is None

    def wait(self) -> None:
        delay = self.reserve()
        if delay > 0:
            time.sleep(delay)

    def reserve(self) -> float:
        """The next token: the seconds to wait for it (the caller sleeps, outside the lock). A worker that
        finds none waits here for the task's next turn (at most a batch ahead), or until the run stops."""
        with self._lock:
            now = self._clock()
            self._meter.tick(now)
            while not self._stock:
                if self._local is not None and now >= self._retry_db_at:
                    self._local = None  # ask the database again
                if self._local is not None:
                    break
                ahead = self._last_due - now
                if ahead > LEAD_S:  # this task's batch is still being sent: its next turn comes later
                    if self.stopped.is_set():
                        return 0.0
                    self._lock.wait(min(ahead - LEAD_S, BATCH_S))
                    now = self._clock()
                    continue
                try:
                    if now - self._beat_at >= BEAT_S:
                        self._beat(now)
                    # Busy: the workers used the last batch up by its end (they wait for tokens, not
                    # the tokens for them); only then may the merchant's rate grow.
                    first = self._last_due == -math.inf
                    self._take(busy=first or now <= self._last_due + max(LEAD_S, 2 * self._interval))
                except Exception as exc:  # unreachable, hung past its statement timeout, refused
                    self._fall_back(exc, now)
                self._lock.notify_all()
            if self._local is not None:
                return self._local.reserve()
            self.used += 1
            start = max(self._stock.popleft(), self._paused_until)
        return max(0.0, start - now)

    def answered(self) -> None:
        """An answer that was not pushback (deep cuts weigh what got through)."""
        with self._lock:
            self._through += _THROUGH_WEIGHT * (1.0 - self._through)

    def pushback(self, sent_at: float | None, retry_after: float | None) -> None:
        """A 429 of a request sent at ``sent_at`` (our clock): one cut per burst for the merchant, and a
        hold for every task when ``Retry-After`` is long."""
        with self._lock:
            self._through -= _THROUGH_WEIGHT * self._through
            if self._local is not None:
                self._local.pause(min(retry_after or 1.0, self._max_pause))
                return
            now = self._clock()
            sent = (now if sent_at is None else sent_at) + self._offset
            try:
                if sent > self._known_cut_at + BURST_S and not self._cut_refused:
                    self._cut(sent)
                if retry_after is not None and retry_after > 1.0:
                    self._hold(now, min(retry_after, self._max_pause))
            except Exception as exc:
                self._fall_back(exc, now)

    def hold(self, seconds: float) -> bool:
        """Hold every task of the merchant for ``seconds``; returns whether this one was held already."""
        with self._lock:
            now = self._clock()
            if self._local is not None:
                return self._local.hold(seconds)
            already = now < self._paused_until
            try:
                self._hold(now, seconds)
            except Exception as exc:
                self._fall_back(exc, now)
            return already

    def pause(self, seconds: float) -> None:
        """A 429 without the request's time (fixed pacing): as :meth:`pushback` for a request sent now."""
        self.pushback(None, seconds)

    def advise(self, hint: RateLimitHint) -> None:
        """A published quota (``RateLimit-Policy``) caps the merchant's rate; a used-up one holds all."""
        if hint.rate is not None and hint.rate > 0:
            with self._lock:
                self._advised = hint.rate * POLICY_SHARE
                if self._local is not None:
                    self._local.advise(hint)
        if hint.remaining is not None and hint.remaining <= 0 and hint.reset_s:
            self.hold(min(hint.reset_s, MAX_RESET_HOLD_S))

    def close(self) -> None:
        """This task no longer draws (the others' batches grow at their next beat); the store's
        connection, which is the pacer's own, is closed."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._hung:  # a stuck connection: closing it could hang too; the process drops it
                return
            try:
                self._caller.call(lambda: self.store.leave(self.member), CALL_DEADLINE_S)
            except Exception:  # a database gone now only delays the others' next count
                with contextlib.suppress(Exception):
                    self.store.db.rollback()
            with contextlib.suppress(Exception):
                self.store.db.connection.close()

    def progress(self) -> str:
        """For progress lines: ``merchant budget 380/s over 4 tasks``, or why this task paces itself."""
        if self._local is not None:
            return "pacing itself (shared budget unreachable)"
        rate = "?" if self._rate is None else f"{self._rate:.0f}"
        return f"merchant budget {rate}/s over {self._members.count} task(s)"

    def stats(self) -> dict[str, Any]:
        """For the report: the budget, the merchant's rate found and sent, this task's share."""
        with self._lock:
            found: dict[str, Any] = {
                "key": self.store.key,
                "merchant_rate": None if self._rate is None else round(self._rate, 1),
                "tasks": self.max_members,
                "cuts": self.cuts,
            }
            if self._first is not None and self._last is not None:
                seconds = self._last[0] - self._first[0]
                granted = self._last[1] - self._first[1]
                if seconds > 0:
                    found["merchant_sent_per_s"] = round(granted / seconds, 1)
                if granted > 0:
                    found["share"] = round(min(1.0, self.used / granted), 3)
            alive = max(self._clock() - self._started, 1e-3)
            found["queries_per_s"] = round(self.queries / alive, 2)
            found["query_ms"] = round(1000 * self.query_s / max(self.queries, 1), 2)
            # the statements' time spread over the requests they paced: what sharing adds to each
            found["ms_per_request"] = round(1000 * self.query_s / max(self.used, 1), 3)
            if self.fallback is not None:
                found["fallback"] = self.fallback
            return found

    # -- with the lock held --------------------------------------------------------------------------

    def _cap(self) -> float | None:
        caps = [c for c in (self.rate_limit, self._advised, self._members.cap) if c is not None]
        return min(caps) if caps else None

    def _timed(self, call: Callable[[], Any]) -> Any:
        if self._hung:
            raise BudgetHung("an earlier statement on the budget's connection never returned")
        began = self._clock()
        try:
            return self._caller.call(call, CALL_DEADLINE_S)
        except BudgetHung:
            self._hung = True  # the connection is stuck mid-statement: it is never used again
            raise
        finally:
            self.queries += 1
            self.query_s += self._clock() - began

    def _beat(self, now: float) -> None:
        self._beat_at = now
        self._members = self._timed(lambda: self.store.beat(self.member, self.rate_limit))
        self.max_members = max(self.max_members, self._members.count)

    def _take(self, busy: bool) -> None:
        rate = self._rate or 1.0
        batch_s = SLOW_START_BATCH_S if self._slow_start else BATCH_S
        count = max(1, math.ceil(rate * batch_s / self._members.count))
        if self._max_batch is not None:
            count = min(count, self._max_batch)
        before = self._clock()
        grant = self._timed(lambda: self.store.take(count, self._cap(), busy=busy))
        after = self._clock()
        self._offset = grant.now - (before + after) / 2
        if grant.cut_at > self._known_cut_at:
            self._stock.clear()  # another task cut: what is left was granted at a rate Juspay refuses
        self._slow_start = grant.slow_start
        start = grant.start - self._offset
        self._stock.extend(start + i * grant.interval for i in range(grant.count))
        self._last_due = self._stock[-1]
        self._interval = grant.interval
        self._rate = grant.rate
        self._known_cut_at = max(self._known_cut_at, min(grant.cut_at, grant.now))  # a stepped clock
        self._cut_refused = False
        self._first = self._first or (grant.now, grant.granted - grant.count)
        self._last = (grant.now, grant.granted)

    def _cut(self, sent: float) -> None:
        factor = min(CUT, max(DEEPEST_CUT, self._through))
        rate = self._timed(lambda: self.store.cut(sent, factor))
        if rate is not None:
            self.cuts += 1
            self._rate = rate
            self._known_cut_at = sent
        else:
            self._cut_refused = True  # another task cut for this burst: the next batch has its rate
        # Either way the tokens held were granted at a rate Juspay refuses: the next batch comes after
        # the ones already granted, at the new rate.
        self._stock.clear()

    def _hold(self, now: float, seconds: float) -> None:
        until = now + seconds
        if until > self._paused_until:
            if now >= self._paused_until:
                self.pauses += 1
            self.paused_s += until - max(self._paused_until, now)
            self._paused_until = until
        self._timed(lambda: self.store.hold(seconds))

    def _fall_back(self, exc: BaseException, now: float) -> None:
        if not self._hung:
            with contextlib.suppress(Exception):  # the connection itself may be gone
                self._caller.call(self.store.db.rollback, CALL_DEADLINE_S)
        share = (self._rate or 0.0) / self._members.count
        self._local = Pacer(self._cap(), start_rate=share or None, clock=self._clock)
        self._retry_db_at = math.inf if self._hung else now + RETRY_DB_S
        self._stock.clear()
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        if self.fallback is None:
            log.warning(
                "Pacing: the shared budget of %s could not be reached (%s); this task paces itself from its "
                "share, %s, and asks again every %.0f s",
                self.store.key, reason, f"{share:.0f}/s" if share else "unknown", RETRY_DB_S,
            )  # fmt: skip
        self.fallback = reason


class BudgetHung(Exception):
    """A budget statement did not return within ``CALL_DEADLINE_S``."""


_Job = tuple[Callable[[], Any], list[Any], threading.Event]


class _Caller:
    """Runs the budget's statements on a daemon thread of its own, so a statement stuck on a stalled
    connection costs the workers ``CALL_DEADLINE_S``, not the run (the thread is left behind)."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], list[Any], threading.Event]] = (
            queue.SimpleQueue()
        )

    def call(self, job: Callable[[], Any], deadline_s: float) -> Any:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="juspay-budget", daemon=True)
            self._thread.start()
        box: list[Any] = []
        done = threading.Event()
        self._jobs.put((job, box, done))
        if not done.wait(deadline_s):
            raise BudgetHung(f"a budget statement took longer than {deadline_s:g} s")
        ok, value = box
        if not ok:
            raise value
        return value

    def _serve(self) -> None:
        while True:
            job, box, done = self._jobs.get()
            try:
                box.extend((True, job()))
            except BaseException as exc:  # handed to the caller, who raises it
                box.extend((False, exc))
            done.set()
