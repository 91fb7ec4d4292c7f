"""The ledger on SQLite and PostgreSQL: reruns send nothing twice; failures go again; on_change."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_juspay.fulfilment import FulfilmentRecord, Outcome
from airflow_provider_juspay.sync.control import RunControl
from airflow_provider_juspay.sync.engine import push
from airflow_provider_juspay.sync.ledger import LeaseLost, Ledger, RunInfo
from airflow_provider_juspay.sync.report import ReportBuilder
from airflow_provider_juspay.sync.settings import PushSettings
from tests.helpers import API_KEY, MERCHANT_ID


@contextlib.contextmanager
def progressing(ledger, every=0.05):
    """Answers keep arriving in the ledger's run (what a live, moving run's workers report)."""
    stop = threading.Event()

    def move():
        while not stop.wait(every):
            ledger.progressed()

    thread = threading.Thread(target=move, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def make_ledger(db, try_number=1):
    ledger = Ledger(
        db, merchant_id=MERCHANT_ID, run=RunInfo("dag", "run-1", "push", try_number), batch_size=7
    )
    ledger.ensure_table()
    return ledger


def rows(n=30, **changes):
    return [
        {
            "order_id": f"L-{i}",
            "fulfillment_status": "SUCCESS",
            "fulfillment_command": "INITIATE_REFUND",
            "fulfillment_id": f"F-{i}",
            **changes,
        }
        for i in range(n)
    ]


def run(client, ledger, source, on_change="send", concurrency=4):
    return push(
        source,
        report=ReportBuilder(),
        make_record=FulfilmentRecord.from_mapping,
        client=client,
        settings=PushSettings(max_concurrency=concurrency),
        ledger=ledger,
        on_change=on_change,
        control=RunControl(),  # no pacing, no breaker: the ledger's own behaviour
    ).report.to_dict()


def test_rerun_sends_nothing_twice(db, client, sandbox):
    first = run(client, make_ledger(db), rows())
    assert first["counts"]["sent"] == 30
    requests_after_first = len(sandbox.requests)
    second = run(client, make_ledger(db, try_number=2), rows())
    assert second["counts"]["skipped"] == 30 and second["total"] == 30
    assert len(sandbox.requests) == requests_after_first, "the rerun sent nothing"
    assert set(make_ledger(db).states().values()) == {"sent"}


def test_failed_and_rejected_keys_are_sent_again_by_the_next_run(db, client, sandbox):
    sandbox.orders.update({"L-3": "NEW", "L-4": "NEW"})
    sandbox.script("error", 2)  # L-0's two attempts fail: failed
    first = run(client, make_ledger(db), rows(10), concurrency=1)
    assert first["counts"]["rejected"] == 2 and first["counts"]["failed"] == 1
    sandbox.orders.update({"L-3": "CHARGED", "L-4": "CHARGED"})
    second = run(client, make_ledger(db), rows(10))
    assert second["counts"]["sent"] == first["counts"]["rejected"] + first["counts"]["failed"]
    assert second["counts"]["skipped"] == first["counts"]["sent"]
    assert set(make_ledger(db).states().values()) == {"sent"}
    assert sandbox.doubles() == {}


@pytest.mark.parametrize(
    "on_change, outcome, resent",
    [("send", "already_fulfilled", 1), ("skip", "skipped", 0), ("fail", "invalid", 0)],
)
def test_changed_payload_follows_on_change(db, client, sandbox, on_change, outcome, resent):
    run(client, make_ledger(db), rows(3))
    before = len(sandbox.requests)
    changed = rows(3)
    changed[1]["fulfillment_data"] = "corrected delivery note"
    report = run(client, make_ledger(db), changed, on_change=on_change)
    unchanged_skipped = 2
    assert report["counts"][outcome] == 1 + (unchanged_skipped if outcome == "skipped" else 0)
    assert report["counts"]["skipped"] == unchanged_skipped + (outcome == "skipped")
    assert len(sandbox.requests) - before == resent


def test_in_flight_keys_from_a_crash_are_resent_once_their_lease_passes(db, client, sandbox):
    crashed = Ledger(db, merchant_id=MERCHANT_ID, run=RunInfo("dag", "run-1", "push", 1), lease_s=0.5)
    crashed.ensure_table()
    records = [FulfilmentRecord.from_mapping(r) for r in rows(5)]
    list(crashed.filter(records))  # marked in flight, then the process "died" before any outcome
    assert set(crashed.states().values()) == {"in_flight"}
    sandbox.accepted[("L-0", "INITIATE_REFUND")] += 1  # Juspay had accepted L-0 before the crash
    started = time.monotonic()
    report = run(client, make_ledger(db, try_number=2), rows(5))  # the task's next try: no exception for it
    assert time.monotonic() - started >= 0.5, "an earlier try's keys wait for its lease like any run's"
    assert report["counts"] == {**report["counts"], "already_fulfilled": 1, "sent": 4}
    assert sandbox.doubles() == {}


def test_keys_another_live_run_holds_are_held_elsewhere_not_sent(db, client, sandbox, connect):
    """A live holder's heartbeat renews its lease: the other run waits to see that, then leaves them."""
    holder = Ledger(
        db, merchant_id=MERCHANT_ID, run=RunInfo("dag", "run-1", "push", 1), lease_s=0.4, connect=connect
    )
    holder.ensure_table()
    list(holder.filter([FulfilmentRecord.from_mapping(r) for r in rows(5)]))  # in flight in a live run
    other = Ledger(connect(), merchant_id=MERCHANT_ID, run=RunInfo("nightly", "scheduled-1", "push", 1))
    with progressing(holder):
        try:
            report = run(client, other, rows(8))
        finally:
            holder.close()
    assert report["counts"]["held_elsewhere"] == 5 and report["counts"]["sent"] == 3
    assert len(sandbox.requests) == 3, "nothing another run holds was sent"
    held = [f for f in report["failures"] if f["outcome"] == "held_elsewhere"]
    assert held == [], "a key another run delivers is not a failure"
    assert set(holder.states().values()) == {"not_attempted", "sent"}, "closed: its unsent keys given back"


