"""The pacer: a shared rate limit and a shared pause after a 429."""

from __future__ import annotations

import pytest

from airflow_provider_juspay.sync.pacer import Pacer


class FakeTime:
    def __init__(self):
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def test_no_rate_limit_never_waits():
    t = FakeTime()
    pacer = Pacer(None, clock=t.clock, sleep=t.sleep)
    for _ in range(1000):
        pacer.wait()
    assert t.slept == []


def test_rate_limit_spaces_requests_after_the_burst():
    t = FakeTime()
    pacer = Pacer(10, burst=1, clock=t.clock, sleep=t.sleep)
    for _ in range(11):
        pacer.wait()
    assert t.now - 100.0 == pytest.approx(1.0), "11 requests at 10/s with a burst of 1 take 1 s"


def test_pause_holds_every_caller_until_it_ends():
    t = FakeTime()
    pacer = Pacer(None, clock=t.clock, sleep=t.sleep)
    pacer.pause(2.5)
    pacer.pause(1.0)  # a shorter pause inside a longer one does not shorten or extend it
    pacer.wait()
    assert t.now == pytest.approx(102.5)
    assert pacer.pauses == 1 and pacer.paused_s == pytest.approx(2.5)


def test_rate_limit_must_be_positive():
    with pytest.raises(ValueError):
        Pacer(0)


def test_a_429_halves_the_pace_and_calm_seconds_bring_it_back():
    t = FakeTime()
    pacer = Pacer(100, clock=t.clock, sleep=t.sleep)
    for _ in range(300):  # three seconds at the limit: the measured pace is 100/s
        pacer.wait()
    pacer.pause(0.5)
    assert pacer.rate == pytest.approx(50, rel=0.05)
    pacer.pause(0.5)  # a 429 of the same burst, while paused: no second halving
    assert pacer.rate == pytest.approx(50, rel=0.05)
    rates = []
    for _ in range(400):
        pacer.wait()
        rates.append(pacer.rate)
    assert rates[-1] > rates[0], "the pace grows back while calm"
    assert max(rates) <= 100, "never above rate_limit"
