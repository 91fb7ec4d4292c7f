"""A tiny run of every benchmark, so that bench/ keeps working (that it runs, not how fast)."""

from __future__ import annotations

import os
import re
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
    for case in (
        "1 task, capacity 400/s, 100 ms: fixed",
        "1 task, capacity 400/s, 100 ms: per-task",
        "4 tasks, capacity 400/s, 100 ms: shared",
        "+ 1 from 10 s, 400/s: shared",
        "24 requests at once",
    ):
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


@pytest.mark.parametrize("setups", [("SQLite, one file", "SQLite, two files"), ("PostgreSQL",)])
def test_the_readme_dag_as_typed_sends_every_row_once_above_a_fetch_batch(setups):
    """Case 9 small: 2,500 rows (more than one fetch of 1,000, so the query still reads while the
    ledger writes: 1.0 failed there with "database is locked" on one SQLite file), twice each."""
    from bench import readme_dag

    uri = os.environ.get("JUSPAY_TEST_POSTGRES_URI")
    if "PostgreSQL" in setups and not uri:
        pytest.skip("no PostgreSQL: set JUSPAY_TEST_POSTGRES_URI (.ci/run does)")
    outcomes = readme_dag.run(2500, uri, setups=setups)
    print(readme_dag.report(outcomes, 2500))
    assert [(o.setup, o.run) for o in outcomes] == [(s, n) for s in setups for n in (1, 2)]
    for first, again in zip(outcomes[::2], outcomes[1::2], strict=True):
        assert first.exit_code == 0 and first.counts["sent"] == 2500, first
        assert again.exit_code == 0 and again.counts["skipped"] == 2500 and again.counts["sent"] == 0, again
        assert again.accepted == 2500 and again.posted_twice == 0, again


def test_the_page_case_times_the_page_it_checked():
    """Case 10, tiny: the page's reads on generated history, with and without the indexes."""
    from bench import page
    from bench.own_postgres import NoPostgres

    try:
        out = page.run(
            ledger_rows=5000, runs=120, postgres_uri=os.environ.get("JUSPAY_TEST_POSTGRES_URI"), loads=3
        )
    except NoPostgres as exc:
        pytest.skip(f"no PostgreSQL: {exc}")
    print(out)
    assert "10. The Juspay page at a year of history: 120 runs, 5,000 ledger rows" in out
    for load in ("page, all 20 DAGs readable", "page, 3 DAGs readable", "a run's tab (its failures)"):
        assert re.search(rf"{re.escape(load)}\s+\d+ ms\s+\d+ ms\s+\d+ ms\s+\d+x", out), load
