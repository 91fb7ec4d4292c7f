"""Answers that are not what they seem: trickling, huge, not Juspay's, echoing the key; connection test."""

from __future__ import annotations

import base64
import threading
import time

import pytest

from airflow_provider_juspay.client import JuspayClient, _check_fulfilment_answer
from airflow_provider_juspay.config import ClientConfig, RetryPolicy, Timeouts
from airflow_provider_juspay.errors import UnexpectedResponse
from airflow_provider_juspay.fulfilment import FulfilmentRecord, Outcome
from airflow_provider_juspay.testing.sandbox import Sandbox
from tests.helpers import API_KEY, MERCHANT_ID


def client_for(base_url, *, attempts=3, deadline=60.0, read=5.0, max_answer_bytes=1024 * 1024):
    return JuspayClient(
        ClientConfig(
            base_url=base_url,
            merchant_id=MERCHANT_ID,
            api_key=API_KEY,
            timeouts=Timeouts(connect=1, read=read, deadline=deadline),
            retry=RetryPolicy(max_attempts=attempts, initial_wait=0.01, max_wait=0.02, jitter=0),
            max_answer_bytes=max_answer_bytes,
        )
    )


def record(order_id="A-1"):
    return FulfilmentRecord.from_mapping(
        {"order_id": order_id, "fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"}
    )


def test_a_trickling_server_is_cut_at_the_deadline_though_every_read_is_quick(sandbox):
    sandbox.configure(trickle_rate=1.0, trickle_interval=0.1)  # a byte every 0.1 s, 240 bytes: 24 s
    with client_for(sandbox.base_url, attempts=2, deadline=1.0, read=0.5) as client:
        started = time.monotonic()
        result = client.fulfil(record())
        elapsed = time.monotonic() - started
    assert (result.outcome, result.error_code, result.attempts) == (Outcome.FAILED, "TIMEOUT", 2)
    assert "deadline" in result.message
    assert elapsed < 4, f"two attempts of a 1 s deadline took {elapsed:.1f}s"


def test_an_answer_over_the_cap_is_not_read_and_counts_as_transient(sandbox):
    sandbox.configure(huge_rate=1.0, huge_bytes=3 * 1024 * 1024)
    with client_for(sandbox.base_url, attempts=2) as client:
        result = client.fulfil(record())
        sandbox.configure(huge_rate=0.0)
        after = client.fulfil(record("A-2"))
    assert (result.outcome, result.error_code, result.attempts) == (Outcome.FAILED, "ANSWER_TOO_LARGE", 2)
    assert after.outcome is Outcome.SENT, "the pool recovers once answers are normal again"


def test_a_200_that_is_not_juspays_answer_is_never_sent_and_not_retried(sandbox):
    sandbox.configure(not_juspay_rate=1.0)
    with client_for(sandbox.base_url) as client:
        result = client.fulfil(record())
    assert (result.outcome, result.error_code, result.attempts) == (Outcome.FAILED, "UNEXPECTED_RESPONSE", 1)
    assert "Merchant portal" in result.message and "base URL" in result.message


@pytest.mark.parametrize(
    "answer",
    [{"status": "SUCCESS", "order_id": "ANOTHER"}, {"ok": True}, {"status": "ERROR"}],
)
def test_a_json_200_counts_only_when_it_is_juspays_answer_for_this_order(answer):
    with pytest.raises(UnexpectedResponse):
        _check_fulfilment_answer(answer, "A-1", str)
    _check_fulfilment_answer({"status": "SUCCESS", "order_id": "A-1", "commands": []}, "A-1", str)


def test_a_gateway_echoing_the_authorization_header_leaks_no_key(sandbox):
    sandbox.script("echo_auth", 1)
    with client_for(sandbox.base_url) as client:
        result = client.fulfil(record())
    token = base64.b64encode(f"{API_KEY}:".encode()).decode()
    assert result.outcome is Outcome.REJECTED and "Authorization: Basic ***" in result.message
    assert token not in repr(result) and API_KEY not in repr(result)


def test_abort_cuts_a_request_on_the_wire_at_once(sandbox):
    sandbox.configure(hang_rate=1.0, hang_seconds=30)
    with client_for(sandbox.base_url, attempts=1, read=30) as client:
        threading.Timer(0.3, client.abort_in_flight).start()
        started = time.monotonic()
        result = client.fulfil(record())
    assert (result.outcome, result.error_code) == (Outcome.FAILED, "CANCELLED")
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("status", [400, 404])
def test_connection_test_accepts_juspays_not_found_answer_as_400_or_404(status):
    with Sandbox(api_key=API_KEY, merchant_id=MERCHANT_ID, not_found_status=status) as sandbox:
        sandbox.default_order_status = None
        with client_for(sandbox.base_url) as client:
            ok, message = client.test_connection()
    assert ok, message


def test_connection_test_refuses_a_404_that_is_not_juspays(sandbox):
    with client_for(sandbox.base_url + "/wrong/base/path") as client:
        ok, message = client.test_connection()
    assert not ok and "404" in message


def test_connection_test_makes_one_attempt(sandbox):
    sandbox.script("error", 5)
    with client_for(sandbox.base_url, attempts=5) as client:
        ok, message = client.test_connection()
    assert not ok and "503" in message
    assert len(sandbox.requests) == 1, "the Test button does not retry"
