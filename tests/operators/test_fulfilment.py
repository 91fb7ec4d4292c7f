"""FulfilmentSyncOperator in real DAG runs (``dag.test()``) against the sandbox."""

from __future__ import annotations

import pytest

from airflow_provider_juspay.operators.fulfilment import FulfilmentSyncOperator
from tests.helpers import API_KEY, run_dag

pytestmark = pytest.mark.e2e

GOOD = {"fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"}


def test_init_does_no_connection_work(monkeypatch):
    from airflow.sdk import BaseHook

    def forbidden(*args, **kwargs):
        raise AssertionError("connection fetched in __init__")

    monkeypatch.setattr(BaseHook, "get_connection", forbidden)
    op = FulfilmentSyncOperator(task_id="t", order_id="O", **GOOD)
    assert "hook" not in op.__dict__


def test_exactly_one_of_order_id_or_records():
    with pytest.raises(ValueError, match="exactly one"):
        FulfilmentSyncOperator(task_id="t")
    with pytest.raises(ValueError, match="exactly one"):
        FulfilmentSyncOperator(task_id="t", order_id="O", records=[])


def test_single_order_with_templated_fields_is_sent_and_returned(airflow_db, sandbox, juspay_conn):
    run = run_dag("juspay_test_single", {"order_id": "ORD-77", "time": "2026-11-26T18:30:00+05:30"})
    assert run.state == "success"
    result = run.xcom[("fulfil", "return_value")]
    assert result["order_id"] == "ORD-77" and result["outcome"] == "sent" and result["http_status"] == 200
    [received] = sandbox.requests
    assert received.order_id == "ORD-77"
    assert received.form["fulfillment_time"] == "2026-11-26T13:00:00"
    assert received.form["fulfillment_data"].startswith('{"run":"manual__')


def test_rejected_order_fails_the_task_and_names_it(airflow_db, sandbox, juspay_conn):
    run = run_dag("juspay_test_single", {"order_id": "UNPAID-1"})
    assert run.task_states["fulfil"] == "failed"
    report = run.xcom[("fulfil", "report")]
    [failure] = report["failures"]
    assert (failure["order_id"], failure["outcome"], failure["error_code"]) == (
        "UNPAID-1",
        "rejected",
        "RESOURCE_NOT_FOUND",
    )
    assert report["counts"]["rejected"] == report["total"] == 1
    # Deprecated (removed in 2.0), still pushed in 1.x: the results under "results".
    [result] = run.xcom[("fulfil", "results")]
    assert (result["order_id"], result["outcome"]) == ("UNPAID-1", "rejected")


def test_records_from_xcom_one_bad_row_does_not_stop_the_others(airflow_db, sandbox, juspay_conn):
    records = [
        {"order_id": "R-1", **GOOD},
        {"order_id": "R-2", "fulfillment_status": "MAYBE", "fulfillment_command": "NO_ACTION"},
        {"order_id": "R-3", **GOOD},
    ]
    run = run_dag("juspay_test_records", {"records": records})
    assert run.task_states["fulfil"] == "failed"
    results = {r["order_id"]: r for r in run.xcom[("fulfil", "results")]}
    assert results["R-1"]["outcome"] == results["R-3"]["outcome"] == "sent"
    assert results["R-2"]["outcome"] == "invalid" and "MAYBE" in results["R-2"]["message"]
    assert sorted(r.order_id for r in sandbox.requests) == ["R-1", "R-3"]


def test_a_failure_limit_returns_every_outcome_green(airflow_db, sandbox, juspay_conn):
    records = [
        {"order_id": "L-1", "fulfillment_status": "SUCCESS"},
        {"order_id": "UNKNOWN-2", "fulfillment_status": "SUCCESS"},
    ]
    run = run_dag(
        "juspay_test_records", {"records": [{"order_id": "X-1", **GOOD}], "lenient_records": records}
    )
    assert run.task_states["fulfil_lenient"] == "success"
    outcomes = {r["order_id"]: r["outcome"] for r in run.xcom[("fulfil_lenient", "return_value")]}
    assert outcomes == {"L-1": "sent", "UNKNOWN-2": "rejected"}
    assert sandbox.accepted[("L-1", "INVOICE")] == 1, "defaults filled the command"


def test_bad_api_key_stops_the_run_and_keeps_the_key_out_of_xcom(airflow_db, sandbox, monkeypatch):
    from tests.helpers import conn_json

    monkeypatch.setenv(
        "AIRFLOW_CONN_JUSPAY_DEFAULT", conn_json(sandbox.base_url).replace(API_KEY, API_KEY + "_old")
    )
    records = [{"order_id": f"A-{i}", **GOOD} for i in range(3)]
    run = run_dag("juspay_test_records", {"records": records})
    assert run.task_states["fulfil"] == "failed"
    outcomes = [r["outcome"] for r in run.xcom[("fulfil", "results")]]
    assert outcomes == ["failed", "not_attempted", "not_attempted"]
    assert len(sandbox.requests) == 1, "no request after the 401"
    assert API_KEY not in repr(run.xcom)


def test_fail_on_error_is_deprecated_and_maps_onto_the_limits():
    from airflow.exceptions import AirflowProviderDeprecationWarning

    with pytest.warns(AirflowProviderDeprecationWarning, match="fail_on_error is deprecated.*2.0"):
        lenient = FulfilmentSyncOperator(task_id="a", order_id="O", fail_on_error=False, **GOOD)
    assert (lenient.max_failures, lenient.max_failure_ratio) == (None, 1.0)
    with pytest.warns(AirflowProviderDeprecationWarning):
        strict = FulfilmentSyncOperator(task_id="b", order_id="O", fail_on_error=True, **GOOD)
    plain = FulfilmentSyncOperator(task_id="c", order_id="O", **GOOD)
    assert (strict.max_failures, strict.max_failure_ratio) == (plain.max_failures, plain.max_failure_ratio)
