"""The circuit breaker: a sustained outage or a wrong base URL stops a run; a blip or a refusal does not."""

from __future__ import annotations

import pytest

from airflow_provider_juspay.errors import (
    Cancelled,
    ErrorCode,
    RateLimited,
    Rejected,
    ServerError,
    TimedOut,
    TlsError,
    UnexpectedResponse,
)
from airflow_provider_juspay.sync.breaker import BreakerPolicy, CircuitBreaker

UNAVAILABLE = ServerError("HTTP 503", http_status=503, error_code="SERVICE_UNAVAILABLE")
TIMEOUT = TimedOut("timed out", error_code="TIMEOUT")
REFUSED = Rejected("HTTP 400", http_status=400, error_code="RESOURCE_NOT_FOUND")


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_sustained_outage_opens_it_once_it_has_lasted():
    clock = Clock()
    breaker = CircuitBreaker(BreakerPolicy(consecutive=20, min_outage_s=5), clock=clock)
    trips = []
    for i in range(200):
        clock.now = i * 0.05  # 20 failures a second
        trips.append(breaker.observe(UNAVAILABLE if i % 2 else TIMEOUT))
    opened = [i for i, t in enumerate(trips) if t is not None]
    assert len(opened) == 1, "it opens once"
    assert clock.now >= 5 and 5 <= opened[0] * 0.05 - 19 * 0.05 < 5.1
    trip = trips[opened[0]]
    assert trip.error_code == "CIRCUIT_OPEN" and "SERVICE_UNAVAILABLE" in trip.message


def test_a_blip_shorter_than_min_outage_does_not_open_it():
    clock = Clock()
    breaker = CircuitBreaker(BreakerPolicy(consecutive=5, min_outage_s=5), clock=clock)
    for i in range(100):  # two seconds of nothing but 503s
        clock.now = i * 0.02
        assert breaker.observe(UNAVAILABLE) is None
    clock.now = 2.1
    assert breaker.observe(None) is None  # Juspay answers again
    for i in range(50):
        clock.now = 2.2 + i * 0.02
        assert breaker.observe(UNAVAILABLE) is None, "the outage clock started again"


def test_most_of_the_window_failing_opens_it_even_with_successes_between():
    clock = Clock()
    breaker = CircuitBreaker(
        BreakerPolicy(consecutive=1000, window=50, failure_ratio=0.8, min_outage_s=1), clock=clock
    )
    trip = None
    for i in range(400):
        clock.now = i * 0.01
        trip = trip or breaker.observe(None if i % 10 == 0 else UNAVAILABLE)  # 90% failing
    assert trip is not None and trip.error_code == "CIRCUIT_OPEN"


@pytest.mark.parametrize(
    "error", [RateLimited("HTTP 429", http_status=429), REFUSED, None], ids=["429", "rejected", "ok"]
)
def test_answers_of_a_live_juspay_never_open_it(error):
    clock = Clock()
    # 429s open it only after max_throttled_s of nothing else (the next test): not within these 500 s.
    breaker = CircuitBreaker(BreakerPolicy(consecutive=3, min_outage_s=0, max_throttled_s=1000), clock=clock)
    for i in range(500):
        clock.now = i
        assert breaker.observe(error) is None


def test_answers_that_are_not_juspays_open_it_at_once():
    breaker = CircuitBreaker(BreakerPolicy(unexpected=3, min_outage_s=60))
    wrong = UnexpectedResponse("HTTP 200, an HTML page", error_code="UNEXPECTED_RESPONSE")
    assert breaker.observe(wrong) is None and breaker.observe(wrong) is None
    trip = breaker.observe(wrong)
    assert trip is not None and trip.error_code == "UNEXPECTED_RESPONSES" and "base URL" in trip.message


def test_the_policy_refuses_nonsense():
    with pytest.raises(ValueError):
        BreakerPolicy(failure_ratio=0)
    with pytest.raises(ValueError):
        BreakerPolicy(consecutive=0)


def test_a_tls_failure_counts_as_not_juspay():
    breaker = CircuitBreaker(BreakerPolicy(unexpected=2))
    tls = TlsError("TLS failed for portal.example", error_code=ErrorCode.TLS_ERROR)
    assert breaker.observe(tls) is None
    assert breaker.observe(tls).error_code == "UNEXPECTED_RESPONSES"


def test_it_decides_by_type_not_by_code_text():
    """A request cut short by the run's own stop says nothing of Juspay, whatever code it carries; a
    TLS failure is not Juspay's answer even without the TLS code."""
    breaker = CircuitBreaker(BreakerPolicy(consecutive=2, min_outage_s=0, unexpected=2))
    for _ in range(10):
        assert breaker.observe(Cancelled("cut short", error_code="ANY")) is None
    assert breaker.observe(TlsError("TLS failed")) is None
    trip = breaker.observe(TlsError("TLS failed"))
    assert trip is not None and trip.error_code == ErrorCode.UNEXPECTED_RESPONSES
    assert type(trip.error_code) is str  # kept as text: XCom and reports hold plain strings


def test_429s_alone_open_it_only_when_they_never_stop():
    clock = Clock()
    breaker = CircuitBreaker(BreakerPolicy(max_throttled_s=120), clock=clock)
    throttled = RateLimited("HTTP 429", http_status=429, retry_after=1.0)
    for second in range(100):  # a long storm, with an answer now and then: pushback, not an outage
        clock.now = second
        assert breaker.observe(throttled) is None
        if second % 30 == 29:
            assert breaker.observe(None) is None
    for second in range(100, 260):  # nothing but 429s, for good
        clock.now = second
        trip = breaker.observe(throttled)
        if trip is not None:
            break
    assert trip is not None and trip.error_code == "THROTTLED" and clock.now == 90 + 120
