"""Case 4: what the delivery ledger costs in throughput, at 20 ms latency and at none."""

from __future__ import annotations

import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

from airflow_provider_juspay.sync.ledger import Ledger
from bench.support import MERCHANT_ID, push_records, sandbox, table

CONCURRENCY = 32


def with_ledger(server, n: int, prefix: str, path: Path) -> float:
    with closing(sqlite3.connect(path)) as conn:
        ledger = Ledger(conn, merchant_id=MERCHANT_ID)
        ledger.ensure_table()
        return push_records(server, n, CONCURRENCY, prefix, ledger=ledger).per_s


def run(n: int) -> str:
    folder = Path(tempfile.mkdtemp(prefix="juspay-bench-ledger-"))
    lines = []
    for latency in (20.0, 0.0):
        with sandbox(latency_ms=latency) as server:
            without = push_records(server, n, CONCURRENCY, f"nol{latency:g}").per_s
            ledgered = with_ledger(server, n, f"l{latency:g}", folder / f"ledger{latency:g}.db")
        lines.append(
            (f"{latency:g} ms latency", ledgered, without, ledgered / without, 1 - ledgered / without)
        )
    return table(
        f"4. Ledger overhead (SQLite ledger, max_concurrency={CONCURRENCY}, {n} records)",
        ("latency", "with ledger/s", "without/s", "ratio", "cost"),
        lines,
    )
