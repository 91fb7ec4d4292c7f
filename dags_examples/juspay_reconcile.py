"""Reconcile after each nightly push: scheduled on the Juspay asset, it reads the push's counts.

``juspay_nightly_sync`` declares ``outlets=[JUSPAY_FULFILMENTS]``; every successful push adds an asset
event whose extra holds the run's summary (total, counts by outcome, failure ratio, dag and run ids).
This DAG runs once per such event (or per batch of them) and reads those numbers: the place to compare
them with Juspay's settlement report, or with the warehouse, before finance closes the day.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pendulum
from airflow.sdk import dag, task

from airflow_provider_juspay.assets.juspay import create_asset

#: Your merchant id: the URI is juspay://<merchant id>/fulfillment (see the README, Assets).
JUSPAY_FULFILMENTS = create_asset(merchant_id="demo_merchant")


def summarise(extras: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Add up the pushes that triggered this run; their runs and failure ratios are listed too."""
    runs = [dict(extra) for extra in extras]
    counts: dict[str, int] = {}
    for run in runs:
        for outcome, n in run.get("counts", {}).items():
            counts[outcome] = counts.get(outcome, 0) + n
    total = sum(run.get("total", 0) for run in runs)
    failures = sum(run.get("failure_count", 0) for run in runs)
    return {
        "pushes": [f"{run.get('dag_id')}/{run.get('run_id')}" for run in runs],
        "total": total,
        "counts": counts,
        "failure_ratio": failures / total if total else 0.0,
        "dry_runs": sum(bool(run.get("dry_run")) for run in runs),
    }


# [START howto_asset_consumer]
@dag(
    schedule=[JUSPAY_FULFILMENTS],
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    tags=["juspay", "example"],
)
def juspay_reconcile():
    @task(multiple_outputs=False)  # one XCom value: the summary
    def reconcile(triggering_asset_events=None) -> dict[str, Any]:
        """The pushes' counts, from the asset events that started this run."""
        events = triggering_asset_events[JUSPAY_FULFILMENTS] if triggering_asset_events else []
        summary = summarise(event.extra for event in events)
        print(f"Juspay pushes to reconcile: {summary}")  # the task log
        return summary

    reconcile()


juspay_reconcile()
# [END howto_asset_consumer]