def test_keys_a_live_run_delivers_meanwhile_end_skipped(db, client, sandbox, connect):
    """The other run waits for the holder, which delivers: nothing is held at the end, nothing sent twice."""
    holder = Ledger(
        connect(), merchant_id=MERCHANT_ID, run=RunInfo("dag", "run-1", "push", 1), lease_s=2, connect=connect
    )
    holder.ensure_table()
    claimed = list(holder.filter([FulfilmentRecord.from_mapping(r) for r in rows(5)]))

    def deliver_later():
        time.sleep(0.3)
        list(holder.write_outcomes(client.fulfil(record) for record in claimed))

    thread = threading.Thread(target=deliver_later)
    thread.start()
    other = Ledger(db, merchant_id=MERCHANT_ID, run=RunInfo("nightly", "scheduled-1", "push", 1), lease_s=2)
    report = run(client, other, rows(8))
    thread.join()
    holder.close()
    assert report["counts"]["skipped"] == 5 and report["counts"]["sent"] == 3
    assert report["counts"]["held_elsewhere"] == 0
    assert len(sandbox.requests) == 8 and sandbox.doubles() == {}


def test_a_run_waits_for_a_dead_runs_keys_and_sends_them_once_its_lease_has_passed(db, client, sandbox):
    dead = Ledger(db, merchant_id=MERCHANT_ID, run=RunInfo("dag", "run-0", "push", 1), lease_s=0.5)
    dead.ensure_table()
    list(dead.filter([FulfilmentRecord.from_mapping(r) for r in rows(4)]))  # then it dies: no renewal
    other = Ledger(db, merchant_id=MERCHANT_ID, run=RunInfo("backfill", "run-9", "push", 1), lease_s=2)
    started = time.monotonic()
    report = run(client, other, rows(4))
    assert time.monotonic() - started >= 0.5, "not before the dead run's lease had passed"
    assert report["counts"]["sent"] == 4 and set(other.states().values()) == {"sent"}


def test_leases_are_judged_on_the_databases_clock_not_the_workers(db, client, sandbox, connect):
    """A worker whose clock is an hour ahead must not take a live run's keys (nor one behind keep them)."""
    holder = Ledger(
        db, merchant_id=MERCHANT_ID, run=RunInfo("dag", "run-1", "push", 1), lease_s=0.8, connect=connect
    )
    holder.ensure_table()
    list(holder.filter([FulfilmentRecord.from_mapping(r) for r in rows(3)]))
    ahead = Ledger(
        connect(),
        merchant_id=MERCHANT_ID,
        run=RunInfo("other", "run-2", "push", 1),
        wall_clock=lambda: datetime.now(timezone.utc) + timedelta(hours=1),
    )
    with progressing(holder):
        try:
            report = run(client, ahead, rows(3))
        finally:
            holder.close()
    assert report["counts"]["held_elsewhere"] == 3 and sandbox.requests == []


def test_a_key_twice_in_one_run_is_sent_once(db, client, sandbox):
    report = run(client, make_ledger(db), rows(3) + rows(3), concurrency=1)
    assert report["counts"]["sent"] == 3
    assert report["counts"]["skipped"] + report["counts"]["held_elsewhere"] == 3
    assert len(sandbox.requests) == 3


