"""The Juspay page and run tab, served by Airflow's API server (a FastAPI app the plugin mounts).

Every route needs an authenticated Airflow user (the UI's cookie or a Bearer token, checked by
Airflow's own ``get_user``); when that check cannot be imported the app stays closed (503). Each
user sees only the DAGs the auth manager lets them read. Nothing here writes: the ledger database
named by ``[juspay] ledger_conn_id`` is read with bounded queries, and a ledger that cannot be read
is named on the page without its error text (which could carry connection details; it is logged).
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations, which name a local.
import asyncio
import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse

from airflow_provider_juspay.sync.ledger.dialect import Database
from airflow_provider_juspay.sync.ledger.schema import DEFAULT_TABLE
from airflow_provider_juspay.sync.ledger.views import DayCounts, LedgerViews
from airflow_provider_juspay.ui.render import PageData, RunData, render_page, render_run

log = logging.getLogger(__name__)

__all__ = ["URL_PREFIX", "create_app", "ledger_sources"]

URL_PREFIX = "/juspay"
#: Longest a page waits on one ledger statement.
STATEMENT_TIMEOUT_S = 10.0
#: Runs listed on the page; days a failure counts in "top failure reasons".
RECENT_RUNS, FAILURE_DAYS = 50, 7
#: Ledger reads run on these few threads of the page's own, never on the API server's: a ledger that
#: hangs (a connection that never answers) holds at most these, and Airflow's own routes go on.
READ_THREADS = 4
#: Longest a request waits for its ledger reads before it answers 504.
PAGE_DEADLINE_S = 20.0


class _Reads:
    """The page's own small pool for ledger reads, each request with a deadline; when every thread is
    still held (by a ledger that stopped answering) a request is refused at once (503)."""

    def __init__(self, threads: int = READ_THREADS) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="juspay-page")
        self._free = threading.BoundedSemaphore(threads)

    async def run(self, work: Callable[[], Any]) -> Any:
        if not self._free.acquire(blocking=False):
            raise HTTPException(503, "The Juspay page is still waiting on its ledger for earlier requests.")

        def job() -> Any:
            try:
                return work()
            finally:
                self._free.release()

        try:
            return await asyncio.wait_for(asyncio.wrap_future(self._pool.submit(job)), PAGE_DEADLINE_S)
        except asyncio.TimeoutError as exc:
            log.warning("Juspay page: the ledger did not answer within %.0f s", PAGE_DEADLINE_S)
            raise HTTPException(
                504,
                f"The ledger did not answer within {PAGE_DEADLINE_S:.0f} s; the API server's log names it.",
            ) from exc


def ledger_sources() -> list[tuple[str, str]]:
    """The ledgers the page reads: ``[juspay] ledger_conn_id`` (comma-separated; ``conn_id`` or
    ``conn_id:schema.table``), each table defaulting to ``[juspay] ledger_table``."""
    from airflow.configuration import conf

    default_table = conf.get("juspay", "ledger_table", fallback=DEFAULT_TABLE) or DEFAULT_TABLE
    sources = []
    for entry in (conf.get("juspay", "ledger_conn_id", fallback="") or "").split(","):
        conn_id, _, table = entry.strip().partition(":")
        if conn_id:
            sources.append((conn_id.strip(), table.strip() or default_table))
    return sources


def _user_dependency() -> Callable[..., Any]:
    """Airflow's own check of the caller (cookie or Bearer); closed when it cannot be imported."""
    try:
        from airflow.api_fastapi.core_api.security import get_user
    except Exception as exc:  # an Airflow without it: fail closed, never open
        reason = f"{type(exc).__name__}"

        def closed() -> None:
            raise HTTPException(503, f"The Juspay page cannot check who you are on this Airflow ({reason}).")

        return closed
    return get_user


def _readable_dag_ids(user: Any) -> set[str]:
    try:
        from airflow.api_fastapi.app import get_auth_manager

        return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))
    except Exception as exc:  # closed: without the auth manager's answer, no DAG is shown
        log.exception("Juspay page: the auth manager could not list the DAGs the user may read")
        raise HTTPException(503, "The Juspay page cannot tell which DAGs you may read.") from exc


@contextmanager
def _views(conn_id: str, table: str) -> Iterator[LedgerViews]:
    from airflow_provider_juspay.utils.sql import db_api_hook

    connection = db_api_hook(conn_id).get_conn()
    try:
        db = Database(connection)
        try:
            db.limit_statements(STATEMENT_TIMEOUT_S)
        except Exception:  # a database without a statement timeout: the page still reads it
            db.rollback()
        yield LedgerViews(db, table)
    finally:
        connection.close()


