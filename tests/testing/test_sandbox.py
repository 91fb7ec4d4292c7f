"""The sandbox behaves like Juspay's docs, and works as a CLI for other processes."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.helpers import API_KEY, MERCHANT_ID

AUTH = "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()


def call(url, *, method="GET", body=None, headers=None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def fulfil(
    sandbox, order_id="S-1", body=b"fulfillment_status=SUCCESS&fulfillment_command=NO_ACTION", **headers
):
    base = {
        "Authorization": AUTH,
        "x-merchantid": MERCHANT_ID,
        "Content-Type": "application/x-www-form-urlencoded",
    }
    return call(
        f"{sandbox.base_url}/orders/{order_id}/fulfillment",
        method="POST",
        body=body,
        headers={**base, **headers},
    )


def test_documented_success_body(sandbox):
    status, body = fulfil(
        sandbox, body=b"fulfillment_status=SUCCESS&fulfillment_command=NO_ACTION&fulfillment_data=x"
    )
    assert status == 200
    assert body["status"] == "SUCCESS" and body["order_id"] == "S-1"
    assert body["commands"][0]["command"] == "NO_ACTION" and body["commands"][0]["metadata"] == "x"


def test_missing_merchant_header_is_a_bad_request(sandbox):
    status, body = fulfil(sandbox, **{"x-merchantid": ""})
    assert status == 400 and body["error_info"]["code"] == "MISSING_MANDATORY_PARAMETER"


def test_json_body_is_refused_like_juspays_form_api(sandbox):
    status, body = fulfil(
        sandbox, body=b'{"fulfillment_status": "SUCCESS"}', **{"Content-Type": "application/json"}
    )
    assert status == 400 and body["error_info"]["code"] == "INVALID_INPUT"


def test_missing_command_is_a_bad_request(sandbox):
    status, body = fulfil(sandbox, body=b"fulfillment_status=SUCCESS")
    assert status == 400 and "fulfillment_command" in body["error_message"]


def test_rate_limit_answers_429_with_retry_after(sandbox):
    sandbox.configure(rate_limit=2, retry_after=3)
    statuses = [fulfil(sandbox, order_id=f"RL-{i}")[0] for i in range(6)]
    assert 429 in statuses
    throttled = next(r for r in sandbox.requests if r.status == 429)
    assert throttled.fault == "throttle"


def test_unknown_script_kind_is_refused(sandbox):
    with pytest.raises(ValueError, match="fault kind"):
        sandbox.script("explode")


def test_cli_serves_and_exposes_state_and_configuration():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_juspay.testing.sandbox", "--port", str(port),
         "--api-key", API_KEY, "--merchant-id", MERCHANT_ID, "--default-order-status", "NOT_FOUND"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert "listening" in proc.stdout.readline()
        base = f"http://127.0.0.1:{port}"
        status, _ = call(f"{base}/orders/ANY", headers={"Authorization": AUTH, "x-merchantid": MERCHANT_ID})
        assert status == 400, "unlisted orders are unknown with --default-order-status NOT_FOUND"
        status, state = call(
            f"{base}/__sandbox/configure", method="POST", body=json.dumps({"error_rate": 1.0}).encode()
        )
        assert status == 200 and state["faults"]["error_rate"] == 1.0
        status, _ = call(f"{base}/orders/ANY", headers={"Authorization": AUTH, "x-merchantid": MERCHANT_ID})
        assert status == 503
        _, received = call(f"{base}/__sandbox/requests")
        assert [r["status"] for r in received] == [400, 503]
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_a_command_sent_twice_is_a_double_even_though_the_second_is_answered_already_exists(sandbox):
    """The oracle every exactly-once test relies on can fail: a deliberate second POST is counted."""
    assert fulfil(sandbox, "D-1")[0] == 200
    assert sandbox.doubles() == {}
    status, body = fulfil(sandbox, "D-1")
    assert status == 400 and body["error_info"]["code"] == "ALREADY_EXISTS"
    assert sandbox.doubles() == {("D-1", "NO_ACTION"): 2} == sandbox.repeats()
    assert sandbox.accepted[("D-1", "NO_ACTION")] == 1, "accepted once; POSTed twice"
    assert sandbox.state()["doubles"] == 1


def test_a_retry_after_a_reply_the_sandbox_lost_is_a_repeat_but_not_a_double(sandbox, ledger_client):
    """A lost reply (accepted, then the connection closed) calls for the client's retry: expected once."""
    from airflow_provider_juspay.fulfilment import FulfilmentRecord

    sandbox.script("drop_after_accept")
    record = FulfilmentRecord.from_mapping(
        {"order_id": "L-1", "fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"}
    )
    result = ledger_client.fulfil(record)
    assert result.outcome.value == "already_fulfilled" and result.attempts == 2
    assert sandbox.repeats() == {("L-1", "NO_ACTION"): 2} and sandbox.doubles() == {}
    ledger_client.fulfil(record)  # a third POST: no lost reply explains it
    assert sandbox.doubles() == {("L-1", "NO_ACTION"): 3}
