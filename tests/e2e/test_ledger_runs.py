"""The ledger in real DAG runs: reruns send nothing, failed keys go again, and a SIGKILL loses nothing."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import pytest

from tests.helpers import SELECT_ALL, conn_json, in_flight_keys, run_dag

pytestmark = pytest.mark.e2e


def ledger_states(path) -> dict[str, int]:
    with closing(sqlite3.connect(path, timeout=10)) as db:
        try:
            return dict(db.execute("SELECT state, COUNT(*) FROM juspay_fulfilment_ledger GROUP BY state"))
        except sqlite3.OperationalError:
            return {}


def test_rerun_of_the_same_dag_run_sends_nothing(airflow_db, sandbox, juspay_conn, warehouse):
    first = run_dag("juspay_test_bulk_ledger", {"sql": SELECT_ALL})
    assert first.xcom[("push", "return_value")]["counts"]["sent"] == warehouse.good
    sent_requests = len(sandbox.requests)
    second = run_dag("juspay_test_bulk_ledger", {"sql": SELECT_ALL})
    report = second.xcom[("push", "return_value")]
    assert report["counts"]["skipped"] == warehouse.good
    assert report["counts"]["rejected"] == warehouse.unknown, "rejected keys are tried again"
    assert len(sandbox.requests) - sent_requests == warehouse.unknown
    assert sandbox.doubles() == {}


def test_failed_keys_are_retried_by_the_next_run(airflow_db, sandbox, juspay_conn, warehouse):
    run_dag("juspay_test_bulk_ledger", {"sql": SELECT_ALL})
    sandbox.orders.update({order_id: "CHARGED" for order_id in warehouse.unknown_ids})  # paid since
    report = run_dag("juspay_test_bulk_ledger", {"sql": SELECT_ALL}).xcom[("push", "return_value")]
    assert report["counts"]["sent"] == warehouse.unknown
    assert report["counts"]["skipped"] == warehouse.good
    assert len(sandbox.accepted) == warehouse.good + warehouse.unknown and sandbox.doubles() == {}


@pytest.fixture
def big_warehouse(make_warehouse):
    return make_warehouse(3000)


def airflow_dags_test(sandbox, dag_id="juspay_test_bulk_ledger_short_lease") -> subprocess.Popen:
    env = {**os.environ, "AIRFLOW_CONN_JUSPAY_DEFAULT": conn_json(sandbox.base_url)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow",
            "dags",
            "test",
            dag_id,
            "-c",
            json.dumps({"sql": SELECT_ALL}),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def test_sigkill_mid_run_then_rerun_delivers_everything_once(airflow_db, sandbox, big_warehouse):
    path, seeded = big_warehouse
    sandbox.configure(latency=0.02)
    victim = airflow_dags_test(sandbox)
    deadline = time.monotonic() + 120
    while ledger_states(path).get("sent", 0) < 500:
        assert victim.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    crashed = ledger_states(path)
    assert crashed.get("in_flight", 0) > 0, f"killed mid-run, some requests were in flight: {crashed}"
    with closing(sqlite3.connect(path, timeout=10)) as db:
        unwritten = in_flight_keys(db)
    assert sum(crashed.values()) < seeded.good + seeded.unknown, "killed before the end"

    sandbox.configure(latency=0.0)
    time.sleep(2.5)  # the dead run's lease passes; then another run may send its keys in flight
    rerun = airflow_dags_test(sandbox)
    assert rerun.wait(timeout=240) == 0

    final = ledger_states(path)
    assert final.get("rejected", 0) == seeded.unknown
    assert final.get("in_flight", 0) == 0 and final.get("failed", 0) == 0
    assert final.get("sent", 0) + final.get("already_fulfilled", 0) == seeded.good
    repeats = sandbox.repeats()
    print(f"{len(repeats)} keys POSTed twice, of {len(unwritten)} in flight at the kill")
    assert set(repeats) <= unwritten, "the only repeats: on the wire, or answered and unwritten, at the kill"
    with closing(sqlite3.connect(path)) as db:
        delivered = {
            (order_id, command)
            for order_id, command in db.execute(
                "SELECT order_id, command FROM juspay_fulfilment_ledger "
                "WHERE state IN ('sent', 'already_fulfilled')"
            )
        }
    assert delivered == set(sandbox.accepted), "the ledger agrees with what Juspay holds"


def test_dry_run_reads_the_ledger_and_writes_nothing(airflow_db, sandbox, juspay_conn, make_warehouse):
    path, warehouse = make_warehouse(600)
    run_dag("juspay_test_bulk_ledger", {"sql": SELECT_ALL})
    before_requests, before_states = len(sandbox.requests), ledger_states(path)
    report = run_dag("juspay_test_bulk_dry_run", {"sql": SELECT_ALL}).xcom[("push", "return_value")]
    assert report["dry_run"] is True
    assert report["counts"]["skipped"] == warehouse.good, "delivered keys would be skipped"
    assert report["counts"]["not_attempted"] == warehouse.unknown, "the rejected ones would go again"
    assert report["counts"]["invalid"] == warehouse.bad
    assert len(sandbox.requests) == before_requests and ledger_states(path) == before_states
