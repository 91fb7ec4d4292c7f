"""The merchant's shared pacing budget: its statements on SQLite and PostgreSQL, the pacer that draws
from it, and what a run reports of it."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from airflow_provider_juspay.fulfilment import FulfilmentRecord
from airflow_provider_juspay.sync import shared_pacing
from airflow_provider_juspay.sync.concurrency import AdaptiveLimit
from airflow_provider_juspay.sync.control import RunControl
from airflow_provider_juspay.sync.engine import push
from airflow_provider_juspay.sync.ledger import Ledger
from airflow_provider_juspay.sync.ledger.budget import (
    BURST_S,
    FIRST_CUT,
    INITIAL_RATE,
    PROBE_GROWTH,
    REGROW,
    SLOW_START_GROWTH,
    BudgetStore,
)
from airflow_provider_juspay.sync.ledger.dialect import Database
from airflow_provider_juspay.sync.report import ReportBuilder
from airflow_provider_juspay.sync.settings import PushSettings
from airflow_provider_juspay.sync.shared_pacing import SharedPacer
from tests.helpers import MERCHANT_ID

TABLE = "juspay_fulfilment_ledger"


def store_on(connect, key="sandbox/m1"):
    db = Database(connect())
    db.limit_statements(5.0)
    store = BudgetStore(db, TABLE, key)
    store.ensure()
    return store


def test_tasks_queue_for_one_rate_and_a_burst_is_cut_once(db, connect):
    first, second = store_on(connect), store_on(connect)
    a = first.take(10)
    b = second.take(10)
    assert a.interval == pytest.approx(1 / INITIAL_RATE)
    # the second task's tokens come after the first's: one rate for both, not one each
    assert b.start == pytest.approx(a.start + 10 / INITIAL_RATE, abs=1e-6)
    sent = b.now + 0.001
    assert first.cut(sent, 0.9) == pytest.approx(INITIAL_RATE * FIRST_CUT)  # the first cut ends slow start
    # the other task's 429 of the same burst does not cut again ...
    assert second.cut(sent + BURST_S / 2, 0.9) is None
    assert first.state()["cuts"] == 1
    # ... a 429 of a request sent after the burst does, by the factor given
    later = first.state()["cut_at"] + BURST_S + 0.01
    assert second.cut(later, 0.9) == pytest.approx(INITIAL_RATE * FIRST_CUT * 0.9)


def test_the_rate_grows_only_for_a_busy_task_and_never_past_the_cap(db, connect, monkeypatch):
    monkeypatch.setattr("airflow_provider_juspay.sync.ledger.budget.GROW_EVERY_S", 0.0)
    store = store_on(connect)
    store.take(1, busy=False)
    assert store.state()["rate"] == pytest.approx(INITIAL_RATE), "an idle budget does not grow"
    store.take(1, busy=True)
    assert store.state()["rate"] == pytest.approx(INITIAL_RATE * SLOW_START_GROWTH)
    store.take(1, cap=50.0, busy=True)
    assert store.state()["rate"] == pytest.approx(50.0), "rate_limit caps the merchant's rate"
    store.cut(store.take(1).now + 1.0, 0.9)  # the first cut: slow start ends
    after_cut = store.state()["rate"]
    store.take(1, busy=True)
    assert store.state()["rate"] == pytest.approx(after_cut * PROBE_GROWTH), "probe near the cut"
    monkeypatch.setattr("airflow_provider_juspay.sync.ledger.budget.CALM_S", 0.0)
    store.take(1, busy=True)
    assert store.state()["rate"] == pytest.approx(after_cut * PROBE_GROWTH * REGROW), "calm long: regrow"


def test_a_hold_delays_every_task_and_members_are_counted_with_their_cap(db, connect):
    first, second = store_on(connect), store_on(connect)
    first.hold(2.0)
    grant = second.take(1)
    assert grant.start >= grant.now + 1.9, "a long Retry-After seen by one task holds the others"
    assert first.beat("a", None).count == 1
    members = second.beat("b", 120.0)
    assert (members.count, members.cap) == (2, 120.0)
    second.leave("b")
    assert first.beat("a", None).count == 1


def test_two_pacers_share_the_merchants_rate_in_turns(db, connect):
    pacers = [SharedPacer(store_on(connect), member=name) for name in ("a", "b")]
    due: dict[str, list[float]] = {"a": [], "b": []}
    began = time.monotonic()

    def draw(pacer):
        for _ in range(60):  # both want more than the budget gives: they queue for it
            delay = pacer.reserve()
            due[pacer.member].append(time.monotonic() + delay - began)
            time.sleep(delay)

    threads = [threading.Thread(target=draw, args=(p,)) for p in pacers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ends = [max(times) for times in due.values()]
    # 120 tokens at about 100/s (the rate grows while both wait): about a second, not 0.6 s each alone
    assert max(ends) > 0.6
    assert abs(ends[0] - ends[1]) < 0.35, f"taken in turns, so both finish together: {ends}"
    stats = [p.stats() for p in pacers]
    assert max(s["tasks"] for s in stats) == 2, stats
    assert all(0.3 < s["share"] < 0.7 for s in stats), stats


def test_an_unreachable_budget_makes_the_task_pace_itself_and_say_so(db, connect, caplog):
    store = store_on(connect)
    pacer = SharedPacer(store, member="a", rate_limit=50.0)
    pacer.reserve()
    store.db.connection.close()  # the database is gone
    caplog.set_level(logging.WARNING, logger=shared_pacing.__name__)
    delays = [pacer.reserve() for _ in range(5)]
    assert not pacer.drawing
    assert pacer.stats()["fallback"], "the report says why"
    assert "paces itself" in caplog.text
    assert max(delays) <= 1.0, "workers still get going, at the local pace"


def test_two_pushes_for_one_merchant_draw_from_one_budget(db, connect, client, sandbox):
    """From the engine's side: two runs with ledgers at once, against a limit; the reports name the
    budget, both share it, and nothing is lost or doubled."""
    sandbox.configure(rate_limit=150, retry_after=0.05)
    reports = {}

    def run(name):
        ledger = Ledger(connect(), merchant_id=MERCHANT_ID, connect=connect)
        ledger.ensure_table()
        pacer = ledger.shared_pacer("sandbox")
        assert pacer is not None
        control = RunControl(pacer=pacer, limiter=AdaptiveLimit(ceiling=16))
        rows = [
            {"order_id": f"{name}-{i}", "fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"}
            for i in range(300)
        ]
        try:
            reports[name] = push(
                rows,
                report=ReportBuilder(),
                make_record=FulfilmentRecord.from_mapping,
                client=client,
                settings=PushSettings(max_concurrency=16),
                ledger=ledger,
                control=control,
            ).report.to_dict()
        finally:
            control.close()
            ledger.close()

    threads = [threading.Thread(target=run, args=(name,)) for name in ("A", "B")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sandbox.doubles() == {}
    for report in reports.values():
        assert report["counts"]["sent"] == 300
        budget = report["pacing"]["budget"]
        assert budget["key"] == f"sandbox/{MERCHANT_ID}"
        assert budget["tasks"] == 2
        assert 0.2 < budget["share"] < 0.8, budget


def test_a_task_with_many_workers_holds_no_more_than_its_batch_so_a_newcomer_is_served_soon(db, connect):
    """Each worker of a task waits for the task's turn instead of taking a token of its own: else 50
    waiting workers would queue half a second of the merchant's rate ahead of any other task."""
    busy = SharedPacer(store_on(connect), member="busy")
    done = threading.Event()

    def worker():
        while not done.is_set():
            time.sleep(busy.reserve())

    workers = [threading.Thread(target=worker) for _ in range(50)]
    for thread in workers:
        thread.start()
    try:
        time.sleep(0.3)
        newcomer = SharedPacer(store_on(connect), member="new")
        assert newcomer.reserve() < 0.2, "the newcomer's first token comes within a batch or two"
    finally:
        done.set()
        busy.stopped.set()
        for thread in workers:
            thread.join()


