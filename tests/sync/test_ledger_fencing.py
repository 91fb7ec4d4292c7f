"""The lease as a fence (issue 23), on SQLite and PostgreSQL: holders that do not renew are waited for
until their lease ends (within the wait limit), an earlier try gets no exception, a stepped worker clock
changes nothing, and what a run knows is written after it lost its lease."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_juspay.errors import LeaseLost
from airflow_provider_juspay.fulfilment import FulfilmentRecord
from airflow_provider_juspay.sync.control import RunControl
from airflow_provider_juspay.sync.engine import push
from airflow_provider_juspay.sync.ledger import Ledger, RunInfo
from airflow_provider_juspay.sync.ledger.rows import timestamp
from airflow_provider_juspay.sync.report import ReportBuilder
from airflow_provider_juspay.sync.settings import PushSettings
from tests.helpers import MERCHANT_ID
from tests.sync.test_ledger import progressing, rows, run


def records(n, first=0):
    return [FulfilmentRecord.from_mapping(r) for r in rows(first + n)][first:]


def holder_ledger(db, lease_s, try_number=1, **kwargs):
    ledger = Ledger(
        db,
        merchant_id=MERCHANT_ID,
        run=RunInfo("dag", "run-1", "push", try_number),
        lease_s=lease_s,
        **kwargs,
    )
    ledger.ensure_table()
    return ledger


def test_a_dead_holder_with_a_longer_lease_is_waited_for_then_its_keys_are_sent(db, client, sandbox):
    """The dead run's lease (3 s) is longer than the waiter's (0.5 s): the waiter waits for it to end,
    takes the keys over and delivers them; it does not count them held_elsewhere and end green."""
    dead = holder_ledger(db, lease_s=3.0)
    list(dead.filter(records(4)))  # then it dies: no heartbeat, no renewal
    waiter = Ledger(db, merchant_id=MERCHANT_ID, run=RunInfo("nightly", "run-2", "push", 1), lease_s=0.5)
    started = time.monotonic()
    report = run(client, waiter, rows(6))
    assert time.monotonic() - started >= 2.5, "not before the dead run's own lease had ended"
    assert report["counts"]["sent"] == 6 and report["counts"]["held_elsewhere"] == 0
    assert len(sandbox.accepted) == 6 and sandbox.doubles() == {}


def test_keys_held_past_the_wait_limit_fail_the_run_naming_the_holder_and_when_they_free(db, client, sandbox):
    dead = holder_ledger(db, lease_s=300.0)
    list(dead.filter(records(3)))
    waiter = Ledger(
        db, merchant_id=MERCHANT_ID, run=RunInfo("nightly", "run-2", "push", 1), lease_s=0.5, wait_limit_s=1.0
    )
    report = run(client, waiter, rows(5))
    assert report["counts"]["sent"] == 2 and report["counts"]["not_attempted"] == 3
    assert report["errors"] == {"HELD_BY_STALLED_RUN": 3}
    [failure, *_] = report["failures"]
    assert "dag/run-1/push try 1" in failure["message"] and "until 20" in failure["message"]
    assert len(sandbox.requests) == 2, "the stalled holder's keys were not sent"


def test_a_lease_left_by_a_0_2_run_is_waited_out_then_its_keys_are_sent(db, client, sandbox):
    """0.2 wrote in-flight rows with a long lease and no heartbeat; across the upgrade they are a holder
    that never renews: waited for until the lease ends, then sent."""
    ledger = holder_ledger(db, lease_s=60)
    until = timestamp(datetime.now(timezone.utc) + timedelta(seconds=2))
    cursor = db.cursor()
    cursor.execute(
        "INSERT INTO juspay_fulfilment_ledger (merchant_id, order_id, command, fulfillment_id, payload_hash,"
        " state, attempts, first_attempt_at, last_attempt_at, dag_id, run_id, task_id, try_number, claim_id,"
        f" lease_until) VALUES ('{MERCHANT_ID}', 'L-0', 'INITIATE_REFUND', 'F-0', 'x', 'in_flight', 0,"
        f" '2026-01-01', '2026-01-01', 'old', 'run-0.2', 'push', 1, 'c02', '{until}')"
    )
    cursor.close()
    db.commit()
    started = time.monotonic()
    report = run(client, ledger, rows(3))
    assert time.monotonic() - started >= 1.5
    assert report["counts"]["sent"] == 3 and report["counts"]["held_elsewhere"] == 0


def test_an_earlier_try_still_running_keeps_its_keys(db, client, sandbox, connect):
    """Airflow may start try 2 while try 1 still runs: try 1 renews, so try 2 leaves its keys to it."""
    first = holder_ledger(db, lease_s=0.6, connect=connect)
    list(first.filter(records(4)))
    second = Ledger(connect(), merchant_id=MERCHANT_ID, run=RunInfo("dag", "run-1", "push", 2), lease_s=0.6)
    with progressing(first):
        try:
            report = run(client, second, rows(6))
        finally:
            first.close()
    assert report["counts"]["held_elsewhere"] == 4 and report["counts"]["sent"] == 2
    assert len(sandbox.requests) == 2, "nothing try 1 holds was sent by try 2"


class SteppedWallClock:
    """A worker's wall clock that jumps by ``step`` after ``after`` readings (an NTP step, a VM resumed)."""

    def __init__(self, step: timedelta, after: int = 1) -> None:
        self.step, self.after, self.readings = step, after, 0

    def __call__(self) -> datetime:
        self.readings += 1
        now = datetime.now(timezone.utc)
        return now + self.step if self.readings > self.after else now


