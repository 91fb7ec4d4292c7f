"""Adaptive concurrency with an injected clock: grows only when the limit binds, backs off on pushback
once per round trip, holds while latency rises, stays between floor and ceiling."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_juspay.errors import RateLimited, ServerError, TimedOut, TransportError
from airflow_provider_juspay.sync.concurrency import AdaptiveLimit
from airflow_provider_juspay.sync.control import RunControl, is_overload
from airflow_provider_juspay.sync.pacer import Pacer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def busy_round(limit: AdaptiveLimit, clock: Clock, latency: float = 0.1, pushback: bool = False) -> None:
    """Every slot taken, then every answer back after ``latency``: one round trip at the limit."""
    started = [limit.acquire() for _ in range(limit.limit)]
    clock.now += latency
    for at in started:
        limit.release(at, pushback=pushback)


def test_slow_start_grows_by_half_per_round_trip_up_to_the_ceiling_and_no_further():
    clock = Clock()
    limit = AdaptiveLimit(initial=8, ceiling=40, clock=clock)
    seen = []
    for _ in range(8):
        busy_round(limit, clock)
        seen.append(limit.limit)
    assert seen[0] >= 11 and seen[1] >= 15, seen  # about x1.4 a round trip
    assert max(seen) == 40 == limit.limit


def test_it_grows_only_while_every_slot_is_in_use():
    clock = Clock()
    limit = AdaptiveLimit(initial=10, ceiling=64, clock=clock)
    for _ in range(50):  # a slow source: never more than 3 requests in flight
        taken = [limit.acquire() for _ in range(3)]
        clock.now += 0.1
        for at in taken:
            limit.release(at)
    assert limit.limit == 10


def one_answer(limit: AdaptiveLimit, clock: Clock, pushback: bool) -> None:
    started = limit.acquire()
    clock.now += 0.01
    limit.release(started, pushback=pushback)


def test_pushback_backs_off_by_a_tenth_once_per_burst():
    clock = Clock()
    limit = AdaptiveLimit(initial=40, ceiling=64, clock=clock)
    busy_round(limit, clock)  # grows in slow start
    one_answer(limit, clock, pushback=True)  # slow start ends: halved, as TCP's first loss
    assert limit._limit == pytest.approx(54 / 2)
    burst = [limit.acquire() for _ in range(10)]  # sent together under this limit
    for _ in range(30):
        one_answer(limit, clock, pushback=False)
    before = limit._limit
    clock.now += 0.1
    for started in burst:  # all ten meet a 429: one cut, not ten
        limit.release(started, pushback=True)
    assert limit._limit == pytest.approx(before * 0.9) and limit.stats().backoffs == 2
    one_answer(limit, clock, pushback=True)  # sent after the cut, and still refused: another cut
    assert limit.stats().backoffs == 3


def test_when_most_answers_are_pushback_the_cut_goes_deeper():
    clock = Clock()
    limit = AdaptiveLimit(initial=60, ceiling=64, clock=clock)
    one_answer(limit, clock, pushback=True)  # a first cut: a new round starts
    before = limit._limit
    sent = [limit.acquire() for _ in range(10)]
    clock.now += 0.1
    for started in sent[:2]:  # several runs overshooting together: 2 of 10 get through
        limit.release(started, pushback=False)
    for started in sent[2:]:
        limit.release(started, pushback=True)
    assert limit._limit == pytest.approx(before * 2 / 3), "cut to the share that got through so far"
    assert limit.stats().backoffs == 2, "the rest of the burst was sent before the cut"


def test_after_pushback_it_probes_slowly_near_where_pushback_came():
    clock = Clock()
    limit = AdaptiveLimit(initial=20, ceiling=64, clock=clock)
    busy_round(limit, clock)
    one_answer(limit, clock, pushback=True)  # the end of slow start
    for _ in range(20):
        busy_round(limit, clock, latency=0.01)  # regrows briskly to near where pushback came
    for _ in range(20):
        one_answer(limit, clock, pushback=False)
    one_answer(limit, clock, pushback=True)
    after_cut = limit._limit
    for _ in range(20):
        busy_round(limit, clock, latency=0.01)
    # 0.05 a round trip near the last pushback (0.5 far below it): a tenth regrown in 20 round trips.
    assert after_cut + 0.5 <= limit._limit <= after_cut + 1.5


def test_growth_holds_while_latency_is_well_above_its_baseline():
    clock = Clock()
    limit = AdaptiveLimit(initial=8, ceiling=64, clock=clock)
    for _ in range(3):
        busy_round(limit, clock, latency=0.1)
    grown = limit.limit
    for _ in range(40):  # the server queues: answers take 4x as long
        busy_round(limit, clock, latency=0.4)
    # Held: the average climbs over the first answers, then no growth (unheld, it would reach 64).
    assert limit.limit <= grown + 4
    assert limit.stats().latency_ms is not None and limit.stats().latency_ms > 300


def test_the_floor_holds_under_endless_pushback():
    clock = Clock()
    limit = AdaptiveLimit(initial=16, floor=2, ceiling=64, clock=clock)
    for _ in range(100):
        busy_round(limit, clock, pushback=True)
        clock.now += 1
    assert limit.limit == 2


def test_floor_and_ceiling_are_checked():
    with pytest.raises(ValueError):
        AdaptiveLimit(floor=5, ceiling=4)


def test_acquire_gives_up_when_the_run_stops():
    limit = AdaptiveLimit(initial=1, ceiling=1)
    limit.acquire()
    assert limit.acquire(lambda: True, poll=0.01) is None


def test_what_counts_as_overload():
    assert is_overload(ServerError("503", http_status=503))
    assert is_overload(TimedOut("timed out", error_code="TIMEOUT"))
    assert not is_overload(TransportError("timed out?", error_code="TIMEOUT")), "decided by type, not code"
    assert not is_overload(RateLimited("429", http_status=429)), "a 429 is pushback of its own kind"
    assert not is_overload(ServerError("500", http_status=500))
    assert not is_overload(TransportError("refused", error_code="CONNECTION_ERROR"))
    assert not is_overload(None)


def test_a_short_retry_after_delays_only_its_request_a_long_one_pauses_the_run():
    clock = Clock()
    pacer = Pacer(None, clock=clock)
    control = RunControl(pacer=pacer, limiter=AdaptiveLimit(initial=8, clock=clock))
    control.before_attempt()
    control.after_attempt(RateLimited("429", http_status=429, retry_after=1.0))
    assert pacer.reserve() == 0, "no pause for the others: the limit came down instead"
    control.before_attempt()
    control.after_attempt(RateLimited("429", http_status=429, retry_after=8.0))
    assert pacer.reserve() == pytest.approx(8.0), "a long Retry-After holds every worker"
    assert control.throttled == 2 and control.pacing()["throttled"] == 2


def test_fixed_pacing_keeps_the_halving_of_0_3():
    clock = Clock()
    pacer = Pacer(None, clock=clock)
    control = RunControl(pacer=pacer)
    for _ in range(50):
        control.before_attempt()
        control.after_attempt(None)
        clock.now += 0.01
    control.after_attempt(RateLimited("429", http_status=429, retry_after=1.0))
    assert pacer.rate is not None and pacer.paused_s == pytest.approx(1.0)
    assert control.pacing()["mode"] == "fixed"


def test_progress_lines_and_the_report_show_the_pace():
    from airflow_provider_juspay.sync.report import ReportBuilder

    clock = Clock()
    control = RunControl(pacer=Pacer(None, clock=clock), limiter=AdaptiveLimit(initial=12, clock=clock))
    control.before_attempt()
    builder = ReportBuilder(clock=clock)
    builder.pace = control
    assert "in flight 1/12" in builder.progress_line()
    control.after_attempt(RateLimited("429", http_status=429, retry_after=0.5))
    report = builder.finish().to_dict()
    assert report["pacing"]["mode"] == "adaptive" and report["pacing"]["throttled"] == 1
    assert report["pacing"]["peak_concurrency"] == 12 and report["pacing"]["final_concurrency"] == 6
    assert "pacing: mode adaptive" in builder.finish().format()


def test_a_stray_503_does_not_cut_but_503s_in_numbers_do():
    clock = Clock()
    limit = AdaptiveLimit(initial=30, ceiling=64, clock=clock)
    for _ in range(50):
        one_answer(limit, clock, pushback=False)
    before = limit._limit
    started = limit.acquire()
    limit.release(started, overload=True)  # one 503 among 50 answers: a fault, not overload
    assert limit._limit == before and limit.stats().backoffs == 0
    for _ in range(6):  # then 503s in numbers: a server shedding load
        started = limit.acquire()
        limit.release(started, overload=True)
    assert limit._limit < before and limit.stats().backoffs >= 1


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["ok", "429", "503"]), st.floats(min_value=0.0, max_value=2.0)),
        max_size=300,
    ),
    st.integers(min_value=1, max_value=8),
    st.integers(min_value=8, max_value=80),
)
def test_whatever_the_answers_the_limit_stays_between_floor_and_ceiling(answers, floor, ceiling):
    clock = Clock()
    limit = AdaptiveLimit(initial=16, floor=floor, ceiling=ceiling, clock=clock)
    for kind, latency in answers:
        started = limit.acquire()
        clock.now += latency
        limit.release(started, pushback=kind == "429", overload=kind == "503")
        assert floor <= limit.limit <= ceiling
    assert limit.stats().in_flight == 0 and limit.stats().peak <= ceiling