class _Stalled:
    """A connection whose network stalls mid-statement: execute never returns (no timeout fires)."""

    def __init__(self, real):
        self.real, self.stall = real, threading.Event()

    def cursor(self):
        stall, cursor = self.stall, self.real.cursor()

        class Cursor:
            def execute(self, *args):
                if stall.is_set():
                    threading.Event().wait()  # forever: the statement never comes back
                return cursor.execute(*args)

            def __getattr__(self, name):
                return getattr(cursor, name)

        return Cursor()

    def __getattr__(self, name):
        return getattr(self.real, name)


_Stalled.__module__ = "sqlite3.stalled"  # the dialect is told by the driver's module: SQLite's


def test_a_budget_connection_that_hangs_costs_the_task_seconds_not_the_run(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(shared_pacing, "CALL_DEADLINE_S", 0.5)
    import sqlite3

    stalled = _Stalled(sqlite3.connect(tmp_path / "ledger.db", check_same_thread=False))
    store = BudgetStore(Database(stalled, marker=lambda _: "?"), TABLE, "sandbox/m1")
    store.ensure()
    pacer = SharedPacer(store, member="a", rate_limit=80.0)
    pacer.reserve()
    stalled.stall.set()
    caplog.set_level(logging.WARNING, logger=shared_pacing.__name__)
    began = time.monotonic()
    delays = [pacer.reserve() for _ in range(200)]  # the stock runs out: the next take hangs
    assert time.monotonic() - began < 3.0, "one deadline, then the task paces itself"
    assert not pacer.drawing and "BudgetHung" in pacer.stats()["fallback"]
    assert "paces itself" in caplog.text
    assert sum(delays) > 0.5, "paced locally at its cap, not unpaced"
    began = time.monotonic()
    pacer.close()
    assert time.monotonic() - began < 0.5, "closing does not touch the stuck connection"


def test_a_clock_stepped_back_costs_no_task_the_step(db, connect):
    """The database's clock went back an hour (NTP, a restored VM) after the row was written: tokens,
    holds and cuts stamped "in the future" must not make every task wait out the hour."""
    store = store_on(connect)
    now = store.take(1).now
    hour = now + 3600
    binds = store.db.binds()
    store.db.execute(
        f"UPDATE juspay_rate_budget SET tat = {binds()}, hold_until = {binds()}, cut_at = {binds()}",
        [hour, hour, hour],
    )
    grant = store.take(1)
    assert grant.start - grant.now <= 60.5, "no grant starts more than a minute's hold ahead"
    assert store.cut(grant.now + 1.0, 0.9) is not None, "a cut stamped in the future does not block cuts"
