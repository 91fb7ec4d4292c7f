"""Case 3: peak RSS of the task process streaming 10k .. 1M rows from a SQLite warehouse: a flat curve."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tempfile
from contextlib import closing
from pathlib import Path

from bench.support import sandbox, table


def seed(path: Path, n: int) -> None:
    with closing(sqlite3.connect(path)) as db:
        db.execute(
            "CREATE TABLE fulfilments (id INTEGER PRIMARY KEY, order_id TEXT, fulfillment_status TEXT, "
            "fulfillment_command TEXT, fulfillment_time TEXT, fulfillment_data TEXT)"
        )
        db.executemany(
            "INSERT INTO fulfilments VALUES (?, ?, 'SUCCESS', 'NO_ACTION', '2026-11-26T10:00:00', ?)",
            ((i, f"MEM-{i:08d}", f'{{"awb":"AWB{i:09d}"}}') for i in range(1, n + 1)),
        )
        db.commit()


def seed_postgres(uri: str, n: int) -> None:
    import psycopg2

    with closing(psycopg2.connect(uri)) as db, db.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS fulfilments")
        cursor.execute(
            "CREATE TABLE fulfilments AS SELECT g AS id, 'MEM-' || lpad(g::text, 8, '0') AS order_id, "
            "'SUCCESS' AS fulfillment_status, 'NO_ACTION' AS fulfillment_command, "
            "'2026-11-26T10:00:00' AS fulfillment_time, '{\"awb\":\"AWB' || g || '\"}' AS fulfillment_data "
            "FROM generate_series(1, %s) AS g",
            [n],
        )
        cursor.execute("ALTER TABLE fulfilments ADD PRIMARY KEY (id)")
        db.commit()


def curve(source: list[str], sizes: tuple[int, ...]) -> list[dict]:
    """Peak RSS of one child process per size, each against a fresh sandbox (its state stays small)."""
    results = []
    for n in sizes:
        with sandbox(latency_ms=0) as server:
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.memory_child",
                    *source,
                    "--rows",
                    str(n),
                    "--base-url",
                    server.base_url,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


def run(sizes: tuple[int, ...], postgres_uri: str | None = None) -> str:
    path = Path(tempfile.mkdtemp(prefix="juspay-bench-mem-")) / "warehouse.db"
    seed(path, max(sizes))
    out = _table("SQLite", curve(["--db", str(path)], sizes), sizes)
    if postgres_uri:
        seed_postgres(postgres_uri, max(sizes))
        out += "\n" + _table(
            "PostgreSQL (server-side cursor)", curve(["--pg-uri", postgres_uri], sizes), sizes
        )
    return out


def _table(warehouse: str, results: list[dict], sizes: tuple[int, ...]) -> str:
    base = results[0]["peak_rss_kb"]
    lines = [
        (
            f"{r['rows']:,} rows",
            r["peak_rss_kb"] / 1024,
            base / 1024,
            r["peak_rss_kb"] / base,
            r["rows"] / r["seconds"],
        )
        for r in results
    ]
    return table(
        f"3. Peak RSS of the task process, {warehouse} warehouse -> sandbox (own process per size)",
        ("rows streamed", "peak MiB", f"at {sizes[0]:,}", "ratio", "records/s"),
        lines,
    )
