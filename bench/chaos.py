"""Case 8, chaos: many overlapping runs with a ledger, and faults at random (seeded, printed): SIGKILL,
SIGSTOP longer than the lease, SIGTERM, Juspay outages and, on PostgreSQL, ledger database restarts; then
a clean run. It prints rows missing, keys
POSTed more than once (and how many of those were in flight in a run at its fault: on the wire, or
answered and not yet written), runs that ended green with rows undelivered, and the seed.

    python -m bench.chaos --rows 100000 --seed 7 [--postgres]     (make bench-chaos)
"""

from __future__ import annotations

import argparse
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from airflow_provider_juspay.sync.ledger.outcomes import DEFAULT_FLUSH_EVERY_S
from airflow_provider_juspay.sync.ledger.rows import timestamp
from airflow_provider_juspay.testing.sandbox import Sandbox
from bench.ledger_worker import API_KEY, MERCHANT_ID
from bench.own_postgres import OwnPostgres

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    name: str
    first: int
    rows: int
    process: subprocess.Popen
    faults: list[str] = field(default_factory=list)
    code: int | None = None
    #: Keys of its range neither delivered nor under a live lease when it ended (only if it was green).
    undelivered: int = 0


@dataclass
class Outcome:
    seed: int
    rows: int
    runs: int
    ledger: str
    faults: dict[str, int]
    missing: int
    repeats: int
    repeats_at_faults: int
    in_flight_at_faults: int
    green_undelivered: int
    clean_run_code: int
    seconds: float

    def table(self) -> str:
        lines = [
            f"Case 8, chaos: {self.rows} rows over {self.runs} overlapping runs, then a clean run "
            f"(ledger on {self.ledger}; seed {self.seed}; {self.seconds:.0f} s)",
            "  faults injected: " + ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())),
            f"  rows missing:                          {self.missing}   (goal 0)",
            f"  runs green with rows undelivered:      {self.green_undelivered}   (goal 0)",
            f"  keys POSTed more than once:            {self.repeats}",
            f"    of which in flight in a run at its fault: {self.repeats_at_faults} "
            f"(of {self.in_flight_at_faults} keys in flight at the faults; goal: all repeats)",
            f"  outcome write delay (bounds the answered-not-written): {DEFAULT_FLUSH_EVERY_S:g} s",
            f"  clean run: exit {self.clean_run_code}",
        ]
        return "\n".join(lines)


def _query(ledger: str, sql: str, params: list[str]) -> list[tuple[str, ...]]:
    """Rows of a query on the ledger (a SQLite path or a PostgreSQL URI); none while it is unreachable."""
    try:
        if ledger.startswith("postgresql://"):
            import psycopg2

            with closing(psycopg2.connect(ledger, connect_timeout=5)) as db, db.cursor() as cursor:
                cursor.execute(sql.replace("?", "%s"), params)
                return [tuple(row) for row in cursor.fetchall()]
        with closing(sqlite3.connect(ledger, timeout=30)) as db:
            return [tuple(row) for row in db.execute(sql, params)]
    except Exception:  # not created yet, or the database is restarting
        return []


def _in_flight(ledger: str, run_name: str | None) -> set[tuple[str, str]]:
    """The keys a run (or every run) holds in flight: on the wire, or answered and not yet written."""
    sql = "SELECT order_id, command FROM juspay_fulfilment_ledger WHERE state = 'in_flight'"
    if run_name is None:
        return {(o, c) for o, c in _query(ledger, sql, [])}
    return {(o, c) for o, c in _query(ledger, sql + " AND run_id = ?", [f"run-{run_name}"])}


def _live_in_flight(ledger: str) -> set[str]:
    """Order ids in flight under a lease that has not ended (the database runs on this machine's clock)."""
    now = timestamp(datetime.now(timezone.utc))
    sql = "SELECT order_id FROM juspay_fulfilment_ledger WHERE state = 'in_flight' AND lease_until > ?"
    return {o for (o,) in _query(ledger, sql, [now])}


