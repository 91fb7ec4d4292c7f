"""What the workers of one run share: the pace, the circuit breaker, and the decision to stop.

A run stops for one of five reasons, each with the error code its unsent rows carry: Juspay refused
the API key (UNAUTHORIZED, the dispatcher); the breaker opened (CIRCUIT_OPEN, UNEXPECTED_RESPONSES);
Airflow asked the task to stop (CANCELLED: SIGTERM, ``on_kill``, a timeout); the source failed, or a
caller gave up on the run (ABORTED); or the ledger's lease on the run's keys was lost (LEASE_LOST, the
fence). Once stopped, no new attempt leaves and retry waits end at once; on a cancel, the requests still
on the wire get a short grace, then are cut; on an abort, at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from airflow_provider_juspay.errors import (
    ApiError,
    ErrorCode,
    LeaseLost,
    RateLimited,
    RunStopped,
    ServerError,
    TimedOut,
)
from airflow_provider_juspay.fulfilment import FulfilmentRecord
from airflow_provider_juspay.ratelimit import RateLimitHint
from airflow_provider_juspay.sync.breaker import CircuitBreaker
from airflow_provider_juspay.sync.concurrency import AdaptiveLimit
from airflow_provider_juspay.sync.pacer import Pacer
from airflow_provider_juspay.sync.shared_pacing import SharedPacer

__all__ = ["DEFAULT_GRACE_S", "Fence", "RunControl", "Stop"]

log = logging.getLogger(__name__)

#: Seconds the requests on the wire get to finish after a cancel, before they are cut.
DEFAULT_GRACE_S = 1.0
#: Seconds a 429 without Retry-After pauses the run.
DEFAULT_THROTTLE_PAUSE = 1.0
#: With adaptive concurrency, a 429's Retry-After up to this many seconds delays only its own request
#: (the limit comes down instead); a longer one is an instruction to the whole run, which pauses.
SHORT_RETRY_AFTER_S = 1.0


def is_overload(error: ApiError | None) -> bool:
    """A 503 or a timeout: overload when they come in numbers, a stray fault when alone."""
    return (isinstance(error, ServerError) and error.http_status == 503) or (isinstance(error, TimedOut))


class Fence(Protocol):
    """What stands between a worker and the wire (the ledger's lease): asked right before each attempt."""

    def admit(self, record: FulfilmentRecord) -> None:
        """Return if ``record`` may go out now; else raise
        :class:`~airflow_provider_juspay.errors.LeaseLost`."""

    def progressed(self) -> None:
        """An answer arrived."""


@dataclass(frozen=True)
class Stop:
    """Why a run stopped: the code its unsent rows carry, a sentence, and the error behind it."""

    error_code: str
    message: str
    error: BaseException | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "error_code", str(self.error_code))  # an ErrorCode, kept as its text


