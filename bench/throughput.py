"""Case 1: throughput at realistic latency against the ways users push records today."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from airflow_provider_juspay.sync.dispatcher import DEFAULT_MAX_CONCURRENCY
from bench.support import API_KEY, MERCHANT_ID, measure, push_records, sandbox, table

AUTH = requests.auth.HTTPBasicAuth(API_KEY, "")
FORM = {"fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"}
HEADERS = {"x-merchantid": MERCHANT_ID}


def bulk(server, n: int, concurrency: int, prefix: str) -> float:
    return push_records(server, n, concurrency, prefix).per_s


def naive_loop(server, n: int, prefix: str) -> float:
    """What a PythonOperator often holds: requests.post per record, no session."""
    return _loop(server, n, prefix, requests.post)


def session_loop(server, n: int, prefix: str) -> float:
    with requests.Session() as session:
        return _loop(server, n, prefix, session.post)


def _loop(server, n: int, prefix: str, post) -> float:
    def work():
        for i in range(n):
            url = f"{server.base_url}/orders/{prefix}-{i}/fulfillment"
            post(url, data=FORM, headers=HEADERS, auth=AUTH, timeout=30).raise_for_status()

    return measure(n, work).per_s


def mapped_http_operator(server, sizes: tuple[int, int]) -> tuple[float, float]:
    """HttpOperator.partial().expand() under `airflow dags test`: per-record seconds from two sizes.

    The slope between the two sizes leaves out Airflow's fixed start-up.
    """
    home = Path(tempfile.mkdtemp(prefix="juspay-bench-airflow-"))
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(Path(__file__).parent / "dags"),
        "AIRFLOW_CONN_JUSPAY_HTTP": json.dumps(
            {"conn_type": "http", "host": "127.0.0.1", "port": server.port}
        ),
        "BENCH_AUTHORIZATION": AUTH(requests.Request("POST", "http://x").prepare()).headers["Authorization"],
    }
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True
    )
    times = []
    for n in sizes:
        env["BENCH_MAPPED_N"] = str(n)
        env["BENCH_PREFIX"] = f"mapped{n}"
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "airflow", "dags", "test", "bench_http_mapped"],
            env=env,
            capture_output=True,
            text=True,
        )
        times.append(time.perf_counter() - started)
        if done.returncode != 0 or "state=success" not in done.stdout + done.stderr:
            raise RuntimeError(
                f"the mapped HttpOperator run failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
            )
    per_record = (times[1] - times[0]) / (sizes[1] - sizes[0])
    return 1.0 / per_record, times[1]


def run(
    n: int, latency_ms: float, naive_n: int, mapped_sizes: tuple[int, int], sweep: tuple[int, ...]
) -> str:
    with sandbox(latency_ms=latency_ms) as server:
        default = bulk(server, n, DEFAULT_MAX_CONCURRENCY, "default")
        swept = {c: bulk(server, n, c, f"c{c}") for c in sweep}
        naive = naive_loop(server, naive_n, "naive")
        session = session_loop(server, naive_n, "session")
        mapped, mapped_total = mapped_http_operator(server, mapped_sizes)
    best_c = max(swept, key=swept.get)
    at32 = swept.get(32)
    ceiling32 = 32 / (latency_ms / 1000)
    lines = [
        (
            'bulk engine, fixed 16 (pacing="fixed", 0.2\'s default)',
            default,
            naive,
            default / naive,
            mapped,
            default / mapped,
        ),
        *(
            (f"bulk engine, max_concurrency={c}", v, naive, v / naive, mapped, v / mapped)
            for c, v in sorted(swept.items())
        ),
        ("requests.Session loop (sequential)", session, naive, session / naive, mapped, session / mapped),
        ("requests.post per record (naive loop)", naive, naive, 1.0, mapped, naive / mapped),
        (f"HttpOperator mapped x{mapped_sizes[1]} (dags test)", mapped, naive, mapped / naive, mapped, 1.0),
    ]
    out = table(
        f"1. Throughput at {latency_ms:g} ms latency, {n} records (naive/session loops: {naive_n}; "
        f"mapped: slope between {mapped_sizes[0]} and {mapped_sizes[1]} tasks)",
        ("way of pushing", "records/s", "naive", "x naive", "mapped", "x mapped"),
        lines,
    )
    share = f"{at32 / ceiling32:.0%}" if at32 else "n/a"
    best_ceiling = best_c / (latency_ms / 1000)
    out += (
        f"\n  Ceiling max_concurrency/latency at 32: {ceiling32:,.0f}/s; measured {at32 or 0:,.0f}/s"
        f" = {share} of it.\n  Best max_concurrency in the sweep: {best_c}"
        f" ({swept[best_c]:,.0f}/s of a {best_ceiling:,.0f}/s ceiling)."
        f"\n  The {mapped_sizes[1]}-task mapped run took {mapped_total:.1f}s in all, with Airflow start-up."
    )
    return out