def _start(sandbox: Sandbox, ledger: str, name: str, first: int, rows: int, lease: float) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "bench.ledger_worker", "--sandbox", sandbox.base_url, "--ledger", ledger,
        "--first", str(first), "--rows", str(rows), "--lease", str(lease), "--name", name,
        "--run-id", f"run-{name}", "--concurrency", "8", "--wait-limit", str(4 * lease),
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run(
    rows: int = 100_000, runs: int = 24, seed: int = 7, lease: float = 3.0, postgres: bool = False
) -> Outcome:
    """The chaos case; with ``postgres`` the ledger lives in a PostgreSQL server of its own, restarted
    at random too (else in a SQLite file)."""
    rng = random.Random(seed)
    started = time.monotonic()
    server = None
    if postgres:
        server = OwnPostgres()
        server.start()
        ledger = server.uri
    else:
        ledger = str(Path(tempfile.mkdtemp(prefix="juspay-chaos-")) / "ledger.db")
    kinds = ["kill", "stop", "term", "outage"] + (["db_restart"] if server is not None else [])
    sandbox = Sandbox(api_key=API_KEY, merchant_id=MERCHANT_ID, record=False, seed=seed).start()
    faults: dict[str, int] = {}
    at_faults: set[tuple[str, str]] = set()
    live: list[Run] = []
    done: list[Run] = []
    span = max(10, (2 * rows) // runs)

    def reap() -> None:
        for r in list(live):
            code = r.process.poll()
            if code is None:
                continue
            r.code = code
            if code == 0:
                accepted = {o for o, _ in sandbox.accepted_keys()}
                held = _live_in_flight(ledger)
                r.undelivered = sum(
                    1 for i in range(r.first, r.first + r.rows) if f"ORD-{i}" not in accepted | held
                )
            live.remove(r)
            done.append(r)

    def fault(kind: str) -> None:
        candidates = [r for r in live if r.process.poll() is None and "stop" not in r.faults]
        if kind == "outage":
            faults[kind] = faults.get(kind, 0) + 1
            sandbox.configure(error_rate=1.0)
            threading.Timer(rng.uniform(0.5, 2.0), lambda: sandbox.configure(error_rate=0.0)).start()
            return
        if kind == "db_restart" and server is not None:
            faults[kind] = faults.get(kind, 0) + 1
            server.kill()  # every run's connections drop: what they knew and had not written is lost
            time.sleep(rng.uniform(0.5, 2.0))
            server.start()
            # Read back at once: the rows in flight are those of the kill (no run wrote while it was down).
            at_faults.update(_in_flight(ledger, None))
            return
        if not candidates:
            return
        victim = rng.choice(candidates)
        victim.faults.append(kind)
        faults[kind] = faults.get(kind, 0) + 1
        if kind == "kill":
            victim.process.send_signal(signal.SIGKILL)
        elif kind == "term":
            victim.process.send_signal(signal.SIGTERM)
        elif kind == "stop":
            victim.process.send_signal(signal.SIGSTOP)
            threading.Timer(1.5 * lease, lambda: victim.process.send_signal(signal.SIGCONT)).start()
        time.sleep(0.2)  # what was on the wire is answered (and, killed or stopped, not written)
        at_faults.update(_in_flight(ledger, victim.name))

    for i in range(runs):
        first = rng.randrange(0, max(1, rows - span))
        live.append(
            Run(f"r{i}", first, min(span, rows - first), _start(sandbox, ledger, f"r{i}", first, span, lease))
        )
        time.sleep(rng.uniform(0.1, 0.6))
        if rng.random() < 0.6:
            fault(rng.choice(kinds))
        reap()
    while live:
        reap()
        time.sleep(0.1)
    sandbox.configure(error_rate=0.0)
    clean = subprocess.run(
        [sys.executable, "-m", "bench.ledger_worker", "--sandbox", sandbox.base_url, "--ledger", ledger,
         "--rows", str(rows), "--lease", str(lease), "--name", "clean", "--run-id", "run-clean",
         "--concurrency", "16", "--wait-limit", str(4 * lease)],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    repeats = sandbox.repeats()
    outcome = Outcome(
        seed=seed,
        rows=rows,
        runs=runs,
        ledger="PostgreSQL" if server is not None else "SQLite",
        faults=faults,
        missing=rows - len(sandbox.accepted_keys()),
        repeats=len(repeats),
        repeats_at_faults=len(set(repeats) & at_faults),
        in_flight_at_faults=len(at_faults),
        green_undelivered=sum(1 for r in done if r.code == 0 and r.undelivered),
        clean_run_code=clean.returncode,
        seconds=time.monotonic() - started,
    )
    sandbox.stop()
    if server is not None:
        server.remove()
    return outcome


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=24)
    parser.add_argument("--seed", type=int, default=random.randrange(1_000_000))
    parser.add_argument("--lease", type=float, default=3.0)
    parser.add_argument("--postgres", action="store_true", help="the ledger on a PostgreSQL of its own")
    args = parser.parse_args(argv)
    print(run(args.rows, args.runs, args.seed, args.lease, args.postgres).table())


if __name__ == "__main__":
    main()
