"""Production, tried with real processes: overlapping runs on one ledger, SIGTERM, outages, quiet logs."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from tests.helpers import SELECT_ALL, conn_json, run_dag, xcoms

pytestmark = pytest.mark.e2e


def dags_test(dag_id: str, conf: dict, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "airflow", "dags", "test", dag_id, "-c", json.dumps(conf)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def own_metadata_db(airflow_home: str, folder: Path) -> str:
    """A copy of the migrated metadata DB, so two `airflow dags test` processes do not lock each other."""
    folder.mkdir(parents=True, exist_ok=True)
    # SQLite's backup API: a consistent copy even while this process holds the database open.
    source, copy = sqlite3.connect(Path(airflow_home) / "airflow.db"), sqlite3.connect(folder / "airflow.db")
    with closing(source), closing(copy):
        source.backup(copy)
    return f"sqlite:///{folder / 'airflow.db'}"


def push_report(sql_alchemy_conn: str) -> dict:
    with closing(sqlite3.connect(sql_alchemy_conn.removeprefix("sqlite:///"))) as db:
        query = (
            "SELECT value FROM xcom WHERE dag_id = 'juspay_test_overlap' AND task_id = 'push' "
            "AND key = 'return_value' ORDER BY timestamp DESC LIMIT 1"
        )
        (value,) = db.execute(query).fetchone()
    return json.loads(value) if isinstance(value, str) else value


def orders(prefix: str, n: int) -> list[dict]:
    """Rows for the ``juspay_test_bulk_records`` DAG (``order`` is mapped to ``order_id``)."""
    return [
        {"order": f"{prefix}-{i}", "fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"}
        for i in range(n)
    ]


def ledger_states(connect) -> dict[str, int]:
    with closing(connect()) as db:
        cursor = db.cursor()
        try:
            cursor.execute("SELECT state, COUNT(*) FROM juspay_fulfilment_ledger GROUP BY state")
        except Exception:  # not created yet
            return {}
        return dict(cursor.fetchall())


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_conn(request, make_warehouse, monkeypatch):
    """The ledger of both runs: the SQLite warehouse file itself (WAL), or PostgreSQL."""
    path, seeded = make_warehouse(3000)
    if request.param == "sqlite":
        return "warehouse", (lambda: sqlite3.connect(path, timeout=10)), seeded
    uri = os.environ.get("JUSPAY_TEST_POSTGRES_URI")
    if not uri:
        pytest.skip("no PostgreSQL: set JUSPAY_TEST_POSTGRES_URI (.ci/run does)")
    import psycopg2

    with closing(psycopg2.connect(uri)) as db, db.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS juspay_fulfilment_ledger")
        db.commit()
    monkeypatch.setenv("AIRFLOW_CONN_LEDGER_PG", uri)
    return "ledger_pg", (lambda: psycopg2.connect(uri)), seeded


def test_runs_released_together_share_the_keys_and_all_end_green(airflow_db, sandbox, ledger_conn, tmp_path):
    conn_id, connect, seeded = ledger_conn
    sandbox.configure(latency=0.01)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    names = ("nightly", "retry", "backfill")  # any number of runs: three at once
    conf = {"sql": SELECT_ALL, "ledger_conn_id": conn_id, "barrier": str(barrier), "parties": len(names)}
    runs = []
    for name in names:
        metadata = own_metadata_db(airflow_db, tmp_path / name)
        env = {
            **os.environ,
            "AIRFLOW_CONN_JUSPAY_DEFAULT": conn_json(sandbox.base_url),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
        }
        runs.append((metadata, dags_test("juspay_test_overlap", conf, env)))
    for _, process in runs:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output[-4000:]
        assert "Traceback" not in output, output[-4000:]
    reports = [push_report(metadata) for metadata, _ in runs]
    print("counts of the overlapping runs:", [r["counts"] for r in reports])  # shown with pytest -s

    for report in reports:
        assert report["total"] == seeded.total and sum(report["counts"].values()) == seeded.total
        assert report["counts"]["failed"] == report["counts"]["not_attempted"] == 0
    # On a fresh ledger a key is skipped only when another run delivered it while this one waited.
    raced = sum(r["counts"]["held_elsewhere"] + r["counts"]["skipped"] for r in reports)
    assert raced > 0, f"the runs raced for the same keys: {[r['counts'] for r in reports]}"
    delivered_now = sum(r["counts"]["sent"] + r["counts"]["already_fulfilled"] for r in reports)
    assert delivered_now == seeded.good, "each good row delivered by exactly one of the runs"
    assert sandbox.doubles() == {} and len(sandbox.accepted) == seeded.good
    good_posts = [r for r in sandbox.requests if r.status == 200]
    assert len(good_posts) == seeded.good, "no key another run held was sent again"
    final = ledger_states(connect)
    assert final.get("in_flight", 0) == 0
    assert final.get("sent", 0) + final.get("already_fulfilled", 0) == seeded.good


@pytest.fixture
def big_warehouse(make_warehouse):
    return make_warehouse(4000)


def test_sigterm_stops_the_run_within_seconds_writes_every_outcome_and_the_rerun_finishes(
    airflow_db, sandbox, big_warehouse
):
    path, seeded = big_warehouse
    sandbox.configure(latency=0.02)
    env = {**os.environ, "AIRFLOW_CONN_JUSPAY_DEFAULT": conn_json(sandbox.base_url)}
    victim = dags_test("juspay_test_bulk_ledger", {"sql": SELECT_ALL}, env)
    deadline = time.monotonic() + 120
    while ledger_states(lambda: sqlite3.connect(path, timeout=10)).get("sent", 0) < 400:
        assert victim.poll() is None, victim.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGTERM)
    signalled = time.monotonic()
    at_signal = last = len(sandbox.requests)
    last_change = signalled
    while time.monotonic() - last_change < 1.0 and time.monotonic() - signalled < 15:
        time.sleep(0.02)  # until the sandbox has heard nothing new for a second
        if len(sandbox.requests) != last:
            last, last_change = len(sandbox.requests), time.monotonic()
    quiet_after, after_signal = last_change - signalled, last - at_signal
    output, _ = victim.communicate(timeout=60)
    print(f"SIGTERM: {after_signal} requests reached the sandbox after it, the last {quiet_after:.2f}s after")
    assert quiet_after < 2, f"requests kept leaving for {quiet_after:.1f}s after SIGTERM"
    assert after_signal <= 2 * 8, "only the requests already on the wire (8 in flight) finish"
    assert "CANCELLED" in output and "STOPPED EARLY" in output, output[-3000:]
    states = ledger_states(lambda: sqlite3.connect(path, timeout=10))
    assert states.get("in_flight", 0) == 0, f"every outcome known was written: {states}"
    assert sum(states.values()) < seeded.good + seeded.unknown, "stopped before the end"
    report = xcoms("juspay_test_bulk_ledger").get(("push", "report"))
    assert report is not None, "the partial report was pushed before the task failed"
    assert report["stopped"]["error_code"] == "CANCELLED" and report["total"] == sum(
        report["counts"].values()
    )

    sent_before = len(sandbox.accepted)
    rerun = dags_test("juspay_test_bulk_ledger", {"sql": SELECT_ALL}, env)
    output, _ = rerun.communicate(timeout=240)
    assert rerun.returncode == 0, output[-3000:]
    final = ledger_states(lambda: sqlite3.connect(path, timeout=10))
    assert final.get("in_flight", 0) == 0 and final.get("not_attempted", 0) == 0
    assert final.get("sent", 0) + final.get("already_fulfilled", 0) == seeded.good
    assert sandbox.doubles() == {} and len(sandbox.accepted) == seeded.good > sent_before


def test_a_full_outage_fails_the_task_in_seconds_with_the_report_pushed(airflow_db, sandbox, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_JUSPAY_DEFAULT", conn_json(sandbox.base_url, initial_wait=0.2, max_wait=2)
    )
    sandbox.configure(error_rate=1.0)
    records = orders("OUT", 3000)
    started = time.monotonic()
    outcome = run_dag("juspay_test_bulk_records", {"records": records})
    elapsed = time.monotonic() - started
    assert outcome.task_states["push"] == "failed"
    report = outcome.xcom[("push", "report")]
    assert report["stopped"]["error_code"] == "CIRCUIT_OPEN"
    # The rows tried before the breaker opened are failed (more with 64 adaptive workers than 16 fixed).
    assert report["counts"]["not_attempted"] > 2800 and report["counts"]["sent"] == 0
    assert report["errors"]["CIRCUIT_OPEN"] == report["counts"]["not_attempted"]
    assert elapsed < 60, f"a full outage took {elapsed:.0f}s to end the run"


def test_rows_that_failed_for_transient_reasons_fail_the_task(airflow_db, sandbox, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_JUSPAY_DEFAULT", conn_json(sandbox.base_url, max_attempts=1))
    sandbox.script("error", 2)  # two records meet a 503 and have no attempt left
    records = [
        {"order": f"T-{i}", "fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"}
        for i in range(20)
    ]
    outcome = run_dag("juspay_test_bulk_records", {"records": records})
    assert outcome.task_states["push"] == "failed", "nothing green that did not deliver"
    report = outcome.xcom[("push", "report")]
    assert report["counts"]["failed"] == 2 and report["counts"]["sent"] == 18


def test_many_retries_log_as_counts_not_a_line_each(airflow_db, sandbox, juspay_conn, capfd):
    sandbox.configure(error_rate=0.3)
    records = [
        {"order": f"Q-{i}", "fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"}
        for i in range(1500)
    ]
    outcome = run_dag("juspay_test_bulk_records", {"records": records})
    # 0.3**5: a few records may outlive their five attempts, which fails the task: the report is there too.
    report = outcome.xcom.get(("push", "return_value")) or outcome.xcom[("push", "report")]
    retries = sum(report["retries"].values())
    assert retries > 300 and report["retries"]["SERVICE_UNAVAILABLE"] == retries
    task_log = capfd.readouterr().out  # the task log as Airflow prints it
    assert "retries: SERVICE_UNAVAILABLE" in task_log, "the report table counts the retries by cause"
    assert task_log.count("retrying in") <= 1, "at most the first retry has a line of its own"


def test_a_run_juspay_refused_entirely_fails_unless_a_limit_says_refusals_are_expected(
    airflow_db, sandbox, juspay_conn
):
    unpaid = orders("UNPAID", 10)  # the sandbox knows UNPAID-0..9 as NEW: "No txn Found"
    strict = run_dag("juspay_test_bulk_records", {"records": unpaid})
    assert strict.task_states["push"] == "failed", "a wrong merchant or environment looks like this"
    assert strict.xcom[("push", "report")]["counts"]["rejected"] == 10
    lenient = run_dag("juspay_test_bulk_records_lenient", {"records": unpaid})
    assert lenient.task_states["push"] == "success"
