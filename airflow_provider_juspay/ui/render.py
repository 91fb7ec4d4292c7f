"""The Juspay page and a run's tab as HTML: Jinja templates with every value escaped (no Airflow)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined

from airflow_provider_juspay.sync.ledger.runs import OUTCOME_COLUMNS
from airflow_provider_juspay.sync.ledger.views import DayCounts, FailureReason, HeldKey, OrderFailure, SyncRun
from airflow_provider_juspay.ui.chart import GROUPS, outcomes_chart

__all__ = ["PageData", "RunData", "render_page", "render_run"]

# autoescape on everything: order ids, messages and errors come from rows and from Juspay
_templates = Environment(
    loader=PackageLoader("airflow_provider_juspay.ui"), autoescape=True, undefined=StrictUndefined
)


@dataclass
class PageData:
    """What the Juspay page shows, merged over the configured ledgers."""

    now: datetime
    ledgers: list[str]
    runs: list[SyncRun] = field(default_factory=list)
    days: list[DayCounts] = field(default_factory=list)
    reasons: list[FailureReason] = field(default_factory=list)
    held_total: int = 0
    held: list[HeldKey] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    failure_days: int = 7


@dataclass
class RunData:
    """What a DAG run's Juspay tab shows."""

    now: datetime
    ledgers: list[str]
    dag_id: str
    run_id: str
    runs: list[SyncRun] = field(default_factory=list)
    failure_total: int = 0
    failures: list[OrderFailure] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def duration(seconds: float) -> str:
    """``0.4s``, ``42s``, ``3m 05s``, ``2h 01m``."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def _links(airflow_base: str) -> dict[str, object]:
    base = airflow_base.rstrip("/") + "/"

    def run_href(r: SyncRun) -> str:
        return f"{base}dags/{quote(r.dag_id, safe='')}/runs/{quote(r.run_id, safe='')}"

    def task_href(r: SyncRun) -> str:
        mapped = f"/mapped/{r.map_index}" if r.map_index >= 0 else ""
        return f"{run_href(r)}/tasks/{quote(r.task_id, safe='')}{mapped}"

    return {"run_href": run_href, "task_href": task_href}


def _common(now: datetime, ledgers: Sequence[str], problems: Sequence[str]) -> dict[str, object]:
    return {
        "now_text": now.strftime("%Y-%m-%d %H:%M:%S"),
        "ledgers": list(ledgers),
        "problems": list(problems),
        "outcome_names": OUTCOME_COLUMNS,
        # a run's table: started/task/state (or task/try/state) + outcomes + read, rate, duration, pacing
        "columns": 3 + len(OUTCOME_COLUMNS) + 4 + 1,
        "duration": duration,
    }


def render_page(data: PageData, airflow_base: str = "/", nonce: str = "") -> str:
    """The page: outcomes per day, recent runs (linked to Airflow's pages), failure reasons, keys in
    flight. ``airflow_base`` is the path Airflow's UI is served under; ``nonce`` lets the page's one
    script run under the response's Content-Security-Policy."""
    return _templates.get_template("page.html").render(
        **_common(data.now, data.ledgers, data.problems),
        **_links(airflow_base),
        chart=outcomes_chart(data.days),
        groups=GROUPS,
        runs=data.runs,
        reasons=data.reasons,
        failure_days=data.failure_days,
        held_total=data.held_total,
        held=data.held,
        nonce=nonce,
    )


def render_run(data: RunData) -> str:
    """A DAG run's tab: each push (task, shard, try) and the orders still undelivered."""
    return _templates.get_template("run.html").render(
        **_common(data.now, data.ledgers, data.problems),
        dag_id=data.dag_id,
        run_id=data.run_id,
        runs=data.runs,
        failure_total=data.failure_total,
        failures=data.failures,
    )
