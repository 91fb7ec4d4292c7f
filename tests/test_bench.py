"""A tiny run of every benchmark, so that bench/ keeps working (that it runs, not how fast)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.e2e


def test_every_benchmark_case_runs_at_tiny_sizes():
    postgres = os.environ.get("JUSPAY_TEST_POSTGRES_URI")
    extra = ["--postgres-uri", postgres] if postgres else []
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    titles = (
        "1. Throughput",
        "2. Client CPU",
        "3. Peak RSS",
        "4. Ledger overhead",
        "5. A full outage",
        "7. Pacing",
        "Case 8, chaos",
    )
    for title in titles:
        assert title in out
    assert "HttpOperator mapped" in out and "http.client keep-alive loop" in out
    assert "Machine: " in out and "cores" in out
    assert "CSV file source" in out and "Parquet file source" in out
    for case in ("capacity 400/s, 100 ms: fixed", "capacity 400/s, 100 ms: adaptive", "24 requests at once"):
        assert case in out
    assert "pacing_cap400.png" in out, "the pictures are drawn"
    if postgres:
        assert "PostgreSQL (server-side cursor) warehouse" in out


@pytest.mark.parametrize("ledger", ["sqlite", "postgres"])
def test_the_chaos_case_delivers_every_row_and_explains_every_repeat(ledger):
    """A small seeded chaos run (kills, pauses past the lease, SIGTERM, outages, and on PostgreSQL
    database restarts), then a clean run."""
    from bench import chaos
    from bench.own_postgres import NoPostgres

    try:
        outcome = chaos.run(rows=4000, runs=10, seed=3, lease=3.0, postgres=ledger == "postgres")
    except NoPostgres as exc:
        pytest.skip(str(exc))
    print(outcome.table())
    assert outcome.faults, "faults were injected"
    assert outcome.missing == 0 and outcome.clean_run_code == 0
    assert outcome.green_undelivered == 0
    assert outcome.repeats == outcome.repeats_at_faults, "every repeat was in flight in a run at its fault"
