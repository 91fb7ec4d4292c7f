"""The circuit breaker: a run stops sending when Juspay keeps failing, instead of grinding through retries.

It watches every attempt of a run. Transient failures (5xx, timeouts, dropped connections, answers
too large) on most of a recent window of attempts, or a run of consecutive ones, lasting at least
``min_outage_s``, open it: a sustained outage ends the run in seconds, a short blip does not.
Answers that are not Juspay's (a wrong base URL: a portal, a proxy's page; a TLS failure) open it
after a few in a row, at once. A 429 is Juspay pacing us (the pacer's business), and any answer of
Juspay's, a refusal included, shows it is up; only 429s and nothing else for ``max_throttled_s`` (a
capacity that never recovers) open it too.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from airflow_provider_juspay.errors import (
    ApiError,
    AuthError,
    Cancelled,
    ErrorCode,
    RateLimited,
    Rejected,
    TlsError,
    UnexpectedResponse,
)

__all__ = ["BreakerPolicy", "CircuitBreaker", "Trip"]


@dataclass(frozen=True, kw_only=True)
class BreakerPolicy:
    """When a run stops sending. The defaults end a full outage in about ten seconds.

    :param consecutive: transient failures in a row that open the breaker (default 20).
    :param window: recent attempts whose share of failures is watched (default 50).
    :param failure_ratio: share of the window failing that opens it (default 0.8).
    :param min_outage_s: the failing must have lasted this long, so a blip does not stop a run (5 s).
    :param unexpected: answers in a row that are not Juspay's that open it at once (default 3).
    :param max_throttled_s: seconds of nothing but 429s that open it (default 120): the limit never came back.
    """

    consecutive: int = 20
    window: int = 50
    failure_ratio: float = 0.8
    min_outage_s: float = 5.0
    unexpected: int = 3
    max_throttled_s: float = 120.0

    def __post_init__(self) -> None:
        if min(self.consecutive, self.window, self.unexpected) < 1:
            raise ValueError("breaker counts (consecutive, window, unexpected) must be >= 1")
        if not 0 < self.failure_ratio <= 1:
            raise ValueError(f"failure_ratio must be in (0, 1], got {self.failure_ratio}")
        if self.min_outage_s < 0:
            raise ValueError(f"min_outage_s must not be negative, got {self.min_outage_s}")


@dataclass(frozen=True)
class Trip:
    """Why the breaker opened: an error code for the unsent rows and a sentence for people."""

    error_code: str
    message: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "error_code", str(self.error_code))  # an ErrorCode, kept as its text


class CircuitBreaker:
    """Counts how attempts end and opens once; thread-safe.

    :param policy: the thresholds.
    """

    def __init__(self, policy: BreakerPolicy | None = None, *, clock: Callable[[], float] = time.monotonic):
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._lock = threading.Lock()
        self._recent: deque[bool] = deque(maxlen=self.policy.window)  # True: a transient failure
        self._failures_in_window = 0
        self._streak = 0
        self._unexpected_streak = 0
        self._failing_since: float | None = None
        self._causes: Counter[str] = Counter()
        self._throttled_since: float | None = None
        self.trip: Trip | None = None

    def observe(self, error: ApiError | None) -> Trip | None:
        """Learn how one attempt ended; returns the trip the first time the breaker opens."""
        if isinstance(error, Cancelled):  # the run is stopping: says nothing of Juspay
            return None
        if isinstance(error, RateLimited):
            return self._throttled()
        self._throttled_since = None
        # Any answer of Juspay's, a refusal included, shows it is up; anything else counts against it.
        transient = error is not None and not isinstance(error, (Rejected, AuthError))
        not_juspay = isinstance(error, (UnexpectedResponse, TlsError))
        with self._lock:
            if self.trip is not None:
                return None
            if len(self._recent) == self._recent.maxlen and self._recent[0]:
                self._failures_in_window -= 1
            self._recent.append(transient)
            now = self._clock()
            p = self.policy
            if not transient:
                self._streak = self._unexpected_streak = 0
                self._causes.clear()
                if self._failures_in_window < p.failure_ratio * p.window:
                    self._failing_since = None
                return None
            self._failures_in_window += 1
            self._streak += 1
            self._causes[error.error_code or type(error).__name__] += 1  # type: ignore[union-attr]
            if not_juspay:
                self._unexpected_streak += 1
                if self._unexpected_streak >= self.policy.unexpected:
                    return self._open(
                        ErrorCode.UNEXPECTED_RESPONSES,
                        f"{self._unexpected_streak} answers in a row were not Juspay's ({error}); "
                        "check the connection's base URL (and its TLS certificate)",
                    )
            else:
                self._unexpected_streak = 0
            full = len(self._recent) == p.window
            failing = self._streak >= p.consecutive or (
                full and self._failures_in_window >= p.failure_ratio * p.window
            )
            if not failing:
                self._failing_since = None
                return None
            if self._failing_since is None:
                self._failing_since = now
            lasted = now - self._failing_since
            if lasted >= p.min_outage_s:
                causes = ", ".join(f"{code} {n}" for code, n in self._causes.most_common(3))
                return self._open(
                    ErrorCode.CIRCUIT_OPEN,
                    f"Juspay kept failing: {self._failures_in_window} of the last {len(self._recent)} "
                    f"attempts, {self._streak} in a row, for {lasted:.0f}s ({causes}); stopped sending",
                )
            return None

    def _throttled(self) -> Trip | None:
        with self._lock:
            if self.trip is not None:
                return None
            now = self._clock()
            if self._throttled_since is None:
                self._throttled_since = now
            lasted = now - self._throttled_since
            if lasted < self.policy.max_throttled_s:
                return None
            return self._open(
                ErrorCode.THROTTLED,
                f"Juspay answered nothing but 429 (rate limited) for {lasted:.0f}s; stopped sending "
                "(an Airflow retry tries again later)",
            )

    def _open(self, code: str, message: str) -> Trip:
        self.trip = Trip(code, message)
        return self.trip
