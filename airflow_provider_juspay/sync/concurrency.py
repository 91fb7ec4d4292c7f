"""Adaptive concurrency: how many requests a run keeps in flight, found from Juspay's answers.

Juspay publishes no rate limit; it is per merchant and shows itself only as 429s. The limit here grows
while answers come back without pushback and the limit is actually in use (half its slots busy or
more), and shrinks multiplicatively on pushback: every burst of 429s, and 503s or timeouts that come in
numbers (a stray one is a fault, not a limit). It stops growing while latency stands
well above its own baseline (the server queues: more in flight would only wait longer). This is the
AIMD scheme of TCP, Netflix's concurrency-limits and Vector's adaptive request concurrency. Runs that
each use it alone (without a ledger) converge on shares of what Juspay takes, slowly and with a 429
share that grows with their number (each one's probe is the others' overshoot); with a ledger, the
merchant's shared budget (``sync.shared_pacing``) answers 429s and this limit answers only latency and
503s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "DEFAULT_CEILING",
    "DEFAULT_FLOOR",
    "DEFAULT_INITIAL",
    "AdaptiveLimit",
    "LimitStats",
]

#: Requests in flight at most, unless ``max_concurrency`` says otherwise: polite to one merchant's
#: limit, and 4x what 16 carry (at 200 ms a request, 64 in flight carry 320 a second).
DEFAULT_CEILING = 64
#: Requests in flight at least, however hard Juspay pushes back (the pauses do the rest).
DEFAULT_FLOOR = 1
#: Where a run starts: today's fixed default.
DEFAULT_INITIAL = 16
#: After pushback, the limit is this share of what it was (0.9: Netflix AIMD, Vector) ...
BACKOFF = 0.9
#: ... or, when most answers since the last cut were pushback (several runs all overshooting at once),
#: the share that got through, down to this.
DEEPEST_BACKOFF = 0.5
#: Above the limit where pushback last came, growth is this share of the usual: probe, do not charge.
PROBE_GROWTH = 0.1
#: A 503 or a timeout cuts only when they are at least this share of the recent answers (a moving
#: average over about the last 50): a server shedding load answers so again and again, while a stray
#: fault must not pin the limit down.
OVERLOAD_SHARE = 0.05
_OVERLOAD_WEIGHT = 0.02
#: Latency above this multiple of the baseline holds growth: the server is queueing.
LATENCY_TOLERANCE = 2.0
#: Weight of each new latency in the moving average.
_LATENCY_WEIGHT = 0.1
#: Seconds after which the baseline forgets its minimum and is taken again (routes and servers change).
_BASELINE_WINDOW_S = 30.0


@dataclass(frozen=True)
class LimitStats:
    """What the controller found, for the report."""

    limit: int
    peak: int
    in_flight: int
    backoffs: int
    latency_ms: float | None


class AdaptiveLimit:
    """Slots for requests in flight, as many as the limit found so far; thread-safe.

    :param initial: the limit to start from (clamped to floor..ceiling).
    :param floor: the limit never goes below it.
    :param ceiling: the limit never goes above it (``max_concurrency``).
    :param clock: monotonic seconds; tests pass a fake one.
    """

    def __init__(
        self,
        *,
        initial: int = DEFAULT_INITIAL,
        floor: int = DEFAULT_FLOOR,
        ceiling: int = DEFAULT_CEILING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= floor <= ceiling:
            raise ValueError(f"need 1 <= floor <= ceiling, got floor={floor}, ceiling={ceiling}")
        self.floor = floor
        self.ceiling = ceiling
        self._limit = float(min(max(initial, floor), ceiling))
        self._clock = clock
        self._cond = threading.Condition()
        self._in_flight = 0
        self._peak = int(self._limit)
        self._backoffs = 0
        self._last_backoff = -1e9
        #: The limit at which pushback last came: regrow to it briskly, probe above it slowly (as CUBIC).
        self._pushback_at: float | None = None
        #: Answers and pushbacks since the last cut: how deep the next cut goes.
        self._answered = 0
        self._pushed = 0
        #: Share of recent answers that were a 503 or a timeout (moving average, reset at each cut).
        self._overloaded = 0.0
        # Until the first pushback (slow start) each answer adds one, about half again per round trip;
        # then each adds 1/limit, about one per two round trips.
        self._slow_start = True
        self._latency: float | None = None
        self._baseline: float | None = None
        self._baseline_since = clock()
        self._window_min: float | None = None

    @property
    def limit(self) -> int:
        """Requests that may be in flight now."""
        return int(self._limit)

    def acquire(self, stopped: Callable[[], bool] = lambda: False, poll: float = 0.2) -> float | None:
        """Wait for a free slot; returns when it was taken (pass it to :meth:`release`), or None if
        ``stopped()`` became true first."""
        with self._cond:
            while self._in_flight >= int(self._limit):
                if stopped():
                    return None
                self._cond.wait(poll)
            self._in_flight += 1
            return self._clock()

    def release(self, started: float, *, pushback: bool = False, overload: bool = False) -> None:
        """Free a slot taken at ``started``: an answer, a 429 (``pushback``: always a cut), or a 503 or
        timeout (``overload``: a cut when they are a tenth of the answers since the last cut)."""
        with self._cond:
            # The limit is in use when at least half its slots are busy (Netflix's AIMD rule): a source
            # slower than Juspay never grows it.
            busy = self._in_flight * 2 >= self._limit
            self._in_flight -= 1
            now = self._clock()
            # Only what was sent under the current limit tells about it: the answers to requests sent
            # before the last cut (the rest of a burst of 429s) neither cut again nor count.
            current = started >= self._last_backoff
            self._overloaded = (1 - _OVERLOAD_WEIGHT) * self._overloaded + _OVERLOAD_WEIGHT * overload
            if overload:
                if current:
                    self._pushed += 1
                    if self._overloaded >= OVERLOAD_SHARE:
                        self._back_off(now)
            elif pushback:
                if current:
                    self._pushed += 1
                    self._back_off(now)
            else:
                self._answered += current
                self._learn_latency(now - started, now)
                if busy and not self._queueing():
                    self._grow()
            self._cond.notify()

    def stats(self) -> LimitStats:
        with self._cond:
            return LimitStats(
                limit=int(self._limit),
                peak=self._peak,
                in_flight=self._in_flight,
                backoffs=self._backoffs,
                latency_ms=None if self._latency is None else round(self._latency * 1000, 1),
            )

    def _grow(self) -> None:
        if self._slow_start:
            step = 1.0
        elif self._pushback_at is not None and self._limit >= self._pushback_at * BACKOFF:
            step = PROBE_GROWTH / self._limit  # near where pushback came: probe
        else:
            step = 1.0 / self._limit  # far below it (a deep cut, or the capacity grew): regrow
        self._limit = min(float(self.ceiling), self._limit + step)
        self._peak = max(self._peak, int(self._limit))
        self._cond.notify_all()

    def _back_off(self, now: float) -> None:
        self._last_backoff = now
        self._backoffs += 1
        through = self._answered / max(self._answered + self._pushed, 1)
        # Slow start overshoots by up to half (as TCP's first loss, halve); later, a tenth or the share
        # that got through.
        factor = DEEPEST_BACKOFF if self._slow_start else min(BACKOFF, max(DEEPEST_BACKOFF, through))
        self._answered = self._pushed = 0
        self._overloaded = 0.0
        self._slow_start = False
        self._pushback_at = self._limit
        self._limit = max(float(self.floor), self._limit * factor)

    def _queueing(self) -> bool:
        return (
            self._latency is not None
            and self._baseline is not None
            and self._latency > LATENCY_TOLERANCE * self._baseline
        )

    def _learn_latency(self, seconds: float, now: float) -> None:
        seconds = max(seconds, 1e-4)
        self._latency = (
            seconds
            if self._latency is None
            else (1 - _LATENCY_WEIGHT) * self._latency + _LATENCY_WEIGHT * seconds
        )
        # The baseline is the lowest average seen lately: what an unloaded server answers in.
        self._window_min = self._latency if self._window_min is None else min(self._window_min, self._latency)
        if self._baseline is None or self._latency < self._baseline:
            self._baseline = self._latency
        if now - self._baseline_since >= _BASELINE_WINDOW_S:
            self._baseline, self._window_min, self._baseline_since = self._window_min, None, now
