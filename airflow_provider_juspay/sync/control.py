"""What the workers of one run share: the pace, the circuit breaker, and the decision to stop.

A run stops for one of three reasons, each with the error code its unsent rows carry: Juspay refused
the API key (UNAUTHORIZED), the breaker opened (CIRCUIT_OPEN, UNEXPECTED_RESPONSES), or Airflow asked
the task to stop (CANCELLED: SIGTERM, ``on_kill``, a timeout). Once stopped, no new attempt leaves and
retry waits end at once; on a cancel, the requests still on the wire get a short grace, then are cut.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from airflow_provider_juspay.errors import ApiError, RateLimited, RunStopped
from airflow_provider_juspay.sync.breaker import CircuitBreaker
from airflow_provider_juspay.sync.pacer import Pacer

__all__ = ["ABORTED", "CANCELLED", "DEFAULT_GRACE_S", "UNAUTHORIZED", "RunControl", "Stop"]

log = logging.getLogger(__name__)

CANCELLED = "CANCELLED"
UNAUTHORIZED = "UNAUTHORIZED"
#: The run ended on an error of its own (a database gone, a timeout): nothing more can be recorded.
ABORTED = "ABORTED"
#: Seconds the requests on the wire get to finish after a cancel, before they are cut.
DEFAULT_GRACE_S = 1.0
#: Seconds a 429 without Retry-After pauses the run.
DEFAULT_THROTTLE_PAUSE = 1.0


@dataclass(frozen=True)
class Stop:
    """Why a run stopped: the code its unsent rows carry, a sentence, and the error behind it."""

    error_code: str
    message: str
    error: BaseException | None = None


class RunControl:
    """Shared by the workers of one run (see ``JuspayClient.fulfil``); thread-safe.

    :param pacer: the run's pace; None for no pacing (429s then only wait in the retry policy).
    :param breaker: stops the run when Juspay keeps failing; None for no breaker.
    :param max_pause: cap on a 429's Retry-After pause (the retry policy's ``max_wait``).
    :param abort: cuts the requests on the wire (``JuspayClient.abort_in_flight``), after a cancel's grace.
    """

    def __init__(
        self,
        *,
        pacer: Pacer | None = None,
        breaker: CircuitBreaker | None = None,
        max_pause: float = 30.0,
        abort: Callable[[], int] | None = None,
        grace_s: float = DEFAULT_GRACE_S,
    ) -> None:
        self.pacer = pacer
        self.breaker = breaker
        self._max_pause = max_pause
        self._abort = abort
        self._grace = grace_s
        self._stopped = threading.Event()
        # Reentrant: cancel() runs in a signal handler, which may interrupt this thread inside stop().
        self._lock = threading.RLock()
        self.stop_reason: Stop | None = None

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    @property
    def cancelled(self) -> bool:
        return self.stop_reason is not None and self.stop_reason.error_code == CANCELLED

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
        self.stop(CANCELLED, message)
        if self._abort is not None:
            timer = threading.Timer(self._grace, self._abort)
            timer.daemon = True
            timer.start()

    def abort(self, message: str) -> None:
        """Stop and cut the requests on the wire at once (their results can no longer be recorded)."""
        self.stop(ABORTED, message)
        if self._abort is not None:
            self._abort()

    def check(self) -> None:
        """Raise :class:`RunStopped` once the run has stopped."""
        if self._stopped.is_set():
            reason = self.stop_reason
            assert reason is not None
            raise RunStopped(
                f"the run stopped ({reason.error_code}): {reason.message}", error_code=reason.error_code
            )

    # -- AttemptControl, for the client ----------------------------------------------------------

    def before_attempt(self) -> None:
        self.check()
        if self.pacer is not None:
            delay = self.pacer.reserve()
            if delay > 0:
                self.sleep(delay)  # a 429's pause too: it ends early when the run stops
                self.check()

    def after_attempt(self, error: ApiError | None) -> None:
        if isinstance(error, RateLimited) and self.pacer is not None:
            pause = error.retry_after if error.retry_after is not None else DEFAULT_THROTTLE_PAUSE
            self.pacer.pause(min(pause, self._max_pause))
        if self.breaker is not None:
            trip = self.breaker.record(error)
            if trip is not None:
                self.stop(trip.error_code, trip.message, error)

    def sleep(self, seconds: float) -> None:
        self._stopped.wait(seconds)
