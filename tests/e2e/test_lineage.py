"""OpenLineage from real DAG runs: the real OpenLineage provider, its file transport, our facets."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest

from tests.helpers import API_KEY, DAY, REPO, airflow_dags_test

pytestmark = pytest.mark.e2e

EXAMPLES = REPO / "dags_examples"


def run_with_lineage(dag_id: str, sandbox, events: Path, *args: str, folder: Path = EXAMPLES):
    """``airflow dags test`` with OpenLineage writing every event to ``events`` (one JSON per line)."""
    transport = {"type": "file", "log_file_path": str(events), "append": True}
    return airflow_dags_test(
        dag_id,
        sandbox,
        *args,
        folder=folder,
        AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps(transport),
        AIRFLOW__OPENLINEAGE__NAMESPACE="juspay-tests",
    )


def task_events(events: Path, task_id: str) -> dict[str, dict]:
    """The events of one task, by event type (START, COMPLETE, FAIL)."""
    found: dict[str, dict] = {}
    for line in events.read_text().splitlines():
        event = json.loads(line)
        if event["job"]["name"].endswith(f".{task_id}"):
            found[event["eventType"]] = event
    return found


def test_nightly_push_emits_warehouse_table_to_juspay_with_the_counts(
    airflow_db, sandbox, warehouse, tmp_path
):
    events = tmp_path / "openlineage.jsonl"
    done = run_with_lineage("juspay_nightly_sync", sandbox, events, (DAY + timedelta(days=1)).isoformat())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    complete = task_events(events, "push_fulfilments")["COMPLETE"]
    path = json.loads(os.environ["AIRFLOW_CONN_WAREHOUSE"])["host"]
    inputs = [(d["namespace"], d["name"]) for d in complete["inputs"]]
    assert inputs == [(f"sqlite://{path}", "main.fulfilments")]
    (output,) = complete["outputs"]
    assert (output["namespace"], output["name"]) == (sandbox.base_url, "orders/fulfillment")
    assert output["outputFacets"]["outputStatistics"]["rowCount"] == warehouse.good
    assert {f["name"] for f in output["facets"]["schema"]["fields"]} >= {
        "order_id",
        "fulfillment_status",
        "fulfillment_command",
    }
    counts = complete["run"]["facets"]["juspayFulfilment"]
    assert counts["total"] == warehouse.total
    assert counts["counts"]["sent"] == warehouse.good
    assert counts["counts"]["rejected"] == warehouse.unknown and counts["counts"]["invalid"] == warehouse.bad
    assert counts["failureCount"] == warehouse.unknown + warehouse.bad
    assert API_KEY not in events.read_text()


def test_failed_push_emits_fail_with_the_counts_and_the_error(airflow_db, sandbox, warehouse, tmp_path):
    events = tmp_path / "openlineage.jsonl"
    conf = {"sql": "SELECT order_id, fulfillment_status, fulfillment_command FROM fulfilments"}
    done = run_with_lineage(
        "juspay_test_bulk_strict", sandbox, events, "--conf", json.dumps(conf), folder=REPO / "tests" / "dags"
    )
    assert done.returncode != 0 or "state=failed" in done.stdout + done.stderr

    failed = task_events(events, "push")
    assert "COMPLETE" not in failed
    fail = failed["FAIL"]
    assert [d["name"] for d in fail["inputs"]] == ["main.fulfilments"]
    counts = fail["run"]["facets"]["juspayFulfilment"]
    assert counts["counts"]["rejected"] == warehouse.unknown
    assert counts["failureCount"] > 0.01 * counts["total"]
    assert "max_failure_ratio" in fail["run"]["facets"]["errorMessage"]["message"]
    # Fewer columns than the day has: a row whose only fault was in another column goes too.
    sent = counts["counts"]["sent"]
    assert sent >= warehouse.good and len(sandbox.accepted) == sent
    assert fail["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == sent


def test_records_from_xcom_have_no_input_and_a_single_order_counts_one(airflow_db, sandbox, tmp_path):
    events = tmp_path / "openlineage.jsonl"
    records = [{"order": f"ORD-L{i}"} for i in range(5)]
    done = run_with_lineage(
        "juspay_test_bulk_records",
        sandbox,
        events,
        "--conf",
        json.dumps({"records": records}),
        folder=REPO / "tests" / "dags",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    complete = task_events(events, "push")["COMPLETE"]
    assert complete["inputs"] == []
    assert complete["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 5

    single = tmp_path / "single.jsonl"
    done = run_with_lineage(
        "juspay_test_single",
        sandbox,
        single,
        "--conf",
        json.dumps({"order_id": "ORD-L9"}),
        folder=REPO / "tests" / "dags",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    complete = task_events(single, "fulfil")["COMPLETE"]
    assert complete["inputs"] == []
    assert complete["outputs"][0]["name"] == "orders/fulfillment"
    assert complete["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 1
    assert complete["run"]["facets"]["juspayFulfilment"]["counts"]["sent"] == 1
