"""JuspayClient against the sandbox over real HTTP: outcomes, wire format, retries, auth stop, secrets."""

from __future__ import annotations

import base64
import logging

import pytest

from airflow_provider_juspay.client import USER_AGENT, JuspayClient
from airflow_provider_juspay.config import ClientConfig, RetryPolicy, Timeouts
from airflow_provider_juspay.errors import AuthError, NotFound
from airflow_provider_juspay.fulfilment import FulfilmentRecord, Outcome
from tests.helpers import API_KEY, MERCHANT_ID


class SleepRecorder:
    """Stands in for time.sleep so retry tests run instantly and can see each wait."""

    def __init__(self):
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps():
    return SleepRecorder()


@pytest.fixture
def client(sandbox, sleeps):
    config = ClientConfig(
        base_url=sandbox.base_url,
        merchant_id=MERCHANT_ID,
        api_key=API_KEY,
        timeouts=Timeouts(connect=1, read=0.5),
        retry=RetryPolicy(max_attempts=4, initial_wait=0.1, max_wait=2.0, jitter=0.0, sleep=sleeps),
    )
    with JuspayClient(config) as c:
        yield c


def record(order_id="ORD-1", **fields):
    return FulfilmentRecord.from_mapping(
        {"order_id": order_id, "fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION", **fields}
    )


def test_accepted_fulfilment_is_sent(client, sandbox):
    result = client.fulfil(record())
    assert (result.outcome, result.http_status, result.attempts) == (Outcome.SENT, 200, 1)
    assert sandbox.accepted[("ORD-1", "NO_ACTION")] == 1


def test_repeated_command_is_already_fulfilled_not_an_error(client, sandbox):
    client.fulfil(record())
    again = client.fulfil(record())
    assert again.outcome is Outcome.ALREADY_FULFILLED
    assert again.error_code == "ALREADY_EXISTS"
    assert sandbox.accepted[("ORD-1", "NO_ACTION")] == 1
    # Juspay documents de-duplication only for split settlements: the sandbox counts the repeat.
    assert sandbox.doubles() == {("ORD-1", "NO_ACTION"): 2}


@pytest.mark.parametrize("order_id", ["UNPAID-1", "UNKNOWN-1"])
def test_order_without_a_successful_payment_is_rejected_with_juspays_code(client, order_id):
    result = client.fulfil(record(order_id))
    assert result.outcome is Outcome.REJECTED
    assert (result.http_status, result.error_code) == (400, "RESOURCE_NOT_FOUND")
    assert "No successfull txn found" in result.message
    assert result.attempts == 1, "a 4xx is never retried"


def test_wire_format_is_what_juspay_documents(client, sandbox):
    client.fulfil(
        record(
            "a/b c?#%é",
            fulfillment_time="2024-07-08T16:30:33",
            fulfillment_id="AWB-1",
            fulfillment_data={"k": "v"},
            routing_id="cust-9",
        )
    )
    [received] = sandbox.requests
    assert received.method == "POST"
    assert received.raw_path == "/orders/a%2Fb%20c%3F%23%25%C3%A9/fulfillment"
    assert received.order_id == "a/b c?#%é"
    headers = {k.lower(): v for k, v in received.headers.items()}
    assert headers["authorization"] == "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()
    assert headers["x-merchantid"] == MERCHANT_ID
    assert headers["x-routing-id"] == "cust-9"
    assert headers["user-agent"] == USER_AGENT
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert received.form == {
        "fulfillment_status": "SUCCESS",
        "fulfillment_command": "NO_ACTION",
        "fulfillment_time": "2024-07-08T16:30:33",
        "fulfillment_id": "AWB-1",
        "fulfillment_data": '{"k":"v"}',
    }


def test_no_routing_header_without_a_routing_id(client, sandbox):
    client.fulfil(record())
    assert "x-routing-id" not in {k.lower() for k in sandbox.requests[0].headers}


@pytest.mark.parametrize("kind", ["error", "drop", "hang"])
def test_transient_faults_are_retried_with_growing_backoff(client, sandbox, sleeps, kind):
    sandbox.configure(hang_seconds=2)
    sandbox.script(kind, 2)
    result = client.fulfil(record())
    assert (result.outcome, result.attempts) == (Outcome.SENT, 3)
    assert sleeps.waits == [0.1, 0.2]


def test_429_honours_retry_after(client, sandbox, sleeps):
    sandbox.configure(retry_after=1.5)
    sandbox.script("throttle", 1)
    result = client.fulfil(record())
    assert (result.outcome, result.attempts) == (Outcome.SENT, 2)
    assert sleeps.waits == [1.5]


def test_retry_after_is_capped_by_max_wait(client, sandbox, sleeps):
    sandbox.configure(retry_after=120)
    sandbox.script("throttle", 1)
    client.fulfil(record())
    assert sleeps.waits == [2.0]


def test_transient_errors_outliving_the_retries_are_failed(client, sandbox):
    sandbox.script("error", 4)
    result = client.fulfil(record())
    assert (result.outcome, result.attempts, result.http_status) == (Outcome.FAILED, 4, 503)
    assert result.error_code == "SERVICE_UNAVAILABLE"
    assert sandbox.accepted[("ORD-1", "NO_ACTION")] == 0


def test_lost_reply_after_acceptance_resolves_as_already_fulfilled_not_a_double(client, sandbox):
    sandbox.script("drop_after_accept", 1)
    result = client.fulfil(record())
    assert (result.outcome, result.attempts) == (Outcome.ALREADY_FULFILLED, 2)
    assert sandbox.accepted[("ORD-1", "NO_ACTION")] == 1


