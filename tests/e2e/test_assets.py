"""Assets in a real run: the nightly example's asset event in the metadata database, read by reconcile."""

from __future__ import annotations

import importlib.util
from datetime import timedelta

import pytest

from tests.helpers import DAY, REPO, airflow_dags_test

pytestmark = pytest.mark.e2e

EXAMPLES = REPO / "dags_examples"


def test_nightly_push_records_its_counts_in_the_asset_event_and_reconcile_reads_them(
    airflow_db, sandbox, warehouse
):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    done = airflow_dags_test("juspay_nightly_sync", sandbox, (DAY + timedelta(days=1)).isoformat())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    with create_session() as session:
        extras = session.scalars(
            select(AssetEvent.extra)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(
                AssetModel.uri == "juspay://demo_merchant/fulfillment",
                AssetEvent.source_dag_id == "juspay_nightly_sync",
            )
        ).all()
    assert extras, "no asset event in the metadata database"
    extra = extras[-1]
    assert extra["total"] == warehouse.total and extra["counts"]["sent"] == warehouse.good
    assert extra["failure_count"] == warehouse.unknown + warehouse.bad
    assert extra["dag_id"] == "juspay_nightly_sync" and extra["task_id"] == "push_fulfilments"
    assert extra["run_id"]

    spec = importlib.util.spec_from_file_location("juspay_reconcile", EXAMPLES / "juspay_reconcile.py")
    reconcile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reconcile)
    assert reconcile.JUSPAY_FULFILMENTS.uri == "juspay://demo_merchant/fulfillment"
    summary = reconcile.summarise([extra])
    assert summary["total"] == warehouse.total and summary["counts"]["rejected"] == warehouse.unknown
    assert summary["pushes"] == [f"juspay_nightly_sync/{extra['run_id']}"]
