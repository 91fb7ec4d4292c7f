"""OrderStatusTrigger: its serialisation round trip and every event it can yield, over HTTP to the sandbox."""

from __future__ import annotations

import asyncio
import time

import pytest

from airflow_provider_juspay.triggers.order_status import OrderStatusTrigger
from tests.helpers import conn_json


def make(order_id="T-1", **changes):
    now = time.time()
    kwargs = {
        "order_id": order_id,
        "juspay_conn_id": "juspay_default",
        "target_statuses": ["CHARGED"],
        "poll_interval": 0.05,
        "end_time": now + 2,
        "not_found_until": now + 0.2,
        **changes,
    }
    return OrderStatusTrigger(**kwargs)


def first_event(trigger):
    async def collect():
        async for event in trigger.run():
            return event.payload

    return asyncio.run(collect())


def test_serialize_round_trip():
    trigger = make(end_time=123.0, not_found_until=45.0)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_juspay.triggers.order_status.OrderStatusTrigger"
    assert kwargs == {
        "order_id": "T-1",
        "juspay_conn_id": "juspay_default",
        "target_statuses": ["CHARGED"],
        "poll_interval": 0.05,
        "end_time": 123.0,
        "not_found_until": 45.0,
    }
    assert OrderStatusTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_success_event_once_the_order_is_charged(sandbox, juspay_conn):
    sandbox.orders["T-1"] = "PENDING_VBV"
    loop_polls = []

    def pay_later():
        time.sleep(0.2)
        loop_polls.append(len(sandbox.requests))
        sandbox.orders["T-1"] = "CHARGED"

    import threading

    threading.Thread(target=pay_later).start()
    event = first_event(make())
    assert event == {**event, "status": "success", "order_status": "CHARGED", "order_id": "T-1"}
    assert loop_polls and loop_polls[0] >= 2, "it polled while the order was pending"


@pytest.mark.parametrize(
    "status, outcome", [("AUTHORIZATION_FAILED", "failed"), ("NOT_FOUND", "failed"), ("NEW", "timeout")]
)
def test_failed_and_timeout_events(sandbox, juspay_conn, status, outcome):
    sandbox.orders["T-1"] = status
    event = first_event(make(end_time=time.time() + 0.3))
    assert event["status"] == outcome and event["order_status"] == status
    assert event["message"]


def test_error_event_when_the_key_is_refused(sandbox, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_JUSPAY_DEFAULT", conn_json(sandbox.base_url).replace("SECRET", "REVOKED")
    )
    event = first_event(make())
    assert event["status"] == "error" and "AuthError" in event["message"]
    assert "SECRET" not in event["message"]
