"""The pacer: one rate limit and one pause for every worker of a run.

A 429 pauses the whole run for its Retry-After and halves the pace (then the pace grows back by a
tenth each calm second), instead of letting each worker retry blindly into the same limit. An
optional ``rate_limit`` caps requests per second across all workers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from airflow_provider_juspay.ratelimit import RateLimitHint

__all__ = ["Pacer", "RateMeter"]

#: After a 429, the pace is this share of what was being sent.
SLOW_DOWN = 0.5
#: Each second without a 429, the pace grows by this factor (up to ``rate_limit``, if any).
SPEED_UP = 1.1
MIN_RATE = 1.0
#: Share of a published quota (``RateLimit-Policy``) the pace keeps to, leaving room for other clients.
POLICY_SHARE = 0.95
#: Longest hold for a used-up quota's reset (a wrong header must not stall a run for hours).
MAX_RESET_HOLD_S = 60.0


class RateMeter:
    """Requests per second over the last full second; not thread-safe (its owner holds a lock)."""

    def __init__(self, now: float) -> None:
        self._start, self._count = now, 0
        #: The rate over the last full second (0 before one has passed).
        self.rate = 0.0

    def tick(self, now: float) -> None:
        """One more request at ``now``."""
        self._count += 1
        if now - self._start >= 1.0:
            self.rate = self._count / (now - self._start)
            self._start, self._count = now, 0

    def so_far(self, now: float) -> float:
        """The rate of the second under way (before a full one has passed)."""
        return self._count / max(now - self._start, 1e-3)


class Pacer:
    """Decides when the next request may leave; thread-safe.

    :param rate_limit: requests per second over all workers; None for no cap.
    :param burst: requests that may leave at once after an idle spell (default 1: evenly spaced).
    :param start_rate: the pace to begin at, when it is known (a task's share of a shared budget).
    """

    def __init__(
        self,
        rate_limit: float | None = None,
        *,
        burst: float = 1.0,
        start_rate: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_limit is not None and rate_limit <= 0:
            raise ValueError(f"rate_limit must be a positive number of requests per second, got {rate_limit}")
        self.rate_limit = rate_limit
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self._burst = burst
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        # the pace now; None is "as fast as the workers go"
        self._rate = rate_limit if start_rate is None else min(start_rate, rate_limit or start_rate)
        #: The pace a server published (``RateLimit-Policy``), if it did: growing back stops there.
        self._advised: float | None = None
        self._due = clock()  # when the next request is due at the steady pace (GCRA)
        self._paused_until = 0.0
        self._calm_since = clock()
        self._meter = RateMeter(clock())
        #: How many times a 429 paused the run, and for how long in all (seconds); for the report.
        self.pauses = 0
        self.paused_s = 0.0

    @property
    def rate(self) -> float | None:
        """The current pace in requests per second (None: unpaced)."""
        return self._rate

    def wait(self) -> None:
        """Block until a request may leave: after any pause, and within the pace."""
        delay = self.reserve()
        if delay > 0:
            self._sleep(delay)

    def reserve(self) -> float:
        """Reserve the next slot; returns the seconds to wait for it (the caller sleeps, outside the lock)."""
        with self._lock:
            now = self._clock()
            self._meter.tick(now)
            self._recover(now)
            start = max(now, self._paused_until)
            if self._rate:
                interval = 1.0 / self._rate
                slack = (self._burst - 1) * interval
                start = max(start, self._due - slack)
                self._due = max(self._due, start) + interval
        return start - now

    @property
    def measured_rate(self) -> float:
        """Requests per second over the last full second (0 before one has passed)."""
        return self._meter.rate

    def advise(self, hint: RateLimitHint) -> None:
        """Follow a server's published limit (IETF ``RateLimit-Policy``): the pace stays under its quota
        (and under ``rate_limit``); a quota used up (``RateLimit`` remaining 0) holds every worker until
        it resets."""
        with self._lock:
            if hint.rate is not None and hint.rate > 0:
                published = hint.rate * POLICY_SHARE
                self._advised = published
                if self._rate is None or self._rate > published:
                    self._rate = published
            if hint.remaining is not None and hint.remaining <= 0 and hint.reset_s:
                self._hold(self._clock(), min(hint.reset_s, MAX_RESET_HOLD_S))

    def hold(self, seconds: float) -> bool:
        """Hold every worker for ``seconds``; returns whether the run was already held."""
        with self._lock:
            return self._hold(self._clock(), seconds)

    def _hold(self, now: float, seconds: float) -> bool:
        already_paused = now < self._paused_until
        until = now + seconds
        if until > self._paused_until:
            self.paused_s += until - max(self._paused_until, now)
            self._paused_until = until
        self._calm_since = self._paused_until
        return already_paused

    def pause(self, seconds: float) -> None:
        """Hold every worker for ``seconds`` (a 429's Retry-After) and slow the pace down.

        The other 429s of the same burst arrive while the run is paused; they extend the pause
        but do not slow the pace again.
        """
        with self._lock:
            now = self._clock()
            if self._hold(now, seconds):
                return
            self.pauses += 1
            sending = self._meter.rate or self._meter.so_far(now)
            slower = max(MIN_RATE, min(sending, self._rate or sending) * SLOW_DOWN)
            if self._rate is None or slower < self._rate:
                self._rate = slower

    def _recover(self, now: float) -> None:
        if self._rate is None or now - self._calm_since < 1.0:
            return
        self._calm_since = now
        faster = self._rate * SPEED_UP
        cap = min((c for c in (self.rate_limit, self._advised) if c is not None), default=None)
        if cap is not None:
            self._rate = min(faster, cap)
        elif faster > 4 * max(self._meter.rate, MIN_RATE):
            self._rate = None  # far above what the workers send anyway: unpaced again
        else:
            self._rate = faster
