"""Case 2: client CPU per request, against bare keep-alive loops over http.client, urllib3 and requests."""

from __future__ import annotations

import base64
import http.client
from urllib.parse import urlencode, urlsplit

import requests
import urllib3

from bench.support import API_KEY, MERCHANT_ID, measure, push_records, sandbox, table

BODY = urlencode({"fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"})
HEADERS = {
    "Authorization": "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode(),
    "x-merchantid": MERCHANT_ID,
    "Content-Type": "application/x-www-form-urlencoded",
}


def engine(server, n: int, concurrency: int):
    return push_records(server, n, concurrency, f"cpu{concurrency}")


def bare_http_client(server, n: int):
    host = urlsplit(server.base_url)

    def work():
        conn = http.client.HTTPConnection(host.hostname, host.port)
        for i in range(n):
            conn.request("POST", f"/orders/hc-{i}/fulfillment", BODY, HEADERS)
            response = conn.getresponse()
            response.read()
            assert response.status == 200
        conn.close()

    return measure(n, work)


def bare_urllib3(server, n: int):
    host = urlsplit(server.base_url)

    def work():
        with urllib3.HTTPConnectionPool(host.hostname, host.port, maxsize=1) as pool:
            for i in range(n):
                assert (
                    pool.urlopen("POST", f"/orders/u3-{i}/fulfillment", body=BODY, headers=HEADERS).status
                    == 200
                )

    return measure(n, work)


def session(server, n: int, trust_env: bool):
    def work():
        with requests.Session() as s:
            s.trust_env = trust_env
            for i in range(n):
                url = f"{server.base_url}/orders/rs{int(trust_env)}-{i}/fulfillment"
                assert s.post(url, data=BODY, headers=HEADERS, timeout=30).status_code == 200

    return measure(n, work)


def run(n: int, profile: bool = False) -> str:
    with sandbox(latency_ms=0) as server:
        floor = bare_http_client(server, n)
        measured = [
            ("bulk engine, max_concurrency=16", engine(server, n, 16)),
            ("bulk engine, max_concurrency=1", engine(server, n, 1)),
            ("http.client keep-alive loop (the floor)", floor),
            ("urllib3 pool loop", bare_urllib3(server, n)),
            ("requests.Session loop, trust_env=False", session(server, n, trust_env=False)),
            ("requests.Session loop, default", session(server, n, trust_env=True)),
        ]
        profile_text = _profile(server, n) if profile else ""
    lines = [
        (name, m.per_cpu_s, m.cpu_s / m.records * 1000, floor.per_cpu_s, m.per_cpu_s / floor.per_cpu_s)
        for name, m in measured
    ]
    out = table(
        f"2. Client CPU per request, no latency, {n} records (user+sys of the client process; sandbox apart)",
        ("client", "records/CPU-s", "ms CPU/record", "http.client", "share of floor"),
        lines,
    )
    return out + profile_text


def _profile(server, n: int) -> str:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    with profiler:
        engine(server, n, 16)
    return "\n  Where the engine's time goes (pyinstrument, all threads):\n" + profiler.output_text(
        unicode=False, color=False, show_all=False
    )
