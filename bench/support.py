"""What every benchmark case shares: a sandbox in its own process, machine facts, tables, clients."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from airflow_provider_juspay.client import JuspayClient
from airflow_provider_juspay.config import ClientConfig

API_KEY = "sk_bench_not_a_real_key_1"
MERCHANT_ID = "bench_merchant"


@dataclass
class Server:
    base_url: str
    port: int


@contextmanager
def sandbox(latency_ms: float = 0.0, **flags: object) -> Iterator[Server]:
    """The bundled sandbox in a process of its own, so the client's CPU time is the client's alone."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = [
        sys.executable, "-m", "airflow_provider_juspay.testing.sandbox", "--port", str(port),
        "--api-key", API_KEY, "--merchant-id", MERCHANT_ID, "--latency-ms", str(latency_ms),
    ]  # fmt: skip
    if not flags.pop("record", False):
        args.append("--no-record")
    for name, value in flags.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if "listening" not in line:
            raise RuntimeError(f"the sandbox did not start: {line!r}")
        yield Server(f"http://127.0.0.1:{port}", port)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def client(server: Server, pool_size: int = 32) -> JuspayClient:
    return JuspayClient(
        ClientConfig(base_url=server.base_url, merchant_id=MERCHANT_ID, api_key=API_KEY, pool_size=pool_size)
    )


def push_records(server: Server, n: int, concurrency: int, prefix: str, ledger: object = None) -> Measure:
    """The bulk engine as the operator runs it (validation, pacer, dispatcher, report), measured."""

    from airflow_provider_juspay.fulfilment import FulfilmentRecord
    from airflow_provider_juspay.sync.control import RunControl
    from airflow_provider_juspay.sync.engine import push
    from airflow_provider_juspay.sync.pacer import Pacer
    from airflow_provider_juspay.sync.report import ReportBuilder
    from airflow_provider_juspay.sync.settings import PushSettings

    with client(server, pool_size=concurrency) as c:
        control = RunControl(pacer=Pacer(None))
        return measure(
            n,
            lambda: push(
                rows(n, prefix),
                report=ReportBuilder(),
                make_record=FulfilmentRecord.from_mapping,
                client=c,
                control=control,
                settings=PushSettings(max_concurrency=concurrency),
                ledger=ledger,
            ),
        )


def rows(n: int, prefix: str) -> Iterator[dict]:
    for i in range(n):
        yield {
            "order_id": f"{prefix}-{i}",
            "fulfillment_status": "SUCCESS",
            "fulfillment_command": "NO_ACTION",
        }


@dataclass
class Measure:
    records: int
    wall_s: float
    cpu_s: float

    @property
    def per_s(self) -> float:
        return self.records / self.wall_s if self.wall_s else 0.0

    @property
    def per_cpu_s(self) -> float:
        return self.records / self.cpu_s if self.cpu_s else 0.0


def measure(records: int, work: Callable[[], object]) -> Measure:
    """Wall and CPU (user + sys of this process) time of ``work``."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    work()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Measure(records, wall, cpu)


def machine() -> str:
    try:
        from importlib.metadata import version

        airflow = version("apache-airflow")
    except Exception:
        airflow = "?"
    return (
        f"{os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}, "
        f"Airflow {airflow}, {platform.system()} {platform.release()}"
    )


def table(title: str, header: tuple[str, ...], rows_: list[tuple]) -> str:
    """A plain-text table, numbers right-aligned."""
    cells = [tuple(_cell(v) for v in row) for row in rows_]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    lines = [
        f"\n{title}",
        "  "
        + "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True))
        ),
    ]
    lines.append("  " + "  ".join("-" * w for w in widths))
    for row in cells:
        lines.append(
            "  "
            + "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def fresh_postgres_database(uri: str, name: str) -> dict[str, Any]:
    """Drop and create database ``name`` on the server of ``uri``; its connection parameters."""
    import psycopg2

    admin = psycopg2.connect(uri)
    try:
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name}")
            cursor.execute(f"CREATE DATABASE {name}")
    finally:
        admin.close()
    return {**psycopg2.extensions.parse_dsn(uri), "dbname": name}


def postgres_conn_json(dsn: dict[str, Any], **extra: object) -> str:
    """An ``AIRFLOW_CONN_...`` value (JSON) of a ``postgres`` connection to ``dsn``'s database."""
    conn: dict[str, Any] = {
        "conn_type": "postgres",
        "host": dsn.get("host", "127.0.0.1"),
        "port": int(dsn.get("port", 5432)),
        "login": dsn.get("user", "postgres"),
        "schema": dsn["dbname"],
    }
    if extra:
        conn["extra"] = extra
    return json.dumps(conn)
