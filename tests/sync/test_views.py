"""What the Juspay page reads (LedgerViews) on SQLite and PostgreSQL: runs, days, failure reasons and
keys in flight, each only for the DAGs the viewer may read, from real pushes to the sandbox."""

from __future__ import annotations

from datetime import timedelta

from airflow_provider_juspay.fulfilment import FulfilmentRecord
from airflow_provider_juspay.sync.ledger import Ledger, RunInfo
from airflow_provider_juspay.sync.ledger.runs import OUTCOME_COLUMNS
from airflow_provider_juspay.sync.ledger.views import LedgerViews
from tests.helpers import MERCHANT_ID
from tests.sync.test_ledger import rows, run


def ledger_for(db, dag_id, run_id="run-1", task_id="push", map_index=None, lease_s=60.0):
    ledger = Ledger(
        db, merchant_id=MERCHANT_ID, run=RunInfo(dag_id, run_id, task_id, 1, map_index), lease_s=lease_s
    )
    ledger.ensure_table()
    return ledger


def pushed(db, client, dag_id, source, **kwargs):
    ledger = ledger_for(db, dag_id, **kwargs)
    ledger.run_started()
    report = run(client, ledger, source)
    ledger.run_ended("success", report)
    return ledger, report


def unknown(n, start=0):
    """Rows of orders the sandbox does not know (rejected); each DAG its own orders."""
    return [{**r, "order_id": f"UNKNOWN-{start + i}"} for i, r in enumerate(rows(n))]


def test_runs_days_and_failure_reasons_match_the_pushes_and_only_readable_dags(db, client):
    _, mine = pushed(db, client, "nightly", [*rows(8), *unknown(3)], map_index=2)
    _, theirs = pushed(db, client, "secret_dag", unknown(4, start=5), run_id="run-9")
    views = LedgerViews(db, "juspay_fulfilment_ledger")
    now = views.now()

    (shown,) = views.recent_runs({"nightly"}, now)
    assert (shown.dag_id, shown.run_id, shown.task_id, shown.map_index) == ("nightly", "run-1", "push", 2)
    assert shown.counts == {k: mine["counts"].get(k, 0) for k in OUTCOME_COLUMNS}
    assert (shown.counts["sent"], shown.counts["rejected"], shown.shown_state) == (8, 3, "success")
    assert {r.dag_id for r in views.recent_runs({"nightly", "secret_dag"}, now)} == {"nightly", "secret_dag"}
    assert views.recent_runs(set(), now) == [], "no readable DAG: nothing, not everything"

    days = views.outcomes_per_day({"nightly"}, now)
    assert len(days) == 14 and days[-1].day == now.date().isoformat()
    assert days[-1].counts["sent"] == 8 and days[-1].counts["rejected"] == 3
    assert all(sum(d.counts.values()) == 0 for d in days[:-1])

    (reason,) = views.top_failures({"nightly"}, now)
    assert (reason.state, reason.orders) == ("rejected", 3) and reason.error_code
    assert reason.example_order_id in {"UNKNOWN-0", "UNKNOWN-1", "UNKNOWN-2"}
    both = views.top_failures({"nightly", "secret_dag"}, now)
    assert sum(r.orders for r in both) == 3 + theirs["counts"]["rejected"]
    assert views.top_failures({"nightly"}, now + timedelta(days=8)) == [], "a week's window"

    total, failures = views.failures_of(r.claim_id for r in views.run("nightly", "run-1", now))
    assert total == 3 and sorted(f.order_id for f in failures) == ["UNKNOWN-0", "UNKNOWN-1", "UNKNOWN-2"]
    assert all(f.error_code and f.message and f.task_id == "push" and f.map_index == 2 for f in failures)


def test_keys_in_flight_name_their_holder_and_a_dead_holder_shows_as_killed(db, client):
    holder = ledger_for(db, "nightly", run_id="run-2", lease_s=0.2)
    holder.run_started()
    list(holder.filter([FulfilmentRecord.from_mapping(r) for r in rows(5)]))  # claimed, never answered
    views = LedgerViews(db, "juspay_fulfilment_ledger")
    now = views.now()
    total, held = views.held_keys({"nightly"}, now)
    assert total == 5 and {k.order_id for k in held} == {f"L-{i}" for i in range(5)}
    assert {(k.dag_id, k.run_id, k.run_state) for k in held} == {("nightly", "run-2", "running")}
    assert views.held_keys({"other"}, now) == (0, [])
    holder._lease.stop()  # the heartbeat stops, as in a killed process
    later = now + timedelta(seconds=5)
    assert {k.run_state for k in views.held_keys({"nightly"}, later)[1]} == {"killed"}
    (shown,) = views.recent_runs({"nightly"}, later)
    assert shown.killed and shown.shown_state == "killed"


def test_two_ledger_tables_in_one_schema_each_show_their_own_runs(db, client):
    """The run history is one table per schema: a view of one ledger lists only that ledger's runs."""
    cursor = db.cursor()
    cursor.execute("DROP TABLE IF EXISTS other_ledger")  # PostgreSQL's database outlives the test
    cursor.close()
    db.commit()
    pushed(db, client, "nightly", rows(3))
    other = Ledger(
        db, merchant_id=MERCHANT_ID, run=RunInfo("nightly", "run-2", "push", 1), table="Other_Ledger"
    )
    other.ensure_table()
    other.run_started()
    other.run_ended("success", run(client, other, rows(2)))
    default, second = LedgerViews(db, "juspay_fulfilment_ledger"), LedgerViews(db, "other_ledger")
    now = default.now()
    assert [r.run_id for r in default.recent_runs({"nightly"}, now)] == ["run-1"]
    assert [r.run_id for r in second.recent_runs({"nightly"}, now)] == ["run-2"], "names compare in any case"
    assert second.run("nightly", "run-1", now) == []
    (today,) = [d for d in second.outcomes_per_day({"nightly"}, now) if sum(d.counts.values())]
    assert (today.counts["sent"], today.counts["already_fulfilled"]) == (0, 2), "Juspay had them: only run-2"
    (mine,) = [d for d in default.outcomes_per_day({"nightly"}, now) if sum(d.counts.values())]
    assert mine.counts["sent"] == 3 and mine.counts["already_fulfilled"] == 0