class RunControl:
    """Shared by the workers of one run (see ``JuspayClient.fulfil``); thread-safe.

    :param pacer: the run's pace; None for no pacing (429s then only wait in the retry policy).
    :param breaker: stops the run when Juspay keeps failing; None for no breaker.
    :param max_pause: cap on a 429's Retry-After pause (the retry policy's ``max_wait``).
    :param abort: cuts the requests on the wire (``JuspayClient.abort_in_flight``), after a cancel's grace.
    :param limiter: adaptive concurrency (see ``sync.concurrency``); None keeps the dispatcher's fixed
        number of workers, and a 429 then pauses the run and halves its pace (the pacing of 0.2).
    """

    def __init__(
        self,
        *,
        pacer: Pacer | SharedPacer | None = None,
        breaker: CircuitBreaker | None = None,
        max_pause: float = 30.0,
        abort: Callable[[], int] | None = None,
        grace_s: float = DEFAULT_GRACE_S,
        limiter: AdaptiveLimit | None = None,
    ) -> None:
        self.pacer = pacer
        self.limiter = limiter
        self._attempt = threading.local()
        #: 429 answers seen in this run.
        self.throttled = 0
        self.breaker = breaker
        self._max_pause = max_pause
        self._abort = abort
        self._grace = grace_s
        self._stopped = threading.Event()
        #: The ledger's lease, when the run has one: no attempt leaves without its say-so.
        self.fence: Fence | None = None
        # Reentrant: cancel() runs in a signal handler, which may interrupt this thread inside stop().
        self._lock = threading.RLock()
        self.stop_reason: Stop | None = None
        if isinstance(pacer, SharedPacer):
            pacer.stopped = self._stopped  # a worker waiting for its task's turn gives up at a stop

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    @property
    def cancelled(self) -> bool:
        return self.stop_reason is not None and self.stop_reason.error_code == ErrorCode.CANCELLED

    def stop(self, error_code: str, message: str, error: BaseException | None = None) -> bool:
        """Stop the run (the first reason wins); returns whether this call stopped it."""
        with self._lock:
            if self.stop_reason is not None:
                return False
            self.stop_reason = Stop(error_code, message, error)
            self._stopped.set()
        # Not ERROR: the task's own error, raised at the end with the report, is the one to read.
        log.warning("Stopping the run (%s): %s", error_code, message)
        return True

    def cancel(self, message: str = "the task was asked to stop") -> None:
        """Stop now; requests on the wire get ``grace_s`` seconds, then are cut. Safe in a signal handler."""
        self.stop(ErrorCode.CANCELLED, message)
        if self._abort is not None:
            timer = threading.Timer(self._grace, self._abort)
            timer.daemon = True
            timer.start()

    def abort(self, message: str) -> None:
        """Stop and cut the requests on the wire at once (their results can no longer be recorded)."""
        self.stop(ErrorCode.ABORTED, message)
        if self._abort is not None:
            self._abort()

    def check(self) -> None:
        """Raise :class:`~airflow_provider_juspay.errors.RunStopped` once the run has stopped."""
        if self._stopped.is_set():
            reason = self.stop_reason
            assert reason is not None
            raise RunStopped(
                f"the run stopped ({reason.error_code}): {reason.message}", error_code=reason.error_code
            )

    # -- AttemptControl, for the client ----------------------------------------------------------

    def before_attempt(self, record: FulfilmentRecord | None = None) -> None:
        """Wait for the pace and a slot (the fence is asked later, by :meth:`admit`)."""
        self.check()
        if self.pacer is not None:
            delay = self.pacer.reserve()
            if delay > 0:
                self.sleep(delay)  # a 429's pause too: it ends early when the run stops
                self.check()
        self._attempt.sent = time.monotonic()
        if self.limiter is not None:
            started = self.limiter.acquire(lambda: self.stopped)
            if started is None:
                self.check()
            self._attempt.started = started

    def admit(self, record: FulfilmentRecord) -> None:
        """Asked by the transport right before the request is written, its connection up: the fence
        (the ledger's lease on the key) lets it out, or the run stops and nothing more leaves."""
        if self.fence is None:
            return
        try:
            self.fence.admit(record)
        except LeaseLost as exc:
            self.stop(ErrorCode.LEASE_LOST, str(exc), exc)
            started = getattr(self._attempt, "started", None)
            if self.limiter is not None and started is not None:
                self.limiter.release(started)  # after_attempt will not run: the attempt never left
                self._attempt.started = None
            self.check()

    def after_attempt(self, error: ApiError | None, hint: RateLimitHint | None = None) -> None:
        if self.fence is not None:
            self.fence.progressed()
        if isinstance(error, RateLimited):
            with self._lock:  # workers answer at once: += alone can lose a count
                self.throttled += 1
        if hint is not None and self.pacer is not None:
            self.pacer.advise(hint)
        shared = self.shared
        if self.limiter is not None:
            # With a shared budget, the merchant's rate answers 429s; the task's slots only latency.
            pushback = isinstance(error, RateLimited) and shared is None
            self.limiter.release(self._attempt.started, pushback=pushback, overload=is_overload(error))
        if shared is not None:
            if isinstance(error, RateLimited):
                shared.pushback(getattr(self._attempt, "sent", None), error.retry_after)
            else:
                shared.answered()
        elif isinstance(error, RateLimited) and self.pacer is not None:
            pause = error.retry_after if error.retry_after is not None else DEFAULT_THROTTLE_PAUSE
            if self.limiter is None:
                self.pacer.pause(min(pause, self._max_pause))
            elif pause > SHORT_RETRY_AFTER_S:
                self.pacer.hold(min(pause, self._max_pause))
        if self.breaker is not None:
            trip = self.breaker.observe(error)
            if trip is not None:
                self.stop(trip.error_code, trip.message, error)

    def close(self) -> None:
        """The run has ended: leave the merchant's budget (the other tasks' batches grow)."""
        if isinstance(self.pacer, SharedPacer):
            self.pacer.close()

    @property
    def shared(self) -> SharedPacer | None:
        """The merchant's shared budget, while this run draws from it."""
        pacer = self.pacer
        return pacer if isinstance(pacer, SharedPacer) and pacer.drawing else None

    def sleep(self, seconds: float) -> None:
        self._stopped.wait(seconds)

    def pacing(self) -> dict[str, Any]:
        """What pacing found, for the report: concurrency (adaptive), rate, 429s, time paused."""
        if self.pacer is None and self.limiter is None:
            return {}
        found: dict[str, Any] = {"mode": "adaptive" if self.limiter is not None else "fixed"}
        if self.limiter is not None:
            stats = self.limiter.stats()
            found.update(
                peak_concurrency=stats.peak, final_concurrency=stats.limit, latency_ms=stats.latency_ms
            )
        if self.pacer is not None:
            # The run's one rate is the report's records_per_s; the pacer's own is of the last seconds.
            found.update(paused_s=round(self.pacer.paused_s, 1))
        if isinstance(self.pacer, SharedPacer):
            found["budget"] = self.pacer.stats()
        found["throttled"] = self.throttled
        return found

    def progress(self) -> str:
        """The pace now, for progress lines: ``in flight 37/40, 385/s``."""
        parts = []
        if self.limiter is not None:
            stats = self.limiter.stats()
            parts.append(f"in flight {stats.in_flight}/{stats.limit}")
        if self.pacer is not None:
            parts.append(f"{self.pacer.measured_rate:.0f} req/s")
        if isinstance(self.pacer, SharedPacer):
            parts.append(self.pacer.progress())
        if self.throttled:
            parts.append(f"429s {self.throttled}")
        return ", ".join(parts)
