"""Case 3: peak RSS of the task process streaming 10k .. 1M rows (SQLite, PostgreSQL, CSV and Parquet
files): a flat curve."""

from __future__ import annotations

import csv
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


def seed_files(folder: Path, n: int) -> list[tuple[str, Path]]:
    """The same rows as a CSV file and, when pyarrow is installed, a Parquet file."""
    columns = (
        "id",
        "order_id",
        "fulfillment_status",
        "fulfillment_command",
        "fulfillment_time",
        "fulfillment_data",
    )

    def values(i: int) -> tuple:
        return (i, f"MEM-{i:08d}", "SUCCESS", "NO_ACTION", "2026-11-26T10:00:00", f'{{"awb":"AWB{i:09d}"}}')

    csv_path = folder / "fulfilments.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(values(i) for i in range(1, n + 1))
    files = [("CSV file", csv_path)]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return files
    parquet_path = folder / "fulfilments.parquet"
    with pq.ParquetWriter(
        parquet_path, pa.schema([(c, pa.int64() if c == "id" else pa.string()) for c in columns])
    ) as w:
        for start in range(1, n + 1, 100_000):
            chunk = [values(i) for i in range(start, min(n, start + 99_999) + 1)]
            w.write_table(pa.table({c: [row[k] for row in chunk] for k, c in enumerate(columns)}))
    return [*files, ("Parquet file", parquet_path)]


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
    folder = Path(tempfile.mkdtemp(prefix="juspay-bench-mem-"))
    path = folder / "warehouse.db"
    seed(path, max(sizes))
    out = _table("SQLite", curve(["--db", str(path)], sizes), sizes)
    for kind, file in seed_files(folder, max(sizes)):
        out += "\n" + _table(kind, curve(["--file", str(file)], sizes), sizes, source="source")
    if postgres_uri:
        seed_postgres(postgres_uri, max(sizes))
        out += "\n" + _table(
            "PostgreSQL (server-side cursor)", curve(["--pg-uri", postgres_uri], sizes), sizes
        )
    return out


def _table(warehouse: str, results: list[dict], sizes: tuple[int, ...], source: str = "warehouse") -> str:
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
        f"3. Peak RSS of the task process, {warehouse} {source} -> sandbox (own process per size)",
        ("rows streamed", "peak MiB", f"at {sizes[0]:,}", "ratio", "records/s"),
        lines,
    )
