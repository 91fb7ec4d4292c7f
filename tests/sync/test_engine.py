"""A whole push against the sandbox over HTTP, under injected faults: nothing lost, nothing doubled."""

from __future__ import annotations

import threading
import time

import pytest

from airflow_provider_juspay.client import JuspayClient
from airflow_provider_juspay.config import ClientConfig, RetryPolicy, Timeouts
from airflow_provider_juspay.fulfilment import FulfilmentRecord
from airflow_provider_juspay.sync.breaker import BreakerPolicy, CircuitBreaker
from airflow_provider_juspay.sync.control import RunControl
from airflow_provider_juspay.sync.engine import DryRun, push
from airflow_provider_juspay.sync.pacer import Pacer
from airflow_provider_juspay.sync.report import ReportBuilder, RunReport
from airflow_provider_juspay.sync.settings import PushSettings
from tests.helpers import API_KEY, MERCHANT_ID

N = 400


def rows(n=N, prefix="E"):
    for i in range(n):
        yield {
            "order_id": f"{prefix}-{i}",
            "fulfillment_status": "SUCCESS",
            "fulfillment_command": "NO_ACTION",
        }


@pytest.fixture
def client(sandbox):
    config = ClientConfig(
        base_url=sandbox.base_url,
        merchant_id=MERCHANT_ID,
        api_key=API_KEY,
        # Read timeout well above a loaded machine's answer time: a timeout after the sandbox accepted is
        # a lost reply the sandbox did not inject, and its retry would count as a double. The hangs
        # (1 s) stay past it.
        timeouts=Timeouts(connect=1, read=0.6),
        retry=RetryPolicy(max_attempts=6, initial_wait=0.005, max_wait=0.02, jitter=0.005),
        pool_size=16,
    )
    with JuspayClient(config) as c:
        yield c


def run(client, source, pacer=None, concurrency=16, breaker=None):
    control = RunControl(pacer=pacer or Pacer(None), breaker=breaker, max_pause=client.config.retry.max_wait)
    return push(
        source,
        make_record=FulfilmentRecord.from_mapping,
        client=client,
        settings=PushSettings(max_concurrency=concurrency),
        report=ReportBuilder(),
        control=control,
    )


def assert_every_row_has_one_outcome(report, n=N):
    assert report["total"] == n
    assert sum(report["counts"].values()) == n


FAULTS = {
    "5xx burst": {"error_rate": 0.3},
    "429 with Retry-After": {"rate_limit": 800, "retry_after": 0.01},
    "hangs past the timeout": {"hang_rate": 0.05, "hang_seconds": 1.0},
    "dropped connections": {"drop_rate": 0.1},
    "lost replies": {"drop_after_accept_rate": 0.1},
    "a mix": {
        "error_rate": 0.1,
        "drop_rate": 0.05,
        "drop_after_accept_rate": 0.05,
        "hang_rate": 0.02,
        "hang_seconds": 1.0,
    },
}


@pytest.mark.parametrize("faults", FAULTS.values(), ids=FAULTS.keys())
def test_faults_lose_nothing_and_double_nothing(client, sandbox, faults):
    sandbox.configure(**faults)
    outcome = run(client, rows())
    report = outcome.report.to_dict()
    assert_every_row_has_one_outcome(report)
    assert sandbox.doubles() == {}, "a command was accepted twice"
    delivered = report["counts"]["sent"] + report["counts"]["already_fulfilled"]
    accepted = {order for order, _ in sandbox.accepted}
    assert delivered == len(accepted), "every delivered outcome matches one accepted command"
    assert report["counts"]["failed"] == len(report["failures"]) or len(report["failures"]) == 100
    assert delivered >= N * 0.95, report


def test_429_pauses_the_whole_run_and_every_record_gets_through(sandbox):
    sandbox.configure(rate_limit=150, retry_after=0.05)
    config = ClientConfig(
        base_url=sandbox.base_url,
        merchant_id=MERCHANT_ID,
        api_key=API_KEY,
        retry=RetryPolicy(max_attempts=6, initial_wait=0.01, max_wait=1.0),
    )
    pacer = Pacer(None)
    with JuspayClient(config) as patient:
        report = run(patient, rows(), pacer=pacer).report.to_dict()
    assert_every_row_has_one_outcome(report)
    assert report["counts"]["sent"] == N
    assert pacer.pauses > 0, "a 429 paused every worker"


def test_rate_limit_keeps_under_the_servers_limit(client, sandbox):
    sandbox.configure(rate_limit=400)
    report = run(client, rows(200), pacer=Pacer(300, burst=10)).report.to_dict()
    assert report["counts"]["sent"] == 200
    assert sandbox.status_counts[429] == 0, "paced below the limit, Juspay never throttled"


