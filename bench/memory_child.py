"""Run in its own process by the memory case: stream a warehouse table into the sandbox, print peak RSS."""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import time

from airflow_provider_juspay.fulfilment import FulfilmentRecord
from airflow_provider_juspay.sync.control import RunControl
from airflow_provider_juspay.sync.engine import push
from airflow_provider_juspay.sync.pacer import Pacer
from airflow_provider_juspay.sync.report import ReportBuilder
from airflow_provider_juspay.sync.sources import stream_query
from bench.support import Server, client


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", help="SQLite file")
    parser.add_argument("--pg-uri", help="PostgreSQL URI (instead of --db)")
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--base-url", required=True)
    args = parser.parse_args()
    if args.pg_uri:
        import psycopg2

        db = psycopg2.connect(args.pg_uri)
        sql = "SELECT * FROM fulfilments WHERE id <= %s ORDER BY id"
    else:
        db = sqlite3.connect(args.db)
        sql = "SELECT * FROM fulfilments WHERE id <= ? ORDER BY id"
    started = time.perf_counter()
    with client(Server(args.base_url, 0), pool_size=32) as c:
        control = RunControl(pacer=Pacer(None))
        report = push(
            stream_query(db, sql, [args.rows]),
            report=ReportBuilder(),
            make_record=FulfilmentRecord.from_mapping,
            send=lambda record: c.fulfil(record, control=control),
            control=control,
            max_concurrency=32,
        ).report.to_dict()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rows": report["total"], "sent": report["counts"]["sent"], "peak_rss_kb": peak_kb,
                      "seconds": time.perf_counter() - started}))  # fmt: skip


if __name__ == "__main__":
    main()