@pytest.mark.parametrize("direction", [+1, -1])
def test_a_worker_clock_stepped_two_leases_changes_no_lease(db, client, sandbox, connect, direction):
    lease_s = 1.0
    holder = holder_ledger(
        db, lease_s=lease_s, connect=connect, wall_clock=SteppedWallClock(timedelta(seconds=-2 * direction))
    )
    list(holder.filter(records(3)))
    other = Ledger(
        connect(),
        merchant_id=MERCHANT_ID,
        run=RunInfo("other", "run-2", "push", 1),
        lease_s=lease_s,
        wall_clock=SteppedWallClock(timedelta(seconds=2 * direction * lease_s)),
    )
    with progressing(holder):
        try:
            report = run(client, other, rows(5))
            assert report["counts"]["held_elsewhere"] == 3, "a live run's keys were not taken"
            assert len(sandbox.requests) == 2
        finally:
            holder.close()
    # The holder is gone (its keys given back at close): nothing is kept past its lease either.
    again = run(client, Ledger(db, merchant_id=MERCHANT_ID, run=RunInfo("x", "run-3", "push", 1)), rows(5))
    assert again["counts"]["sent"] == 3 and again["counts"]["skipped"] == 2


def test_a_run_that_lost_its_lease_sends_nothing_more_but_writes_what_it_knows(db, client, sandbox):
    ledger = holder_ledger(db, lease_s=0.4)
    claimed = list(ledger.filter(records(3)))
    answered = client.fulfil(claimed[0])  # on the wire within the lease
    time.sleep(0.5)  # paused past its lease: no renewal confirmed since the claim
    with pytest.raises(LeaseLost, match="not renewed in time"):
        ledger.admit(claimed[1])
    assert len(sandbox.requests) == 1
    list(ledger.write_outcomes([answered]))
    ledger.flush()
    assert ledger.states()[("L-0", "INITIATE_REFUND", "F-0")] == "sent", "written after the lease was lost"
    ledger.close()
    assert set(ledger.states().values()) == {"sent", "not_attempted"}, "the unsent two given back"


def test_a_heartbeat_renewing_every_50_ms_beside_outcome_writes_keeps_the_lease(db, client, connect):
    """Renewals (one key at a time, in key order) beside outcomes written in batches (key order too), on
    keys whose text order is not their claim order: the run keeps its lease and writes every outcome."""
    ledger = Ledger(
        db,
        merchant_id=MERCHANT_ID,
        run=RunInfo("dag", "run-1", "push", 1),
        lease_s=0.4,
        connect=connect,
        batch_size=150,
        flush_every_s=0.05,
    )
    ledger.ensure_table()
    control = RunControl()
    many = [
        {"order_id": f"D-{i}", "fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"}
        for i in range(2500)
    ]
    report = push(
        many,
        report=ReportBuilder(),
        make_record=FulfilmentRecord.from_mapping,
        client=client,
        settings=PushSettings(max_concurrency=16),
        ledger=ledger,
        control=control,
    ).report.to_dict()
    ledger.close()
    assert report["stopped"] is None and report["counts"]["sent"] == 2500, report["stopped"]
    assert set(ledger.states().values()) == {"sent"}