def test_bad_rows_are_reported_and_do_not_stop_good_ones(client, sandbox):
    bad = [
        {"order_id": None, "fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"},
        {"order_id": "B-enum", "fulfillment_status": "DONE", "fulfillment_command": "NO_ACTION"},
        {"order_id": "B-cmd", "fulfillment_status": "SUCCESS", "fulfillment_command": "TELEPORT"},
        {
            "order_id": "B-time",
            "fulfillment_status": "SUCCESS",
            "fulfillment_command": "NO_ACTION",
            "fulfillment_time": "last tuesday",
        },
        {
            "order_id": "B-huge",
            "fulfillment_status": "SUCCESS",
            "fulfillment_command": "NO_ACTION",
            "fulfillment_data": "x" * 50_000,
        },
        {"order_id": "B-ctrl\x00", "fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"},
        ["not", "a", "mapping"],
    ]
    good = [
        {"order_id": "G/1 ?#%", "fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"},
        {"order_id": "G-ünïcødé-✓", "fulfillment_status": "success", "fulfillment_command": "invoice"},
        *rows(20, "G"),
    ]
    report = run(client, [*bad[:4], *good, *bad[4:]]).report.to_dict()
    assert_every_row_has_one_outcome(report, len(bad) + len(good))
    assert report["counts"]["invalid"] == len(bad) and report["counts"]["sent"] == len(good)
    failures = {f["order_id"]: f for f in report["failures"]}
    assert "DONE" in failures["B-enum"]["message"] and "fulfillment_status" in failures["B-enum"]["message"]
    assert "last tuesday" in failures["B-time"]["message"]
    assert {("G/1 ?#%", "NO_ACTION"), ("G-ünïcødé-✓", "INVOICE")} <= set(sandbox.accepted)


def test_key_revoked_mid_run_stops_it_and_counts_the_rest_not_attempted(client, sandbox):
    def source():
        for i, row in enumerate(rows()):
            if i == 100:
                sandbox.rotate_key("sk_test_rotated_key_999")
            yield row

    outcome = run(client, source())
    report = outcome.report.to_dict()
    assert_every_row_has_one_outcome(report)
    assert outcome.stop is not None and outcome.stop.error.http_status == 401
    assert outcome.stop.error_code == "UNAUTHORIZED" and report["stopped"]["error_code"] == "UNAUTHORIZED"
    assert report["counts"]["not_attempted"] >= N - 100 - 2 * 16
    assert report["counts"]["sent"] >= 100 - 2 * 16
    assert sandbox.status_counts[401] <= 2 * 16, "requests stop soon after the first 401"


def test_dry_run_sends_nothing():
    report = push(
        rows(10),
        make_record=FulfilmentRecord.from_mapping,
        client=DryRun(),
        settings=PushSettings(max_concurrency=1),
        report=ReportBuilder(dry_run=True),
    ).report.to_dict()
    assert report["counts"]["not_attempted"] == 10 and report["dry_run"] is True


def test_hundreds_of_concurrent_connections_with_latency(sandbox):
    sandbox.configure(latency=0.05)
    config = ClientConfig(base_url=sandbox.base_url, merchant_id=MERCHANT_ID, api_key=API_KEY, pool_size=200)
    with JuspayClient(config) as wide:
        report = run(wide, rows(600), concurrency=200).report.to_dict()
    assert report["counts"]["sent"] == 600
    assert sandbox.status_counts[200] == 600


def test_a_full_outage_stops_the_run_in_seconds_and_names_the_cause(sandbox):
    sandbox.configure(error_rate=1.0)
    config = ClientConfig(
        base_url=sandbox.base_url,
        merchant_id=MERCHANT_ID,
        api_key=API_KEY,
        retry=RetryPolicy(),  # the documented defaults: 5 attempts, 0.5 s doubling up to 30 s
    )
    started = time.monotonic()
    with JuspayClient(config) as c:
        outcome = run(c, rows(5000), breaker=CircuitBreaker(BreakerPolicy(min_outage_s=2)))
    elapsed = time.monotonic() - started
    report = outcome.report.to_dict()
    assert_every_row_has_one_outcome(report, 5000)
    assert outcome.stop.error_code == "CIRCUIT_OPEN" and report["stopped"]["error_code"] == "CIRCUIT_OPEN"
    assert report["counts"]["not_attempted"] >= 5000 - 2 * 16
    assert report["errors"]["CIRCUIT_OPEN"] == report["counts"]["not_attempted"]
    assert report["counts"]["sent"] == 0 and RunReport.from_dict(report).undone() is not None
    assert len(sandbox.requests) < 500, "it stopped sending instead of grinding through retries"
    assert elapsed < 30, f"a full outage took {elapsed:.0f}s to stop the run"


def test_a_wrong_base_url_stops_the_run_within_a_few_requests(client, sandbox):
    sandbox.configure(not_juspay_rate=1.0)
    outcome = run(client, rows(), breaker=CircuitBreaker())
    report = outcome.report.to_dict()
    assert_every_row_has_one_outcome(report)
    assert outcome.stop.error_code == "UNEXPECTED_RESPONSES"
    assert report["counts"]["sent"] == 0 and report["counts"]["failed"] <= 2 * 16
    assert len(sandbox.requests) <= 3 + 2 * 16


def test_a_cancel_stops_sending_within_a_second_and_every_row_read_has_an_outcome(client, sandbox):
    sandbox.configure(latency=0.05)
    control = RunControl(pacer=Pacer(None), abort=client.abort_in_flight, grace_s=0.3)
    read = {"n": 0}

    def source():
        for i, row in enumerate(rows(100_000)):
            read["n"] += 1
            if i == 300:
                threading.Timer(0, control.cancel).start()
            yield row

    started = time.monotonic()
    outcome = push(
        source(),
        make_record=FulfilmentRecord.from_mapping,
        client=client,
        settings=PushSettings(max_concurrency=16),
        report=ReportBuilder(),
        control=control,
    )
    report = outcome.report.to_dict()
    assert time.monotonic() - started < 10
    assert report["stopped"]["error_code"] == "CANCELLED"
    assert report["total"] == read["n"] < 1000, "rows after the cancel are not read"
    accepted = sum(sandbox.accepted.values())
    assert report["counts"]["sent"] + report["counts"]["already_fulfilled"] == accepted
