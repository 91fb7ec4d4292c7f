"""The ledger's database lost mid-run, then back: a run started at once takes over the dead run's keys
when their lease passes, and every row is delivered exactly once, nothing left in flight (issue 17)."""

from __future__ import annotations

import os
import time
from contextlib import closing
from pathlib import Path

import pytest

from bench.own_postgres import NoPostgres, OwnPostgres
from tests.e2e.test_production_runs import dags_test, ledger_states
from tests.helpers import SELECT_ALL, conn_json, in_flight_keys

pytestmark = pytest.mark.e2e

#: Short for the test; JUSPAY_LEDGER_LOST_LEASE=60 measures the default (see the CHANGELOG).
LEASE_S = int(os.environ.get("JUSPAY_LEDGER_LOST_LEASE", "10"))


@pytest.fixture
def own_postgres():
    try:
        server = OwnPostgres()
    except NoPostgres as exc:
        pytest.skip(str(exc))
    server.start()
    yield server
    server.remove()


def test_the_ledger_database_lost_mid_run_then_an_immediate_rerun_delivers_every_row_once(
    airflow_db, sandbox, make_warehouse, own_postgres, monkeypatch
):
    import psycopg2

    _, seeded = make_warehouse(3000)
    monkeypatch.setenv("AIRFLOW_CONN_LEDGER_OWN", own_postgres.uri)
    env = {
        **os.environ,
        "AIRFLOW_CONN_JUSPAY_DEFAULT": conn_json(sandbox.base_url),
        "AIRFLOW__CORE__DAGS_FOLDER": str(Path(__file__).parent.parent / "dags"),
        "JUSPAY_TEST_LEASE": str(LEASE_S),
    }
    conf = {"sql": SELECT_ALL, "ledger_conn_id": "ledger_own"}

    def connect():
        return psycopg2.connect(own_postgres.uri, connect_timeout=5)

    sandbox.configure(latency=0.02)
    first = dags_test("juspay_test_ledger_lost", conf, env)
    deadline = time.monotonic() + 120
    while ledger_states(connect).get("sent", 0) < 500:
        assert first.poll() is None, first.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.05)
    own_postgres.kill()
    lost = time.monotonic()
    output, _ = first.communicate(timeout=120)
    print(f"the first run ended {time.monotonic() - lost:.1f}s after its ledger database went away")
    assert "state=failed" in output, output[-3000:]

    own_postgres.start()
    crashed = ledger_states(connect)
    with closing(connect()) as db:
        unwritten = in_flight_keys(db)
    assert crashed.get("in_flight", 0) > 0, f"the lost run left keys in flight: {crashed}"
    sandbox.configure(latency=0.0)
    started = time.monotonic()
    second = dags_test("juspay_test_ledger_lost", conf, env)  # a new DAG run, at once
    output, _ = second.communicate(timeout=300)
    took = time.monotonic() - started
    assert second.returncode == 0 and "state=success" in output, output[-4000:]
    print(f"the rerun took {took:.1f}s (lease {LEASE_S}s), {crashed.get('in_flight')} keys taken over")
    assert took < 120

    final = ledger_states(connect)
    assert final.get("in_flight", 0) == 0, f"nothing left in flight: {final}"
    assert final.get("sent", 0) + final.get("already_fulfilled", 0) == seeded.good
    assert final.get("rejected", 0) == seeded.unknown
    assert len(sandbox.accepted) == seeded.good, "every good row delivered"
    repeats = sandbox.repeats()
    print(f"{len(repeats)} keys POSTed twice, of {len(unwritten)} in flight when the ledger went away")
    assert set(repeats) <= unwritten, "the only repeats: what the lost ledger could not record"
    with closing(connect()) as db, db.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM juspay_fulfilment_ledger WHERE state = 'in_flight'")
        assert cursor.fetchone()[0] == 0
