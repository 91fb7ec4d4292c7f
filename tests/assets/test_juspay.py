"""Assets: the juspay:// URI scheme, and the counts a push puts in its asset events (no DAG run)."""

from __future__ import annotations

import pytest

from airflow_provider_juspay.operators.fulfilment import BulkFulfilmentOperator
from airflow_provider_juspay.sync.report import RunReport
from tests.helpers import MERCHANT_ID, FakeTaskInstance


@pytest.mark.parametrize(
    "uri",
    [
        "juspay://m_01/fulfillment",
        "JUSPAY://m_01/fulfillment",
        "juspay://m_01/Fulfilment/",
        "juspay://m_01",
    ],
)
def test_airflow_normalises_juspay_uris_with_the_registered_handler(uri):
    from airflow.sdk import Asset

    assert Asset(uri).uri == "juspay://m_01/fulfillment"


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("juspay:///fulfillment", "names the merchant"),
        ("juspay://m_01:8080/fulfillment", "not a merchant id"),
        ("juspay://m_01/orders", "path must be /fulfillment"),
        ("juspay://m_01/fulfillment?day=1", "no query"),
    ],
)
def test_a_wrong_juspay_uri_is_refused_saying_why(uri, why):
    from airflow.sdk import Asset

    with pytest.raises(ValueError, match=why):
        Asset(uri)


def test_the_events_of_a_partitioned_run_carry_its_key_and_the_counts(juspay_conn):
    from airflow.sdk import Asset
    from airflow.sdk.execution_time.context import OutletEventAccessors

    asset = Asset(f"juspay://{MERCHANT_ID}/fulfillment")
    other = Asset("s3://bucket/unrelated")
    op = BulkFulfilmentOperator(task_id="push", records=[], outlets=[asset, other])
    op._report = RunReport(total=4, counts={"sent": 3, "rejected": 1})
    events = OutletEventAccessors()
    op.announce({"ti": FakeTaskInstance(), "outlet_events": events, "partition_key": "2026-11-26"})

    extra = events[asset].extra
    assert extra["total"] == 4 and extra["counts"]["sent"] == 3 and extra["failure_ratio"] == 0.25
    assert (extra["dag_id"], extra["run_id"], extra["partition_key"]) == (
        "unit_dag",
        "unit_run",
        "2026-11-26",
    )
    if hasattr(events[asset], "partition_keys"):  # Airflow 3.2+: the key goes on the event itself
        assert events[asset].partition_keys == {"2026-11-26"}
    assert "total" in events[other].extra, "every Asset outlet is told, whatever its scheme"


def test_an_outlet_of_another_merchant_is_warned_about_and_a_dry_run_says_so(juspay_conn, capfd):
    from airflow.sdk import Asset
    from airflow.sdk.execution_time.context import OutletEventAccessors

    asset = Asset("juspay://someone_else/fulfillment")
    op = BulkFulfilmentOperator(task_id="push", records=[], outlets=[asset], dry_run=True)
    op._report = RunReport(total=2, counts={"not_attempted": 2}, dry_run=True)
    events = OutletEventAccessors()
    op.announce({"ti": FakeTaskInstance(), "outlet_events": events})
    logged = "".join(capfd.readouterr())
    assert "names merchant 'someone_else'" in logged and MERCHANT_ID in logged
    assert events[asset].extra["dry_run"] is True and events[asset].extra["failure_count"] == 0
    assert "partition_key" not in events[asset].extra


def test_an_event_that_cannot_take_the_report_does_not_fail_a_delivered_push(juspay_conn, capfd):
    from airflow.sdk import Asset

    class Refusing(dict):
        def __getitem__(self, key):
            raise RuntimeError("no accessor for this outlet")

    asset = Asset(f"juspay://{MERCHANT_ID}/fulfillment")
    op = BulkFulfilmentOperator(task_id="push", records=[], outlets=[asset])
    op._report = RunReport(total=1, counts={"sent": 1})
    op.announce({"ti": FakeTaskInstance(), "outlet_events": Refusing()})
    assert "carries no report: no accessor for this outlet" in "".join(capfd.readouterr())
