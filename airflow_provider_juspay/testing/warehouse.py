"""A small warehouse of fulfilments (good, unknown to Juspay, and bad rows) for the demo and tests."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from airflow_provider_juspay.fulfilment import ORDER_FIELDS

__all__ = ["COLUMNS", "TABLE_DDL", "SeededDay", "demo_rows", "seed_warehouse"]

TABLE_DDL = """
CREATE TABLE IF NOT EXISTS fulfilments (
    id INTEGER PRIMARY KEY,
    order_id TEXT,
    fulfillment_status TEXT,
    fulfillment_command TEXT,
    fulfillment_time TEXT,
    fulfillment_id TEXT,
    fulfillment_data TEXT,
    routing_id TEXT,
    customer_email TEXT,
    updated_at TEXT NOT NULL
)
"""
COLUMNS = ("id", *ORDER_FIELDS, "customer_email", "updated_at")
#: Bad values a real warehouse holds; each row of this kind breaks exactly one record rule.
BAD_VALUES: tuple[dict[str, Any], ...] = (
    {"order_id": None},
    {"fulfillment_status": "DELIVERED"},
    {"fulfillment_command": "SHIP"},
    {"fulfillment_time": "26/11/2026 10:00"},
    {"fulfillment_data": "x" * 20_000},
)
COMMANDS = ("NO_ACTION", "NO_ACTION", "NO_ACTION", "INVOICE", "INITIATE_REFUND")


@dataclass
class SeededDay:
    """What was written: row counts by kind, and the order ids Juspay must not know."""

    good: int = 0
    unknown: int = 0
    bad: int = 0
    unknown_ids: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.good + self.unknown + self.bad


def demo_rows(
    day: date, n: int, *, first_id: int = 1, unknown_every: int = 40, bad_every: int = 150, seed: int = 0
) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """Yield ``(kind, row)`` for ``n`` rows updated during ``day`` (UTC); kind is good, unknown or bad."""
    rng = random.Random(seed)
    start = datetime.combine(day, time(), tzinfo=timezone.utc)
    for i in range(n):
        row_id = first_id + i
        when = start + timedelta(seconds=int(i * 86_000 / max(n, 1)))
        kind = "bad" if i % bad_every == bad_every - 1 else "unknown" if i % unknown_every == 7 else "good"
        prefix = "UNKNOWN" if kind == "unknown" else "ORD"
        values: dict[str, Any] = {
            "id": row_id,
            "order_id": f"{prefix}-{day:%Y%m%d}-{row_id:07d}",
            "fulfillment_status": "SUCCESS",
            "fulfillment_command": COMMANDS[rng.randrange(len(COMMANDS))],
            "fulfillment_time": (when - timedelta(minutes=rng.randrange(5, 600))).isoformat(),
            "fulfillment_id": f"AWB{row_id:09d}",
            "fulfillment_data": f'{{"courier":"BlueDart","awb":"AWB{row_id:09d}"}}',
            "routing_id": f"CUST-{rng.randrange(1, 5000):05d}",
            "customer_email": f"customer{row_id}@example.com",
            "updated_at": when.isoformat(),
        }
        if kind == "bad":
            values.update(BAD_VALUES[(i // bad_every) % len(BAD_VALUES)])
        yield kind, tuple(values[c] for c in COLUMNS)


def seed_warehouse(
    connection: Any, day: date, n: int, *, placeholder: str = "?", **options: Any
) -> SeededDay:
    """Create the ``fulfilments`` table if needed and add ``n`` rows for ``day`` (a DB-API connection)."""
    seeded = SeededDay()
    if type(connection).__module__ == "sqlite3":
        # Readers and the ledger's writer then work side by side in one file (no "database is locked").
        connection.execute("PRAGMA journal_mode=WAL")
    cursor = connection.cursor()
    cursor.execute(TABLE_DDL)
    cursor.execute("SELECT COALESCE(MAX(id), 0) FROM fulfilments")
    first_id = cursor.fetchone()[0] + 1
    insert = (
        f"INSERT INTO fulfilments ({', '.join(COLUMNS)}) VALUES ({', '.join([placeholder] * len(COLUMNS))})"
    )
    batch = []
    for kind, row in demo_rows(day, n, first_id=first_id, **options):
        setattr(seeded, kind, getattr(seeded, kind) + 1)
        if kind == "unknown":
            seeded.unknown_ids.append(row[1])
        batch.append(row)
    cursor.executemany(insert, batch)
    connection.commit()
    cursor.close()
    return seeded