def test_a_key_repeated_in_one_batch_is_written_once(db, client):
    report = run(client, make_ledger(db), rows(2) + rows(2))
    assert report["total"] == 4
    assert len(make_ledger(db).states()) == 2


def test_ledger_rows_carry_the_airflow_run_and_never_the_key(db, client):
    run(client, make_ledger(db, try_number=3), rows(2))
    cursor = db.cursor()
    cursor.execute("SELECT * FROM juspay_fulfilment_ledger")
    dumped = repr(cursor.fetchall())
    cursor.close()
    assert "'dag', 'run-1', 'push', 3," in dumped
    assert API_KEY not in dumped


def test_summary_counts_failures_for_a_run(db, client, sandbox):
    sandbox.orders.update({"L-1": "NEW"})
    run(client, make_ledger(db), rows(4))
    summary = make_ledger(db).run_report(run_id="run-1")
    assert summary.total == 4 and summary.failure_count == 1
    assert summary.errors == {"RESOURCE_NOT_FOUND": 1}
    assert summary.failures[0]["order_id"] == "L-1"


def test_table_name_is_checked():
    with pytest.raises(ValueError, match="plain"):
        Ledger(sqlite3.connect(":memory:"), merchant_id="m", table="x; DROP TABLE y")


def test_preview_writes_nothing_and_a_missing_table_reads_as_empty(db, client):
    ledger = Ledger(db, merchant_id=MERCHANT_ID)
    records = [FulfilmentRecord.from_mapping(r) for r in rows(3)]
    assert not ledger.exists()
    assert list(ledger.preview(records)) == records, "no table: everything would be sent"
    assert not ledger.exists(), "and nothing was created"
    run(client, make_ledger(db), rows(3))
    previewed = list(make_ledger(db).read_only().filter(records))
    assert [r.outcome.value for r in previewed] == ["skipped"] * 3
    assert set(make_ledger(db).states().values()) == {"sent"}


# -- failures mid-run: the first error is raised, the next try delivers everything once -------------


def ledger_for(connection, try_number, lease_s=2.0):
    ledger = Ledger(
        connection, merchant_id=MERCHANT_ID, run=RunInfo("dag", "run-1", "push", try_number), lease_s=lease_s
    )
    ledger.ensure_table()
    return ledger


def run_controlled(client, ledger, source):
    """A push as the operator runs it: the run's control, and the ledger closed after, whatever happened."""
    control = RunControl(abort=client.abort_in_flight)
    try:
        return push(
            source,
            report=ReportBuilder(),
            make_record=FulfilmentRecord.from_mapping,
            client=client,
            settings=PushSettings(max_concurrency=8),
            ledger=ledger,
            control=control,
        ).report.to_dict()
    finally:
        ledger.close()


def in_flight_keys(connection):
    """(order id, command) of the keys left in flight: the requests that were on the wire."""
    cursor = connection.cursor()
    cursor.execute("SELECT order_id, command FROM juspay_fulfilment_ledger WHERE state = 'in_flight'")
    found = {tuple(row) for row in cursor.fetchall()}
    cursor.close()
    connection.commit()
    return found


def test_a_warehouse_failing_mid_run_raises_its_own_error_and_the_next_try_delivers_all(db, client, sandbox):
    def failing_source():
        for i, row in enumerate(rows(600)):
            if i == 250:
                raise RuntimeError("warehouse connection lost")
            yield row

    with pytest.raises(RuntimeError, match="warehouse connection lost"):
        run_controlled(client, ledger_for(db, 1), failing_source())
    on_the_wire = in_flight_keys(db)
    assert on_the_wire == set(), "requests on the wire finished and were written; the unsent given back"
    report = run_controlled(client, ledger_for(db, 2), rows(600))
    assert (
        report["counts"]["sent"] + report["counts"]["already_fulfilled"] + report["counts"]["skipped"] == 600
    )
    assert sandbox.repeats() == {} and len(sandbox.accepted) == 600, "every row once, no repeat"
    assert set(ledger_for(db, 3).states().values()) == {"sent"}


