"""Shared fixtures: a throw-away Airflow home, the sandbox on loopback, and a connection to it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Airflow reads its home and config at import time: point it at a throw-away one first.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="juspay-airflow-home-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).parent / "dags")

import sqlite3  # noqa: E402
from contextlib import closing  # noqa: E402

import pytest  # noqa: E402

from airflow_provider_juspay.client import JuspayClient  # noqa: E402
from airflow_provider_juspay.config import ClientConfig, RetryPolicy  # noqa: E402
from airflow_provider_juspay.testing.sandbox import Sandbox  # noqa: E402
from airflow_provider_juspay.testing.warehouse import seed_warehouse  # noqa: E402
from tests.helpers import API_KEY, DAY, MERCHANT_ID, conn_json  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    """Airflow's deprecation warnings are errors here (other libraries' stay ignored, see pyproject):
    the provider must raise none. Their classes differ between Airflow versions: only those present.
    Not ``DeprecatedImportWarning``: Airflow 3.1 raises it from its own imports, whatever a provider does.
    """
    import importlib

    for path in (
        "airflow.exceptions.AirflowProviderDeprecationWarning",
        "airflow.exceptions.RemovedInAirflow4Warning",
        "airflow.sdk.exceptions.RemovedInAirflow4Warning",
    ):
        module, _, name = path.rpartition(".")
        try:
            getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        config.addinivalue_line("filterwarnings", f"error::{path}")


@pytest.fixture
def sandbox():
    """A fresh sandbox: every order CHARGED except ``UNPAID-*`` (NEW) and ``UNKNOWN-*`` (not found)."""
    orders = {f"UNPAID-{i}": "NEW" for i in range(10)} | {f"UNKNOWN-{i}": "NOT_FOUND" for i in range(10)}
    with Sandbox(api_key=API_KEY, merchant_id=MERCHANT_ID, orders=orders, seed=7) as sb:
        yield sb


@pytest.fixture
def juspay_conn(sandbox, monkeypatch):
    """``juspay_default`` pointing at the sandbox, as users set it: an AIRFLOW_CONN_ variable."""
    monkeypatch.setenv("AIRFLOW_CONN_JUSPAY_DEFAULT", conn_json(sandbox.base_url))
    return "juspay_default"


@pytest.fixture
def make_warehouse(tmp_path, monkeypatch, sandbox):
    """Builds a SQLite warehouse (connection ``warehouse``) of n rows; the sandbox learns the unknown ids."""

    def make(n: int = 600):
        path = tmp_path / f"warehouse_{n}.db"
        with closing(sqlite3.connect(path)) as db:
            seeded = seed_warehouse(db, DAY, n)
        sandbox.orders.update({order_id: "NOT_FOUND" for order_id in seeded.unknown_ids})
        monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
        return path, seeded

    return make


@pytest.fixture
def warehouse(make_warehouse):
    """A day of 600 mixed rows in the ``warehouse`` connection."""
    return make_warehouse(600)[1]


@pytest.fixture
def postgres_warehouse(monkeypatch, sandbox):
    """The same rows in PostgreSQL (connection ``warehouse_pg``), where .ci/run provides a server."""
    uri = os.environ.get("JUSPAY_TEST_POSTGRES_URI")
    if not uri:
        pytest.skip(
            "no PostgreSQL: set JUSPAY_TEST_POSTGRES_URI=postgresql://user@127.0.0.1:5432/db (.ci/run does)"
        )
    import psycopg2

    with closing(psycopg2.connect(uri)) as db:
        with db.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS fulfilments")
        db.commit()
        seeded = seed_warehouse(db, DAY, 600, placeholder="%s")
    sandbox.orders.update({order_id: "NOT_FOUND" for order_id in seeded.unknown_ids})
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_PG", uri)
    return seeded


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_db(request, tmp_path):
    """An empty ledger database: SQLite, and PostgreSQL where .ci/run provides one."""
    if request.param == "sqlite":
        conn = sqlite3.connect(tmp_path / "ledger.db")
    else:
        uri = os.environ.get("JUSPAY_TEST_POSTGRES_URI")
        if not uri:
            pytest.skip("no PostgreSQL: set JUSPAY_TEST_POSTGRES_URI (.ci/run does)")
        import psycopg2

        conn = psycopg2.connect(uri)
        with conn.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS juspay_fulfilment_ledger")
            cursor.execute("DROP TABLE IF EXISTS juspay_sync_runs")
            cursor.execute("DROP TABLE IF EXISTS juspay_rate_budget")
            cursor.execute("DROP TABLE IF EXISTS juspay_rate_members")
        conn.commit()
    yield conn
    conn.close()


@pytest.fixture
def ledger_client(sandbox):
    """A client of the sandbox with two quick attempts."""
    config = ClientConfig(
        base_url=sandbox.base_url,
        merchant_id=MERCHANT_ID,
        api_key=API_KEY,
        retry=RetryPolicy(max_attempts=2, initial_wait=0.001, max_wait=0.01),
    )
    with JuspayClient(config) as c:
        yield c


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated SQLite metadata DB for tests that run real DAGs."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
        timeout=300,
    )
    return _AIRFLOW_HOME


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Where PostgreSQL must be there (.ci/run sets JUSPAY_REQUIRE_POSTGRES), its tests fail, not skip."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("JUSPAY_REQUIRE_POSTGRES") and "PostgreSQL" in str(report.longrepr):
        report.outcome = "failed"
        report.longrepr = f"JUSPAY_REQUIRE_POSTGRES is set, and this would have skipped: {report.longrepr}"
