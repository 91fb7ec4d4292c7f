"""Case 5: how long a full outage (every request a 503) holds a run, with the circuit breaker and without."""

from __future__ import annotations

import json
import time
import urllib.request

from airflow_provider_juspay.fulfilment import FulfilmentRecord
from airflow_provider_juspay.sync.breaker import CircuitBreaker
from airflow_provider_juspay.sync.control import RunControl
from airflow_provider_juspay.sync.engine import push
from airflow_provider_juspay.sync.pacer import Pacer
from airflow_provider_juspay.sync.report import ReportBuilder
from airflow_provider_juspay.sync.settings import PushSettings
from bench.support import client, rows, sandbox, table

CONCURRENCY = 16


def ended_after(server, n: int, breaker: CircuitBreaker | None, prefix: str) -> tuple[float, int]:
    """Seconds until the run ended, and the requests it made, with the documented retry defaults."""
    before = _requests(server)
    with client(server, pool_size=CONCURRENCY) as c:
        control = RunControl(pacer=Pacer(None), breaker=breaker, abort=c.abort_in_flight)
        started = time.monotonic()
        push(
            rows(n, prefix),
            report=ReportBuilder(),
            make_record=FulfilmentRecord.from_mapping,
            client=c,
            settings=PushSettings(max_concurrency=CONCURRENCY),
            control=control,
        )
        return time.monotonic() - started, _requests(server) - before


def _requests(server) -> int:
    with urllib.request.urlopen(f"{server.base_url}/__sandbox/state", timeout=10) as answer:
        return sum(json.load(answer)["statuses"].values())


def run(sizes: tuple[int, ...], grinding_n: int) -> str:
    lines = []
    with sandbox(latency_ms=20, error_rate=1.0) as server:
        ground_s, ground_requests = ended_after(server, grinding_n, None, "grind")
        per_row = ground_s / grinding_n
        lines.append((f"no breaker, {grinding_n} rows", ground_s, ground_requests, per_row * 1000, 1.0))
        for n in sizes:
            seconds, requests = ended_after(server, n, CircuitBreaker(), f"b{n}")
            lines.append(
                (f"breaker (defaults), {n} rows", seconds, requests, seconds / n, per_row * n / seconds)
            )
    return table(
        f"5. A full outage: 100% 503 at 20 ms, default retries, max_concurrency={CONCURRENCY}",
        ("run", "ended after s", "requests", "ms per row", "x sooner than no breaker"),
        lines,
    )
