"""Case 9: the README's DAG as typed, at a day's volume, on the set-ups the README and the docs name.

The DAG is taken from the README's Python block unchanged (its window, its ledger on the warehouse's
connection). Each set-up gets a fresh Airflow home and a fresh sandbox, and runs the day twice with
``airflow dags test <dag> <D+1>T12:00`` (day D by hand, as the nightly page says): the first run sends
every row, the second skips every row; the sandbox counts every POST, so a row sent twice shows.

- SQLite, warehouse and ledger in one file, in SQLite's default rollback journal (text timestamps
  ``YYYY-MM-DD HH:MM:SS``): the ledger switches the file to WAL itself.
- SQLite, warehouse and ledger in two files (text timestamps ``YYYY-MM-DDTHH:MM:SS``).
- PostgreSQL (a ``timestamp`` column), warehouse and ledger in one database.

``python -m bench.readme_dag --rows 100000`` (``--postgres-uri``: a server to use, else one of its own).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import closing
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from airflow_provider_juspay.testing.warehouse import COLUMNS, TABLE_DDL, demo_rows
from bench.support import API_KEY, MERCHANT_ID, fresh_postgres_database, postgres_conn_json, sandbox, table

REPO = Path(__file__).resolve().parent.parent
DAY = date(2026, 11, 25)
DAG_ID = "my_nightly_juspay_sync"


@dataclass
class Outcome:
    setup: str
    run: int
    exit_code: int
    seconds: float
    counts: dict[str, int]
    posted_twice: int
    accepted: int

    def row(self) -> tuple:
        c = self.counts
        unsent = c.get("failed", 0) + c.get("not_attempted", 0)
        result = "green" if self.exit_code == 0 else f"exit {self.exit_code}"
        return (
            self.setup, self.run, result, self.seconds, c.get("sent", 0), c.get("skipped", 0), unsent,
            self.accepted, self.posted_twice,
        )  # fmt: skip


def readme_dag() -> str:
    match = re.search(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.DOTALL)
    assert match and f"def {DAG_ID}" in match.group(1), "the README's DAG"
    return match.group(1)


def day_rows(n: int, separator: str) -> list[tuple]:
    """``n`` valid rows of DAY, ``updated_at`` as text in the given ISO form (no zone)."""
    at = COLUMNS.index("updated_at")
    rows = []
    for _, row in demo_rows(DAY, n, unknown_every=10**9, bad_every=10**9):
        values = list(row)
        values[at] = values[at][:19].replace("T", separator)
        rows.append(tuple(values))
    return rows


def sqlite_warehouse(path: Path, n: int, separator: str) -> str:
    with closing(sqlite3.connect(path)) as db:
        db.execute(TABLE_DDL)
        db.executemany(
            f"INSERT INTO fulfilments VALUES ({', '.join('?' * len(COLUMNS))})", day_rows(n, separator)
        )
        db.commit()
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete", "SQLite's default journal"
    return json.dumps({"conn_type": "sqlite", "host": str(path)})


def postgres_warehouse(uri: str, n: int) -> str:
    import psycopg2

    dsn = fresh_postgres_database(uri, "juspay_readme")
    with closing(psycopg2.connect(**dsn)) as db, db.cursor() as cursor:
        cursor.execute(TABLE_DDL.replace("updated_at TEXT", "updated_at TIMESTAMP"))
        insert = f"INSERT INTO fulfilments VALUES ({', '.join(['%s'] * len(COLUMNS))})"
        cursor.executemany(insert, day_rows(n, " "))
        db.commit()
    return postgres_conn_json(dsn)


def run_setup(name: str, warehouse: str, dags: Path, work: Path) -> list[Outcome]:
    """Two runs of day DAY in a fresh Airflow home, against a fresh sandbox."""
    home = work / ("home-" + re.sub(r"[^a-z]+", "-", name.lower()).strip("-"))
    home.mkdir()
    outcomes = []
    with sandbox(latency_ms=5.0) as server:
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW_CONN_JUSPAY_DEFAULT": json.dumps(
                {"conn_type": "juspay", "login": MERCHANT_ID, "password": API_KEY, "host": server.base_url}
            ),
            "AIRFLOW_CONN_WAREHOUSE": warehouse,
        }
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True
        )
        for attempt in (1, 2):
            started = time.monotonic()
            day_by_hand = f"{DAY + timedelta(days=1)}T12:00:00+00:00"
            done = subprocess.run(
                [sys.executable, "-m", "airflow", "dags", "test", DAG_ID, day_by_hand],
                env=env, capture_output=True, text=True,
            )  # fmt: skip
            seconds = time.monotonic() - started
            log = done.stdout + done.stderr
            (home / f"run{attempt}.log").write_text(log)
            counts = {k: int(v) for k, v in re.findall(r"^\s+([a-z_]+)\s+(\d+)$", log, re.MULTILINE)}
            with urllib.request.urlopen(f"{server.base_url}/__sandbox/state", timeout=10) as answer:
                state = json.load(answer)
            outcomes.append(
                Outcome(name, attempt, done.returncode, seconds, counts, state["doubles"], state["accepted"])
            )
    return outcomes


SETUPS = ("SQLite, one file", "SQLite, two files", "PostgreSQL")


def run(rows: int, postgres_uri: str | None = None, *, setups: tuple[str, ...] = SETUPS) -> list[Outcome]:
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="juspay-readme-") as tmp:
        work = Path(tmp)
        one, two = work / "dags-one", work / "dags-two"
        one.mkdir()
        two.mkdir()
        (one / "readme_dag.py").write_text(readme_dag())
        # The same DAG with its ledger on a connection of its own (another file).
        separate = readme_dag().replace('ledger_conn_id="warehouse"', 'ledger_conn_id="ledger"')
        (two / "readme_dag.py").write_text(separate)
        if "SQLite, one file" in setups:
            outcomes += run_setup("SQLite, one file", sqlite_warehouse(work / "one.db", rows, " "), one, work)
        if "SQLite, two files" in setups:
            os.environ["AIRFLOW_CONN_LEDGER"] = json.dumps(
                {"conn_type": "sqlite", "host": str(work / "ledger.db")}
            )
            try:
                warehouse = sqlite_warehouse(work / "two.db", rows, "T")
                outcomes += run_setup("SQLite, two files", warehouse, two, work)
            finally:
                del os.environ["AIRFLOW_CONN_LEDGER"]
        if "PostgreSQL" in setups:
            own = None
            if postgres_uri is None:
                from bench.own_postgres import OwnPostgres

                own = OwnPostgres()
                own.start()
                postgres_uri = own.uri
            try:
                outcomes += run_setup("PostgreSQL", postgres_warehouse(postgres_uri, rows), one, work)
            finally:
                if own is not None:
                    own.remove()
    return outcomes


def report(outcomes: list[Outcome], rows: int) -> str:
    return table(
        f"9. The README's DAG as typed, {rows:,} rows of one day, twice per set-up (airflow dags test)",
        ("set-up", "run", "result", "seconds", "sent", "skipped", "failed", "accepted", "POSTed twice"),
        [o.row() for o in outcomes],
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--postgres-uri", default=os.environ.get("JUSPAY_TEST_POSTGRES_URI"))
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    setups = SETUPS[:2] if args.no_postgres else SETUPS
    outcomes = run(args.rows, args.postgres_uri, setups=setups)
    print(report(outcomes, args.rows))
    bad = [o for o in outcomes if o.exit_code or o.posted_twice]
    if bad:
        sys.exit(f"{len(bad)} runs were not green, or POSTed a row twice")


if __name__ == "__main__":
    main()
