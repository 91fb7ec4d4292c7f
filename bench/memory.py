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


def run(sizes: tuple[int, ...]) -> str:
    path = Path(tempfile.mkdtemp(prefix="juspay-bench-mem-")) / "warehouse.db"
    seed(path, max(sizes))
    results = []
    for n in sizes:
        with sandbox(latency_ms=0) as server:  # a fresh sandbox per size, so its state stays small
            done = subprocess.run(
                [sys.executable, "-m", "bench.memory_child", "--db", str(path), "--rows", str(n),
                 "--base-url", server.base_url],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
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
        "3. Peak RSS of the task process, SQLite warehouse -> sandbox (own process per size)",
        ("rows streamed", "peak MiB", f"at {sizes[0]:,}", "ratio", "records/s"),
        lines,
    )
