"""Shared fixtures: a throw-away Airflow home, the sandbox on loopback, and a connection to it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Airflow reads its home and config at import time: point it at a throw-away one first.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="juspay-airflow-home-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).parent / "dags")

import pytest  # noqa: E402

from airflow_provider_juspay.testing.sandbox import Sandbox  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
API_KEY = "sk_test_SECRET_9f8e7d6c5b4a3921"
MERCHANT_ID = "merchant_tests"
#: Short waits so retry tests take milliseconds; real runs use the documented defaults.
FAST_RETRY_EXTRAS = {"initial_wait": 0.01, "max_wait": 0.05, "read_timeout": 1.0, "connect_timeout": 1.0}


@pytest.fixture
def sandbox():
    """A fresh sandbox: every order CHARGED except ``UNPAID-*`` (NEW) and ``UNKNOWN-*`` (not found)."""
    orders = {f"UNPAID-{i}": "NEW" for i in range(10)} | {f"UNKNOWN-{i}": "NOT_FOUND" for i in range(10)}
    with Sandbox(api_key=API_KEY, merchant_id=MERCHANT_ID, orders=orders, seed=7) as sb:
        yield sb


def conn_json(base_url: str, **extra: object) -> str:
    """The env-var form of a ``juspay`` connection to the sandbox."""
    return json.dumps(
        {
            "conn_type": "juspay",
            "login": MERCHANT_ID,
            "password": API_KEY,
            "host": base_url,
            "extra": {**FAST_RETRY_EXTRAS, **extra},
        }
    )


@pytest.fixture
def juspay_conn(sandbox, monkeypatch):
    """``juspay_default`` pointing at the sandbox, as users set it: an AIRFLOW_CONN_ variable."""
    monkeypatch.setenv("AIRFLOW_CONN_JUSPAY_DEFAULT", conn_json(sandbox.base_url))
    return "juspay_default"


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


@dataclass
class DagRunOutcome:
    """What a ``dag.test()`` run left in the metadata DB."""

    state: str
    task_states: dict[str, str]
    xcom: dict[tuple[str, str], object]


def run_dag(dag_id: str, conf: dict | None = None) -> DagRunOutcome:
    """Run a DAG of tests/dags in-process with ``dag.test()`` and read back states and XComs."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    dag = DagBag(dag_folder=str(REPO / "tests" / "dags")).get_dag(dag_id)
    dagrun = dag.test(run_conf=conf or {})
    with create_session() as session:
        states = {ti.task_id: str(ti.state) for ti in dagrun.get_task_instances(session=session)}
        rows = session.query(XComModel).filter(XComModel.dag_id == dag_id, XComModel.run_id == dagrun.run_id)
        xcom = {(row.task_id, row.key): _xcom_value(row.value) for row in rows}
    return DagRunOutcome(str(dagrun.state), states, xcom)


def _xcom_value(value: object) -> object:
    return json.loads(value) if isinstance(value, str) else value
