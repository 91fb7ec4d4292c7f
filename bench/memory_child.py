"""Run in its own process by the memory case: stream a warehouse table into the sandbox, print peak RSS."""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import sqlite3
import time

from airflow_provider_juspay.fulfilment import FulfilmentRecord
from airflow_provider_juspay.sync.control import RunControl
from airflow_provider_juspay.sync.engine import push
from airflow_provider_juspay.sync.files import read_files
from airflow_provider_juspay.sync.pacer import Pacer
from airflow_provider_juspay.sync.report import ReportBuilder
from airflow_provider_juspay.sync.settings import PushSettings
from airflow_provider_juspay.sync.sources import stream_query
from bench.support import Server, client


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", help="SQLite file")
    parser.add_argument("--pg-uri", help="PostgreSQL URI (instead of --db)")
    parser.add_argument("--file", help="a CSV, JSON Lines or Parquet file (instead of --db)")
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--base-url", required=True)
    args = parser.parse_args()
    if args.file:
        path = args.file
        opened = [(path, lambda: open(path, "rb"))]  # noqa: SIM115 (read_files closes it)
        rows = itertools.islice(read_files(opened, on_error=print), args.rows)
    elif args.pg_uri:
        import psycopg2

        db = psycopg2.connect(args.pg_uri)
        rows = stream_query(db, "SELECT * FROM fulfilments WHERE id <= %s ORDER BY id", [args.rows])
    else:
        db = sqlite3.connect(args.db)
        rows = stream_query(db, "SELECT * FROM fulfilments WHERE id <= ? ORDER BY id", [args.rows])
    started = time.perf_counter()
    with client(Server(args.base_url, 0), pool_size=32) as c:
        control = RunControl(pacer=Pacer(None))
        report = push(
            rows,
            report=ReportBuilder(),
            make_record=FulfilmentRecord.from_mapping,
            client=c,
            control=control,
            settings=PushSettings(max_concurrency=32),
        ).report.to_dict()
    peak_kb = _peak_rss_kb()
    print(json.dumps({"rows": report["total"], "sent": report["counts"]["sent"], "peak_rss_kb": peak_kb,
                      "seconds": time.perf_counter() - started}))  # fmt: skip


def _peak_rss_kb() -> int:
    """This process's own high-water mark. Not ru_maxrss: Linux keeps that across exec, so a child
    would report its parent's peak (a parent that had just written a Parquet file, say)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


if __name__ == "__main__":
    main()