def _read_each_ledger(read: Callable[[LedgerViews], Any], problems: list[str]) -> list[tuple[str, Any]]:
    """``read`` on each configured ledger: what each gave, by name; a ledger that fails is a problem
    named on the page (its error, which may carry connection details, goes to the log only)."""
    results = []
    for conn_id, table in ledger_sources():
        name = f"{conn_id}:{table}"
        try:
            with _views(conn_id, table) as views:
                results.append((name, read(views)))
        except Exception as exc:
            log.warning("Juspay page: ledger %s could not be read", name, exc_info=True)
            problems.append(
                f"Ledger {name} could not be read ({type(exc).__name__}); the API server's log has the "
                "error. If no push has used this ledger yet, its tables do not exist yet."
            )
    return results


def _headers(nonce: str) -> dict[str, str]:
    return {
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; "
            "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
        ),
    }


def _airflow_base(request: Request) -> str:
    root = str(request.scope.get("root_path", ""))
    return root[: -len(URL_PREFIX)] if root.endswith(URL_PREFIX) else "/"


def _no_ledger() -> list[str]:
    return [
        "No ledger is configured for this page: set [juspay] ledger_conn_id "
        "(AIRFLOW__JUSPAY__LEDGER_CONN_ID) on the API server to the connection your pushes' "
        "ledger_conn_id names."
    ]


def create_app() -> FastAPI:
    """The app: ``/`` the page across DAGs, ``/run?dag_id=&run_id=`` a DAG run's tab."""
    user_dependency = _user_dependency()
    app = FastAPI(title="Juspay syncs", docs_url=None, redoc_url=None, openapi_url=None)

    reads = _Reads()

    @app.get("/", response_class=HTMLResponse)
    async def page(request: Request, user: Annotated[Any, Depends(user_dependency)]) -> HTMLResponse:
        dag_ids = await asyncio.to_thread(_readable_dag_ids, user)  # Airflow's metadata database
        nonce = secrets.token_urlsafe(16)
        base = _airflow_base(request)
        html = await reads.run(lambda: render_page(_page_data(dag_ids), airflow_base=base, nonce=nonce))
        return HTMLResponse(html, headers=_headers(nonce))

    @app.get("/run", response_class=HTMLResponse)
    async def run_tab(
        dag_id: Annotated[str, Query(max_length=250)],
        run_id: Annotated[str, Query(max_length=250)],
        user: Annotated[Any, Depends(user_dependency)],
    ) -> HTMLResponse:
        if dag_id not in await asyncio.to_thread(_readable_dag_ids, user):
            raise HTTPException(403, "You may not read this DAG.")
        html = await reads.run(lambda: render_run(_run_data(dag_id, run_id)))
        return HTMLResponse(html, headers=_headers(secrets.token_urlsafe(16)))

    return app


def _page_data(dag_ids: set[str]) -> PageData:
    """The page's figures, merged over the configured ledgers."""
    problems: list[str] = [] if ledger_sources() else _no_ledger()

    def read(views: LedgerViews) -> tuple[Any, ...]:
        now = views.now()
        held = views.held_keys(dag_ids, now)
        days = views.outcomes_per_day(dag_ids, now)
        reasons = views.top_failures(dag_ids, now, days=FAILURE_DAYS)
        return now, views.recent_runs(dag_ids, now), days, reasons, held

    data = PageData(now=datetime.now(timezone.utc), ledgers=[], problems=problems, failure_days=FAILURE_DAYS)
    for name, (now, runs, days, reasons, (held_total, held)) in _read_each_ledger(read, problems):
        data.now = now
        data.ledgers.append(name)
        data.runs += runs
        data.days = _add_days(data.days, days)
        data.reasons += reasons
        data.held_total += held_total
        data.held += held
    data.runs = sorted(data.runs, key=lambda r: r.started_at, reverse=True)[:RECENT_RUNS]
    data.reasons.sort(key=lambda f: -f.orders)
    return data


def _run_data(dag_id: str, run_id: str) -> RunData:
    """A DAG run's pushes and undelivered orders, over the configured ledgers."""
    problems: list[str] = [] if ledger_sources() else _no_ledger()

    def read(views: LedgerViews) -> tuple[Any, ...]:
        now = views.now()
        runs = views.run(dag_id, run_id, now)
        return now, runs, views.failures_of(r.claim_id for r in runs)

    data = RunData(
        now=datetime.now(timezone.utc), ledgers=[], dag_id=dag_id, run_id=run_id, problems=problems
    )
    for name, (now, runs, (total, failures)) in _read_each_ledger(read, problems):
        data.now = now
        data.ledgers.append(name)
        data.runs += runs
        data.failure_total += total
        data.failures += failures
    return data


def _add_days(a: list[DayCounts], b: list[DayCounts]) -> list[DayCounts]:
    """Two ledgers' days added up (the same window: the same days)."""
    if not a:
        return b
    by_day = {d.day: dict(d.counts) for d in a}
    for d in b:
        counts = by_day.setdefault(d.day, {})
        for name, n in d.counts.items():
            counts[name] = counts.get(name, 0) + n
    return [DayCounts(day, counts) for day, counts in sorted(by_day.items())[-len(a) :]]
