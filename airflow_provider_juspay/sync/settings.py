"""How a push paces itself and when it stops, in one value; the run's control is built from it here.

Each setting enters at one place: the concurrency ceiling sizes the HTTP pool (the hook), the worker
threads (the dispatcher) and the adaptive limit; pacing picks the controller; ``rate_limit`` caps the
pace (the merchant's, when a ledger keeps a shared budget); the breaker stops a run that keeps failing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from airflow_provider_juspay.fulfilment import FulfilmentRecord, FulfilmentResult
from airflow_provider_juspay.sync.breaker import BreakerPolicy, CircuitBreaker
from airflow_provider_juspay.sync.concurrency import DEFAULT_CEILING, DEFAULT_INITIAL, AdaptiveLimit
from airflow_provider_juspay.sync.control import DEFAULT_GRACE_S, RunControl
from airflow_provider_juspay.sync.dispatcher import DEFAULT_MAX_CONCURRENCY
from airflow_provider_juspay.sync.pacer import Pacer

if TYPE_CHECKING:
    from airflow_provider_juspay.sync.ledger import Ledger, LedgerPreview
    from airflow_provider_juspay.sync.shared_pacing import SharedPacer

__all__ = ["PACINGS", "PushSettings", "Sender", "build_control"]

#: ``adaptive``: concurrency found from Juspay's answers, the pace shared by every task of the merchant
#: when a ledger keeps the budget; ``fixed``: ``max_concurrency`` workers, a 429 pauses all and halves
#: the pace (0.2's pacing, per task).
PACINGS = ("adaptive", "fixed")


class Sender(Protocol):
    """What a push sends through (``JuspayClient``)."""

    config: Any

    def fulfil(self, record: FulfilmentRecord, *, control: Any = None) -> FulfilmentResult: ...

    def abort_in_flight(self) -> int: ...


@dataclass(frozen=True)
class PushSettings:
    """How one push paces itself and when it stops.

    :param max_concurrency: requests in flight at most: the adaptive ceiling, or the fixed number of
        workers; None: 64 adaptive, 16 fixed.
    :param pacing: one of :data:`PACINGS`.
    :param rate_limit: requests per second at most; with a shared budget, the merchant's (the lowest
        among the tasks drawing).
    :param breaker: when a run that keeps failing stops; None: the default thresholds.
    :param shared_budget: draw from the merchant's budget when the ledger can keep one (adaptive only).
    :param grace_s: seconds the requests on the wire get after a cancel.
    """

    max_concurrency: int | None = None
    pacing: str = "adaptive"
    rate_limit: float | None = None
    breaker: BreakerPolicy | None = field(default=None)
    shared_budget: bool = True
    grace_s: float = DEFAULT_GRACE_S

    def __post_init__(self) -> None:
        if self.pacing not in PACINGS:
            raise ValueError(f"pacing must be one of {PACINGS}, got {self.pacing!r}")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.rate_limit is not None and self.rate_limit <= 0:
            raise ValueError(f"rate_limit must be a positive number of requests/s, got {self.rate_limit}")

    @property
    def ceiling(self) -> int:
        """Requests in flight at most (workers, pooled connections, the adaptive limit's ceiling)."""
        if self.max_concurrency is not None:
            return self.max_concurrency
        return DEFAULT_CEILING if self.pacing == "adaptive" else DEFAULT_MAX_CONCURRENCY


def build_control(
    settings: PushSettings,
    client: Sender,
    ledger: Ledger | LedgerPreview | None = None,
    *,
    max_batch: int | None = None,
) -> RunControl:
    """The run's pace, breaker and stop, from ``settings``: the merchant's shared budget when the
    ledger keeps one (adaptive pacing), else the task's own pacer; the adaptive limit; the breaker.

    :param max_batch: tokens a task takes from the budget at most at once (a push of a few records).
    """
    from airflow_provider_juspay.sync.ledger import Ledger  # the ledger's package reads this one's

    if client.config is None:  # a dry run: nothing goes out, nothing to pace or break
        return RunControl(abort=client.abort_in_flight, grace_s=settings.grace_s)
    max_pause = float(client.config.retry.max_wait)
    adaptive = settings.pacing == "adaptive"
    pacer: Pacer | SharedPacer | None = None
    if adaptive and settings.shared_budget and isinstance(ledger, Ledger):
        pacer = ledger.shared_pacer(
            urlsplit(client.config.base_url).netloc,
            rate_limit=settings.rate_limit,
            max_batch=max_batch,
            max_pause=max_pause,
        )
    ceiling = settings.ceiling
    return RunControl(
        pacer=pacer or Pacer(settings.rate_limit),
        breaker=CircuitBreaker(settings.breaker),
        max_pause=max_pause,
        abort=client.abort_in_flight,
        grace_s=settings.grace_s,
        limiter=AdaptiveLimit(initial=min(DEFAULT_INITIAL, ceiling), ceiling=ceiling) if adaptive else None,
    )
