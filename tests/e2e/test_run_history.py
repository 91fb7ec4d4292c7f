"""The run history from the user's side: the nightly example, run twice by `airflow dags test`, leaves one
row per run in juspay_sync_runs beside its ledger, with the run's ids, state and the report's counts."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import timedelta

import pytest

from tests.helpers import DAY, airflow_dags_test, xcoms

pytestmark = pytest.mark.e2e


def test_each_push_of_the_nightly_example_leaves_its_row_in_the_run_history(
    airflow_db, sandbox, make_warehouse
):
    path, seeded = make_warehouse(300)
    day_by_hand = f"{DAY + timedelta(days=1)}T12:00:00+00:00"
    for _ in range(2):
        done = airflow_dags_test("juspay_nightly_sync", sandbox, day_by_hand)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = xcoms("juspay_nightly_sync")[("push_fulfilments", "return_value")]
    with closing(sqlite3.connect(path)) as db:
        db.row_factory = sqlite3.Row
        runs = [dict(r) for r in db.execute("SELECT * FROM juspay_sync_runs ORDER BY started_at")]
    assert len(runs) == 2, "one row per run"
    first, again = runs
    for row in runs:
        assert (row["dag_id"], row["task_id"], row["state"]) == (
            "juspay_nightly_sync",
            "push_fulfilments",
            "success",
        )
        assert row["ended_at"] >= row["started_at"] and row["rows_read"] == seeded.total
        assert row["run_id"].startswith("manual__") and row["try_number"] == 1 and row["map_index"] == -1
    assert (
        first["sent"] == seeded.good
        and first["rejected"] == seeded.unknown
        and first["invalid"] == seeded.bad
    )
    assert again["skipped"] == seeded.good and again["sent"] == 0
    assert {k: again[k] for k in report["counts"]} == report["counts"], "the last run's row is its report"
    assert first["peak_concurrency"] >= 1 and first["throttled"] == 0
