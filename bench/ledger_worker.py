"""One push with a ledger, in a process of its own: what the chaos case and the pause/hang tests start,
stop, pause and kill (python -m bench.ledger_worker --help).

It pushes rows ``ORD-<first>`` .. ``ORD-<first + rows - 1>`` (one INITIATE_REFUND each) to the sandbox,
with the ledger on SQLite (a path) or PostgreSQL (a URI), and prints one line ``REPORT {json}`` at the
end. Exit status: 0 green (every row delivered, or held by a live run), 1 not green, 2 an error.
Its requests carry ``User-Agent: juspay-run/<name>``, so the sandbox can tell whose POST it was.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sqlite3
import sys
from collections.abc import Callable, Iterator
from typing import Any

from airflow_provider_juspay.client import JuspayClient
from airflow_provider_juspay.config import ClientConfig, RetryPolicy, Timeouts
from airflow_provider_juspay.fulfilment import FulfilmentRecord
from airflow_provider_juspay.sync.control import RunControl
from airflow_provider_juspay.sync.engine import push
from airflow_provider_juspay.sync.ledger import Ledger, RunInfo
from airflow_provider_juspay.sync.report import ReportBuilder
from airflow_provider_juspay.sync.settings import PushSettings

MERCHANT_ID = "merchant_tests"
API_KEY = "sk_test_SECRET_9f8e7d6c5b4a3921"


def rows(first: int, n: int) -> Iterator[dict[str, Any]]:
    for i in range(first, first + n):
        yield {
            "order_id": f"ORD-{i}",
            "fulfillment_status": "SUCCESS",
            "fulfillment_command": "INITIATE_REFUND",
            "fulfillment_id": f"F-{i}",
        }


def connector(target: str) -> Callable[[], Any]:
    """Opens a connection to the ledger database: a SQLite path, or a PostgreSQL URI."""
    if target.startswith("postgresql://"):
        import psycopg2

        return lambda: psycopg2.connect(target, connect_timeout=5)
    return lambda: sqlite3.connect(target, check_same_thread=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sandbox", required=True, help="the sandbox's base URL")
    parser.add_argument("--ledger", required=True, help="SQLite path or PostgreSQL URI")
    parser.add_argument("--heartbeat-ledger", help="another address of the same database, for the heartbeat")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--lease", type=float, default=60.0)
    parser.add_argument("--wait-limit", type=float, default=900.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--name", default="run")
    parser.add_argument("--run-id", default="run-1")
    parser.add_argument("--try-number", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)

    config = ClientConfig(
        base_url=args.sandbox,
        merchant_id=MERCHANT_ID,
        api_key=API_KEY,
        timeouts=Timeouts(connect=2.0, read=5.0, deadline=6.0),
        retry=RetryPolicy(max_attempts=3, initial_wait=0.05, max_wait=0.2),
        pool_size=args.concurrency,
    )
    client = JuspayClient(config)
    client._headers["User-Agent"] = f"juspay-run/{args.name}"  # a harness: whose POST it was
    control = RunControl(abort=client.abort_in_flight)
    signal.signal(signal.SIGTERM, lambda *_: control.cancel("SIGTERM"))
    ledger = Ledger(
        connector(args.ledger)(),
        merchant_id=MERCHANT_ID,
        run=RunInfo("chaos", args.run_id, "push", args.try_number),
        lease_s=args.lease,
        wait_limit_s=args.wait_limit,
        connect=connector(args.heartbeat_ledger or args.ledger),
    )
    try:
        ledger.ensure_table()
        pushed = push(
            rows(args.first, args.rows),
            report=ReportBuilder(),
            make_record=FulfilmentRecord.from_mapping,
            client=client,
            settings=PushSettings(max_concurrency=args.concurrency),
            ledger=ledger,
            control=control,
        )
    except Exception as exc:
        print(f"ERROR {type(exc).__name__}: {exc}", flush=True)
        return 2
    finally:
        ledger.close()
        client.close()
    report = pushed.report
    print("REPORT " + json.dumps(report.to_dict()), flush=True)
    return 0 if report.verdict() is None else 1


if __name__ == "__main__":
    sys.exit(main())