def test_bad_api_key_raises_auth_error_at_once(sandbox, sleeps):
    config = ClientConfig(
        base_url=sandbox.base_url,
        merchant_id=MERCHANT_ID,
        api_key="sk_test_WRONG_key_000000",
        retry=RetryPolicy(sleep=sleeps),
    )
    with JuspayClient(config) as bad, pytest.raises(AuthError) as info:
        bad.fulfil(record())
    assert info.value.http_status == 401
    assert info.value.error_code == "UNAUTHORIZED"
    assert len(sandbox.requests) == 1 and sleeps.waits == []


def test_wrong_merchant_is_an_auth_error(sandbox):
    config = ClientConfig(base_url=sandbox.base_url, merchant_id="someone_else", api_key=API_KEY)
    with JuspayClient(config) as other, pytest.raises(AuthError):
        other.fulfil(record())


def test_order_status_is_read(client):
    status = client.get_order_status("ORD-55")
    assert (status["order_id"], status["status"], status["status_id"]) == ("ORD-55", "CHARGED", 21)


def test_unknown_order_status_raises_not_found(client):
    with pytest.raises(NotFound) as info:
        client.get_order_status("UNKNOWN-3")
    assert info.value.error_code == "RESOURCE_NOT_FOUND"


def test_connection_test_passes_with_good_key_and_sends_no_fulfilment(client, sandbox):
    ok, message = client.test_connection()
    assert ok, message
    assert [r.method for r in sandbox.requests] == ["GET"]
    assert sum(sandbox.accepted.values()) == 0


def test_connection_test_fails_with_bad_key(sandbox):
    config = ClientConfig(
        base_url=sandbox.base_url, merchant_id=MERCHANT_ID, api_key="sk_test_WRONG_key_000000"
    )
    with JuspayClient(config) as bad:
        ok, message = bad.test_connection()
    assert not ok and "refused" in message


def test_connection_refused_is_failed_after_retries(sleeps):
    config = ClientConfig(
        base_url="http://127.0.0.1:9",
        merchant_id=MERCHANT_ID,
        api_key=API_KEY,
        retry=RetryPolicy(max_attempts=2, initial_wait=0.01, sleep=sleeps),
    )
    with JuspayClient(config) as c:
        result = c.fulfil(record())
    assert (result.outcome, result.attempts) == (Outcome.FAILED, 2)
    assert "connection to 127.0.0.1:9 failed (ConnectionRefusedError" in result.message, "names where"


def test_an_unreachable_production_host_is_named_in_the_failure(sleeps):
    """An offline worker with a production connection: the message says which host it tried."""
    config = ClientConfig(
        base_url="https://api.juspay.invalid",
        merchant_id=MERCHANT_ID,
        api_key=API_KEY,
        retry=RetryPolicy(max_attempts=1, sleep=sleeps),
    )
    with JuspayClient(config) as c:
        result = c.fulfil(record())
    assert result.message.startswith("connection to api.juspay.invalid:443 failed"), result.message


def test_api_key_never_appears_in_repr_logs_or_errors(sandbox, caplog, sleeps):
    caplog.set_level(logging.DEBUG)
    config = ClientConfig(
        base_url=sandbox.base_url,
        merchant_id=MERCHANT_ID,
        api_key=API_KEY,
        retry=RetryPolicy(max_attempts=2, initial_wait=0.01, sleep=sleeps),
    )
    texts = [repr(config), str(config)]
    with JuspayClient(config) as c:
        texts.append(repr(c))
        sandbox.script("error", 2)
        texts.append(repr(c.fulfil(record("O-1"))))
        texts.append(repr(c.fulfil(record("UNPAID-1"))))
    wrong = ClientConfig(base_url=sandbox.base_url, merchant_id=MERCHANT_ID, api_key=API_KEY + "x")
    with JuspayClient(wrong) as bad, pytest.raises(AuthError) as info:
        bad.fulfil(record("O-2"))
    texts += [str(info.value), repr(info.value), caplog.text]
    encoded = base64.b64encode(f"{API_KEY}:".encode()).decode()
    for text in texts:
        assert API_KEY not in text
        assert encoded not in text


def test_retries_are_counted_by_cause_and_only_the_first_of_each_is_logged(client, sandbox, caplog):
    caplog.set_level(logging.INFO, logger="airflow_provider_juspay.client")
    sandbox.script("error", 3)
    first = client.fulfil(record("R-1"))
    sandbox.script("throttle", 2)
    second = client.fulfil(record("R-2"))
    assert (first.outcome, second.outcome) == (Outcome.SENT, Outcome.SENT)
    assert client.retries.counts() == {"SERVICE_UNAVAILABLE": 3, "TOO_MANY_REQUESTS": 2}
    lines = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(lines) == 2 and "SERVICE_UNAVAILABLE" in lines[0] and "TOO_MANY_REQUESTS" in lines[1]


def test_a_burst_of_429s_is_pushback_retried_beyond_max_attempts_other_errors_are_not(ledger_client, sandbox):
    """max_attempts=2 here: seven 429s in a row still end delivered (up to 4 x 2 attempts); two 503s fail."""
    sandbox.configure(retry_after=0.01)
    sandbox.script("throttle", 7)
    result = ledger_client.fulfil(
        FulfilmentRecord.from_mapping(
            {"order_id": "BURST-1", "fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"}
        )
    )
    assert result.outcome is Outcome.SENT and result.attempts == 8
    sandbox.script("error", 2)
    result = ledger_client.fulfil(
        FulfilmentRecord.from_mapping(
            {"order_id": "BURST-2", "fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"}
        )
    )
    assert result.outcome is Outcome.FAILED and result.attempts == 2
