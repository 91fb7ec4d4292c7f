"""The pacer: one token bucket and one shared pause for every worker of a run.

A 429 pauses the whole run for its Retry-After instead of letting each worker retry blindly; an
optional rate limit caps requests per second across all workers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["Pacer"]


class Pacer:
    """Decides when the next request may leave; thread-safe.

    :param rate_limit: requests per second over all workers; None for no cap.
    :param burst: requests that may leave at once after an idle spell (default: one second's worth, min 1).
    """

    def __init__(
        self,
        rate_limit: float | None = None,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_limit is not None and rate_limit <= 0:
            raise ValueError(f"rate_limit must be a positive number of requests per second, got {rate_limit}")
        self.rate_limit = rate_limit
        self.capacity = max(1.0, burst if burst is not None else (rate_limit or 1.0))
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._interval = 1.0 / rate_limit if rate_limit else 0.0
        #: Requests may run this far ahead of the steady pace (the burst).
        self._slack = (self.capacity - 1) * self._interval
        #: When the next request is due at the steady pace (GCRA's theoretical arrival time).
        self._due = clock()
        self._paused_until = 0.0
        #: How many times a 429 paused the run, and for how long in all (seconds); for the report.
        self.pauses = 0
        self.paused_s = 0.0

    def wait(self) -> None:
        """Block until a request may leave: after any pause, and within the rate limit.

        Each caller reserves its slot under the lock, then sleeps outside it.
        """
        with self._lock:
            now = self._clock()
            start = max(now, self._paused_until)
            if self._interval:
                start = max(start, self._due - self._slack)
                self._due = max(self._due, start) + self._interval
        if start > now:
            self._sleep(start - now)

    def pause(self, seconds: float) -> None:
        """Hold every worker for ``seconds`` (a 429's Retry-After)."""
        with self._lock:
            until = self._clock() + seconds
            if until > self._paused_until:
                self.pauses += 1
                self.paused_s += until - max(self._paused_until, self._clock())
                self._paused_until = until
