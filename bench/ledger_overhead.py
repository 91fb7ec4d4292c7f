"""Case 4: what the delivery ledger costs in throughput, at 20 ms latency and at none."""

from __future__ import annotations

import sqlite3
import tempfile
from contextlib import closing
from functools import partial
from pathlib import Path

from airflow_provider_juspay.fulfilment import FulfilmentRecord
from airflow_provider_juspay.ledger import Ledger
from airflow_provider_juspay.sync.engine import push
from airflow_provider_juspay.sync.pacer import Pacer
from airflow_provider_juspay.sync.report import ReportBuilder
from bench.support import MERCHANT_ID, client, measure, rows, sandbox, table


def one(server, n: int, prefix: str, ledger_path: Path | None, concurrency: int = 32) -> float:
    with client(server, pool_size=concurrency) as c:
        pacer = Pacer(None)
        conn = sqlite3.connect(ledger_path) if ledger_path else None
        ledger = None
        if conn is not None:
            ledger = Ledger(conn, merchant_id=MERCHANT_ID)
            ledger.ensure_table()
        with closing(conn) if conn else _nothing():
            return measure(
                n,
                lambda: push(
                    rows(n, prefix),
                    report=ReportBuilder(),
                    make_record=FulfilmentRecord.from_mapping,
                    send=partial(c.fulfil, pacer=pacer),
                    max_concurrency=concurrency,
                    ledger=ledger,
                ),
            ).per_s


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def run(n: int) -> str:
    folder = Path(tempfile.mkdtemp(prefix="juspay-bench-ledger-"))
    lines = []
    for latency in (20.0, 0.0):
        with sandbox(latency_ms=latency) as server:
            without = one(server, n, f"nol{latency:g}", None)
            with_ledger = one(server, n, f"l{latency:g}", folder / f"ledger{latency:g}.db")
        lines.append(
            (
                f"{latency:g} ms latency",
                with_ledger,
                without,
                with_ledger / without,
                1 - with_ledger / without,
            )
        )
    return table(
        f"4. Ledger overhead (SQLite ledger, max_concurrency=32, {n} records)",
        ("latency", "with ledger/s", "without/s", "ratio", "cost"),
        lines,
    )
