"""What the tests share besides fixtures: the test credentials, the sandbox connection, running a DAG."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
API_KEY = "sk_test_SECRET_9f8e7d6c5b4a3921"
MERCHANT_ID = "merchant_tests"
#: Short waits so retry tests take milliseconds; real runs use the documented defaults.
FAST_RETRY_EXTRAS = {"initial_wait": 0.01, "max_wait": 0.05, "read_timeout": 1.0, "connect_timeout": 1.0}


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


DAY = date(2026, 11, 26)


def in_flight_keys(connection) -> set[tuple[str, str]]:
    """(order id, command) of the ledger's keys in flight: after a kill, what was on the wire or answered
    and not yet written, the only keys a later run may send again (the sandbox's ``repeats()``)."""
    cursor = connection.cursor()
    try:
        cursor.execute("SELECT order_id, command FROM juspay_fulfilment_ledger WHERE state = 'in_flight'")
        return {(order_id, command) for order_id, command in cursor.fetchall()}
    finally:
        cursor.close()
        connection.commit()


SELECT_ALL = "SELECT * FROM fulfilments ORDER BY id"


@dataclass
class DagRunOutcome:
    """What a ``dag.test()`` run left in the metadata DB."""

    state: str
    task_states: dict[str, str]
    xcom: dict[tuple[str, str], object]


def run_dag(dag_id: str, conf: dict | None = None) -> DagRunOutcome:
    """Run a DAG of tests/dags in-process with ``dag.test()`` and read back states and XComs."""
    from airflow.utils.session import create_session

    dag = DagBag(dag_folder=str(REPO / "tests" / "dags")).get_dag(dag_id)
    dagrun = dag.test(run_conf=conf or {})
    with create_session() as session:
        states = {ti.task_id: str(ti.state) for ti in dagrun.get_task_instances(session=session)}
    return DagRunOutcome(str(dagrun.state), states, xcoms(dag_id, dagrun.run_id))


def DagBag(dag_folder: str):
    """Airflow's DagBag, from where this Airflow keeps it (3.1: airflow.models; later: dag_processing)."""
    try:
        from airflow.dag_processing.dagbag import DagBag as Bag
    except ImportError:
        from airflow.models.dagbag import DagBag as Bag
    return Bag(dag_folder=dag_folder)


def xcoms(dag_id: str, run_id: str | None = None) -> dict[tuple, object]:
    """XComs of a DAG run (the latest run when ``run_id`` is None), by (task id, key)."""
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        if run_id is None:
            run_id = (
                session.query(DagRun.run_id)
                .filter(DagRun.dag_id == dag_id)
                .order_by(DagRun.id.desc())
                .limit(1)
                .scalar()
            )
        rows = session.query(XComModel).filter(XComModel.dag_id == dag_id, XComModel.run_id == run_id)
        # Mapped tasks push one value per map index: their keys carry it as a third part.
        return {
            (row.task_id, row.key, *([row.map_index] if row.map_index >= 0 else [])): _xcom_value(row.value)
            for row in rows
        }


def _xcom_value(value: object) -> object:
    """XComs are JSON text in the metadata DB, except values Airflow stores as they are (extra links)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


class FakeTaskInstance:
    """Just enough of a task instance for unit tests of execute()/poke(): XCom in a dict, run identity."""

    def __init__(self, pulled: dict[tuple[str, str], object] | None = None, try_number: int = 1) -> None:
        self.pulled = pulled or {}
        self.pushed: dict[str, object] = {}
        self.dag_id, self.run_id, self.task_id, self.map_index = "unit_dag", "unit_run", "unit_task", -1
        self.try_number = try_number

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = json.loads(json.dumps(value))  # what XCom can hold, as XCom would

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> object:
        return self.pulled.get((task_ids, key))


def context_with(ti: FakeTaskInstance) -> dict:
    return {"ti": ti}


def airflow_dags_test(
    dag_id: str, sandbox, *args: str, folder: Path | None = None, **env: str
) -> subprocess.CompletedProcess:
    """``airflow dags test`` in its own process, ``juspay_default`` on the sandbox; ``env`` adds variables."""
    return subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", dag_id, *args],
        env={
            **os.environ,
            "AIRFLOW__CORE__DAGS_FOLDER": str(folder or REPO / "dags_examples"),
            "AIRFLOW_CONN_JUSPAY_DEFAULT": conn_json(sandbox.base_url),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