def test_a_ledger_database_killed_mid_run_fails_with_the_original_error(sandbox, client):
    uri = os.environ.get("JUSPAY_TEST_POSTGRES_URI")
    if not uri:
        pytest.skip("no PostgreSQL: set JUSPAY_TEST_POSTGRES_URI (.ci/run does)")
    import psycopg2

    sandbox.configure(latency=0.01)
    victim, admin = psycopg2.connect(uri), psycopg2.connect(uri)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS juspay_fulfilment_ledger")
    pid = victim.get_backend_pid()

    def source():
        for i, row in enumerate(rows(3000)):
            if i == 1000:
                with admin.cursor() as cursor:
                    cursor.execute("SELECT pg_terminate_backend(%s)", (pid,))
            yield row

    started = time.monotonic()
    with pytest.raises(psycopg2.OperationalError) as info:
        run_controlled(client, ledger_for(victim, 1), source())
    assert time.monotonic() - started < 30
    assert "terminat" in str(info.value) or "closed the connection" in str(info.value), info.value
    assert "already closed" not in str(info.value), "the cause, not a second error from the last flush"

    fresh = psycopg2.connect(uri)
    unwritten = in_flight_keys(fresh)  # on the wire, or answered and not yet written, at the kill
    report = run_controlled(client, ledger_for(fresh, 2), rows(3000))
    delivered = report["counts"]["sent"] + report["counts"]["already_fulfilled"] + report["counts"]["skipped"]
    assert delivered == 3000 and report["counts"]["held_elsewhere"] == 0
    assert set(sandbox.repeats()) <= unwritten, "repeats only of what the lost ledger could not record"
    assert len(sandbox.accepted) == 3000
    assert "in_flight" not in set(ledger_for(fresh, 3).states().values())
    for connection in (victim, admin, fresh):
        connection.close()


OLD_DDL = """
CREATE TABLE juspay_fulfilment_ledger (
    merchant_id VARCHAR(128) NOT NULL, order_id VARCHAR(255) NOT NULL, command VARCHAR(64) NOT NULL,
    fulfillment_id VARCHAR(255) NOT NULL, payload_hash CHAR(64) NOT NULL, state VARCHAR(32) NOT NULL,
    attempts INTEGER NOT NULL, http_status INTEGER, error_code VARCHAR(255), message VARCHAR(2000),
    first_attempt_at VARCHAR(32) NOT NULL, last_attempt_at VARCHAR(32) NOT NULL, dag_id VARCHAR(250),
    run_id VARCHAR(250), task_id VARCHAR(250), try_number INTEGER,
    PRIMARY KEY (merchant_id, order_id, command, fulfillment_id)
)
"""


def test_a_ledger_table_of_the_first_release_gains_the_new_columns_and_keeps_its_rows(db, client, sandbox):
    cursor = db.cursor()
    cursor.execute(OLD_DDL)
    cursor.close()
    db.commit()
    ledger = Ledger(db, merchant_id=MERCHANT_ID, run=RunInfo("dag", "run-1", "push", 1))
    ledger.ensure_table()
    ledger.ensure_table()  # twice: nothing to add the second time
    first = run(client, ledger, rows(4))
    second = run(client, make_ledger(db, try_number=2), rows(4))
    assert (first["counts"]["sent"], second["counts"]["skipped"]) == (4, 4)


def test_a_live_run_renews_the_lease_of_the_keys_it_holds(db):
    ledger = Ledger(db, merchant_id=MERCHANT_ID, run=RunInfo("dag", "run-1", "push", 1), lease_s=0.2)
    ledger.ensure_table()
    list(ledger.filter([FulfilmentRecord.from_mapping(r) for r in rows(3)]))

    def leases():
        cursor = db.cursor()
        cursor.execute("SELECT lease_until FROM juspay_fulfilment_ledger")
        found = {row[0] for row in cursor.fetchall()}
        cursor.close()
        db.commit()
        return found

    (first,) = leases()
    time.sleep(0.06)  # past a quarter of the lease
    ledger.flush()  # nothing to write, but keys in flight: the lease moves on
    (renewed,) = leases()
    assert renewed > first
    other = Ledger(db, merchant_id=MERCHANT_ID, run=RunInfo("other", "run-2", "push", 1))
    assert list(other.filter([FulfilmentRecord.from_mapping(r) for r in rows(3)])) == [], "decided last"
    decided = list(other.settle_held(stopped=lambda: True))  # a stopped run does not wait
    assert [item.outcome for item in decided] == [Outcome.NOT_ATTEMPTED] * 3, "and is not green"


def test_the_heartbeat_renews_the_lease_while_no_row_moves(db, connect):
    ledger = Ledger(
        db, merchant_id=MERCHANT_ID, run=RunInfo("dag", "run-1", "push", 1), lease_s=0.4, connect=connect
    )
    ledger.ensure_table()
    list(ledger.filter([FulfilmentRecord.from_mapping(r) for r in rows(2)]))  # claimed, never written
    watcher = connect()

    def lease():
        cursor = watcher.cursor()
        cursor.execute("SELECT MIN(lease_until) FROM juspay_fulfilment_ledger")
        (value,) = cursor.fetchone()
        cursor.close()
        watcher.commit()
        return value

    first = lease()
    time.sleep(0.35)
    assert lease() > first, "renewed by the heartbeat, with no flush and no row done"
    ledger.close()
    stopped_at = lease()
    time.sleep(0.25)
    assert lease() == stopped_at, "a closed ledger (a dead run) renews nothing"
    watcher.close()


