"""The dispatcher: bounded concurrency, lazy reading, one result per item, the auth stop."""

from __future__ import annotations

import threading
import time

import pytest

from airflow_provider_juspay.errors import AuthError
from airflow_provider_juspay.fulfilment import FulfilmentRecord, FulfilmentResult, Outcome
from airflow_provider_juspay.sync.dispatcher import Dispatcher


def records(n, prefix="D"):
    for i in range(n):
        yield FulfilmentRecord.from_mapping(
            {"order_id": f"{prefix}-{i}", "fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"}
        )


def sent(record):
    return FulfilmentResult(order_id=record.order_id, outcome=Outcome.SENT, attempts=1)


class InFlight:
    """A send that sleeps briefly and records how many calls overlap."""

    def __init__(self):
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def __call__(self, record):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        time.sleep(0.002)
        with self.lock:
            self.now -= 1
        return sent(record)


@pytest.mark.parametrize("concurrency", [1, 4, 16])
def test_every_item_gets_one_result_and_concurrency_is_bounded(concurrency):
    send = InFlight()
    results = list(Dispatcher(send, max_concurrency=concurrency).run(records(200)))
    assert sorted(r.order_id for r in results) == sorted(f"D-{i}" for i in range(200))
    assert send.peak <= concurrency
    if concurrency > 1:
        assert send.peak > 1, "requests overlap"


def test_final_results_pass_through_unsent():
    invalid = FulfilmentResult(order_id="BAD", outcome=Outcome.INVALID)
    calls = []
    results = list(
        Dispatcher(lambda r: calls.append(r) or sent(r), max_concurrency=4).run([invalid, *records(3)])
    )
    assert invalid in results and len(results) == 4 and len(calls) == 3


def test_source_is_read_lazily_within_the_in_flight_window():
    concurrency = 4
    window = concurrency * 2
    state = {"produced": 0, "consumed": 0}

    def source():
        for record in records(500):
            assert state["produced"] - state["consumed"] <= window + concurrency, "read ahead of the window"
            state["produced"] += 1
            yield record

    for _ in Dispatcher(InFlight(), max_concurrency=concurrency).run(source()):
        state["consumed"] += 1
    assert state["consumed"] == 500


@pytest.mark.parametrize("concurrency", [1, 8])
def test_auth_error_stops_the_run_and_the_rest_are_not_attempted(concurrency):
    lock = threading.Lock()
    calls = {"n": 0}

    def send(record):
        with lock:
            calls["n"] += 1
            n = calls["n"]
        if n > 20:
            raise AuthError("HTTP 401 UNAUTHORIZED", http_status=401, error_code="UNAUTHORIZED")
        return sent(record)

    dispatcher = Dispatcher(send, max_concurrency=concurrency)
    results = list(dispatcher.run(records(300)))
    assert len(results) == 300
    outcomes = [r.outcome for r in results]
    assert isinstance(dispatcher.stop_reason.error, AuthError)
    unsent = [r for r in results if r.outcome is Outcome.NOT_ATTEMPTED]
    assert all(r.error_code == "UNAUTHORIZED" for r in unsent), "the rows left say why"
    assert outcomes.count(Outcome.SENT) == 20
    assert outcomes.count(Outcome.NOT_ATTEMPTED) >= 300 - 20 - 2 * concurrency
    assert calls["n"] <= 20 + 2 * concurrency, "requests stop soon after the 401"
    failed = [r for r in results if r.outcome is Outcome.FAILED]
    assert failed and all(r.error_code == "UNAUTHORIZED" for r in failed)
