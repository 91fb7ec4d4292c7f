"""Transports: both speak to the sandbox; the proxy path is chosen only when a proxy applies."""

from __future__ import annotations

import base64
import socket

from airflow_provider_juspay.client import _transport_for
from airflow_provider_juspay.config import ClientConfig, Timeouts
from airflow_provider_juspay.errors import TransportError
from airflow_provider_juspay.transport import SessionTransport, StdlibTransport
from tests.helpers import API_KEY, MERCHANT_ID

HEADERS = {
    "Authorization": "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode(),
    "x-merchantid": MERCHANT_ID,
    "Content-Type": "application/x-www-form-urlencoded",
}
BODY = "fulfillment_status=SUCCESS&fulfillment_command=NO_ACTION"


def test_stdlib_transport_keeps_one_connection_alive(sandbox):
    transport = StdlibTransport(sandbox.base_url, timeouts=Timeouts(), pool_size=4)
    answers = [
        transport.exchange("POST", f"/orders/K-{i}/fulfillment", BODY, HEADERS, f"K-{i}") for i in range(5)
    ]
    assert [a.status for a in answers] == [200] * 5
    assert len(transport._idle) == 1, "the same connection served every request"
    transport.close()


def test_a_connection_closed_while_idle_is_replaced_without_an_error(sandbox):
    transport = StdlibTransport(sandbox.base_url, timeouts=Timeouts(), pool_size=4)
    transport.exchange("POST", "/orders/S-1/fulfillment", BODY, HEADERS, "S-1")
    transport._idle[0].sock.shutdown(socket.SHUT_RDWR)  # as when a server drops an idle keep-alive connection
    assert transport.exchange("POST", "/orders/S-2/fulfillment", BODY, HEADERS, "S-2").status == 200


def test_session_transport_speaks_the_same(sandbox):
    transport = SessionTransport(sandbox.base_url, timeouts=Timeouts(), pool_size=4, proxies={})
    answer = transport.exchange("POST", "/orders/P-1/fulfillment", BODY, HEADERS, "P-1")
    assert answer.status == 200 and b'"SUCCESS"' in answer.data
    transport.close()


def test_proxy_from_the_environment_selects_the_session_transport(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    remote = ClientConfig(base_url="https://api.juspay.in", merchant_id="m", api_key="k")
    assert isinstance(_transport_for(remote), SessionTransport)
    loopback = ClientConfig(base_url="http://127.0.0.1:9", merchant_id="m", api_key="k")
    assert isinstance(_transport_for(loopback), StdlibTransport), (
        "the sandbox is never reached through a proxy"
    )


def test_no_request_stays_on_the_deadline_watch_after_it_ends(sandbox):
    transport = StdlibTransport(sandbox.base_url, timeouts=Timeouts(read=0.3, deadline=0.5), pool_size=4)
    sandbox.script("drop", 2)
    sandbox.script("hang", 1)
    outcomes = []
    for i in range(6):
        try:
            outcomes.append(
                transport.exchange("POST", f"/orders/W-{i}/fulfillment", BODY, HEADERS, f"W-{i}").status
            )
        except TransportError as exc:
            outcomes.append(exc.error_code)
    assert outcomes[:3] == ["CONNECTION_ERROR", "CONNECTION_ERROR", "TIMEOUT"] and outcomes[3:] == [200] * 3
    assert transport._flights == set(), "every flight landed, failed or not"
    transport.close()