def test_a_heartbeat_that_cannot_renew_in_time_loses_the_lease_and_stops_the_run(db):
    def unreachable():
        raise OSError("the ledger database went away")

    ledger = Ledger(
        db, merchant_id=MERCHANT_ID, run=RunInfo("dag", "run-1", "push", 1), lease_s=0.4, connect=unreachable
    )
    ledger.ensure_table()
    list(ledger.filter([FulfilmentRecord.from_mapping(r) for r in rows(2)]))  # claims: the heartbeat starts
    stops = []
    ledger.on_lost(stops.append)
    time.sleep(0.6)  # past the lease less its margin without one renewal
    assert ledger.lost and "could not be renewed in time (OSError" in ledger.lost
    assert stops == [ledger.lost], "the run is told to stop, once"
    with pytest.raises(LeaseLost, match="could not be renewed"):
        ledger.admit(FulfilmentRecord.from_mapping(rows(1)[0]))  # no request leaves any more
    with pytest.raises(LeaseLost):
        list(ledger.filter([FulfilmentRecord.from_mapping(r) for r in rows(3)]))  # nothing more is claimed
    ledger.close()


def _journal_file(path, rows_in_table):
    """A SQLite file in the default rollback journal, holding ``rows_in_table`` rows to stream."""
    seed = sqlite3.connect(path)
    seed.execute("CREATE TABLE src (order_id TEXT, fulfillment_status TEXT, fulfillment_command TEXT)")
    seed.executemany(
        "INSERT INTO src VALUES (?, 'SUCCESS', 'NO_ACTION')", [(f"W-{i}",) for i in range(rows_in_table)]
    )
    seed.commit()
    assert seed.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    seed.close()


def test_a_ledger_in_the_file_a_query_streams_from_switches_it_to_wal_and_every_row_goes(
    tmp_path, client, sandbox
):
    """The README's set-up: warehouse and ledger in one SQLite file. In the rollback journal the open
    read of the streaming query locks out the ledger's claims ("database is locked" after the busy
    timeout); the ledger switches the file to WAL before the query starts (ensure_table, which every
    run that sends calls first)."""
    from airflow_provider_juspay.sync.sources import stream_query

    path = tmp_path / "warehouse.db"
    _journal_file(path, 2500)
    ledger = Ledger(
        sqlite3.connect(path, check_same_thread=False), merchant_id=MERCHANT_ID, lease_s=4, batch_size=50
    )
    ledger.ensure_table()
    warehouse = sqlite3.connect(path)
    report = run(client, ledger, stream_query(warehouse, "SELECT * FROM src", fetch_size=100))
    assert report["counts"]["sent"] == 2500, report
    assert len(sandbox.accepted) == 2500 and sandbox.repeats() == {}
    assert warehouse.execute("PRAGMA journal_mode").fetchone()[0] == "wal", "a lasting setting of the file"


def test_a_sqlite_ledger_that_cannot_switch_to_wal_fails_at_once_with_the_line_that_fixes_it(tmp_path):
    from airflow_provider_juspay.errors import LedgerUnusable

    path = tmp_path / "warehouse.db"
    _journal_file(path, 10)
    reader = sqlite3.connect(path)
    streaming = reader.execute("SELECT * FROM src")  # an open read holds the file's shared lock
    streaming.fetchone()
    started = time.monotonic()
    with pytest.raises(LedgerUnusable, match=r"PRAGMA journal_mode=WAL") as caught:
        Ledger(sqlite3.connect(path, timeout=0), merchant_id=MERCHANT_ID, lease_s=0.4).ensure_table()
    assert str(path) in str(caught.value) and "ledger_conn_id" in str(caught.value)
    assert time.monotonic() - started < 10, "at once, not after a run's worth of waiting"


def test_a_dry_run_leaves_the_sqlite_file_as_it_found_it(tmp_path):
    """A dry run writes nothing, not even the file's journal mode: WAL is for runs that write."""
    path = tmp_path / "warehouse.db"
    _journal_file(path, 3)
    ledger = Ledger(sqlite3.connect(path), merchant_id=MERCHANT_ID)
    preview = ledger.read_only()
    assert preview is not None
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    ledger.ensure_table()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
