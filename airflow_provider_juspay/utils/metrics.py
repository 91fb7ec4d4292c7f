"""A push's figures through Airflow's own metrics (StatsD or OpenTelemetry, as the deployment sets them).

Sent once per push, when it ends, from its report: what Airflow's ``[metrics]`` section configures
receives them; with metrics off, nothing is sent. Names (docs: "See your syncs"):

- ``juspay.push.rows.<outcome>``: rows that ended in each outcome (counter);
- ``juspay.push.requests``: HTTP requests sent, every attempt (counter);
- ``juspay.push.throttled``: requests answered 429 (counter);
- ``juspay.push.server_errors``: requests answered with a 5xx (counter);
- ``juspay.push.retries.<cause>``: retried attempts by cause, e.g. ``SERVICE_UNAVAILABLE`` (counter);
- ``juspay.push.duration``: the push's wall time (timer, ms);
- ``juspay.push.concurrency.peak`` and ``.final``: requests in flight the pacing reached (gauges).

Every figure carries the tags ``dag_id``, ``task_id`` and ``merchant_id`` (for backends with tags).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["PREFIX", "emit"]

PREFIX = "juspay.push"
#: Where Stats lives, newest Airflow first (3.2 moved it into the Task SDK).
_STATS_MODULES = ("airflow.sdk.observability.stats", "airflow.observability.stats", "airflow.stats")


def _stats() -> Any:
    for path in _STATS_MODULES:
        try:
            return importlib.import_module(path).Stats
        except (ImportError, AttributeError):
            continue
    return None


def emit(report: Mapping[str, Any], *, dag_id: str, task_id: str, merchant_id: str) -> None:
    """Send the figures of one push's report (``RunReport.to_dict()``); a failure is said, never raised."""
    stats = _stats()
    if stats is None:
        return
    tags = {"dag_id": dag_id, "task_id": task_id, "merchant_id": merchant_id}
    try:
        for outcome, count in (report.get("counts") or {}).items():
            if count:
                stats.incr(f"{PREFIX}.rows.{outcome}", count, tags=tags)
        for name in ("requests", "server_errors"):
            if report.get(name):
                stats.incr(f"{PREFIX}.{name}", int(report[name]), tags=tags)
        pacing = report.get("pacing") or {}
        if pacing.get("throttled"):
            stats.incr(f"{PREFIX}.throttled", int(pacing["throttled"]), tags=tags)
        for cause, count in (report.get("retries") or {}).items():
            stats.incr(f"{PREFIX}.retries.{cause}", int(count), tags=tags)
        took = timedelta(seconds=float(report.get("duration_s") or 0.0))
        stats.timing(f"{PREFIX}.duration", took, tags=tags)
        for which in ("peak", "final"):
            value = pacing.get(f"{which}_concurrency")
            if value is not None:
                stats.gauge(f"{PREFIX}.concurrency.{which}", value, tags=tags)
    except Exception as exc:  # metrics are a view: the push is done either way
        log.warning("Could not send the push's metrics (%s: %s)", type(exc).__name__, exc)
