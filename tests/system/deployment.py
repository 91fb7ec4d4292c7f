"""A real Airflow on this machine, loopback only: PostgreSQL, Redis, and Airflow with the CeleryExecutor
(api-server, scheduler, dag-processor, triggerer, two Celery workers). Every process it starts is
stopped when the ``with`` block ends, also on failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[2]
ADMIN_PASSWORD = "juspay-system-test"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def say(message: str) -> None:
    print(f"[system-test {time.strftime('%H:%M:%S')}] {message}", flush=True)


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # not up yet
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout:.0f}s (last: {last!r})")


class Deployment:
    """Starts the services and Airflow; ``env`` is what every Airflow process (and the CLI) sees."""

    def __init__(self, *, dags: list[Path], connections: dict[str, str], workers: int = 2) -> None:
        """:param dags: folders and files copied into the DAGs folder (with their ``sql/`` files)."""
        self.root = Path(tempfile.mkdtemp(prefix="juspay-system-"))
        dags_folder = self.root / "dags"
        dags_folder.mkdir()
        for source in dags:
            if source.is_dir():
                shutil.copytree(source, dags_folder, dirs_exist_ok=True)
            else:
                shutil.copy(source, dags_folder)
        self.home = self.root / "airflow"
        self.home.mkdir()
        self.logs = self.root / "process-logs"
        self.logs.mkdir()
        self.pg_port, self.redis_port, self.api_port = free_port(), free_port(), free_port()
        self.workers = workers
        self.processes: list[tuple[str, subprocess.Popen]] = []
        self._pg_stop: list[str] | None = None
        #: Add ``/<database>``: ``airflow`` (metadata) or ``warehouse``.
        self.pg_uri = f"postgresql://postgres@127.0.0.1:{self.pg_port}"
        self.api = f"http://127.0.0.1:{self.api_port}"
        (self.home / "simple_auth_manager_passwords.json.generated").write_text(
            json.dumps({"admin": ADMIN_PASSWORD})
        )
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(self.home),
            "PYTHONPATH": str(REPO),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__PARALLELISM": "16",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://postgres@127.0.0.1:{self.pg_port}/airflow",
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://postgres@127.0.0.1:{self.pg_port}/airflow",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "3",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__BASE_URL": self.api,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__CORE__FERNET_KEY": "",
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
                self.home / "simple_auth_manager_passwords.json.generated"
            ),
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "300",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
            # The OpenLineage provider (a test extra) stays quiet: no transport is configured.
            "AIRFLOW__OPENLINEAGE__DISABLED": "True",
            "AIRFLOW_CONN_WAREHOUSE": f"postgresql://postgres@127.0.0.1:{self.pg_port}/warehouse",
            # The Juspay page reads the ledger the example DAGs keep in the warehouse
            "AIRFLOW__JUSPAY__LEDGER_CONN_ID": "warehouse",
            **{f"AIRFLOW_CONN_{name.upper()}": value for name, value in connections.items()},
        }
        self.env.pop("JUSPAY_TEST_POSTGRES_URI", None)

    # -- services ------------------------------------------------------------------------------------

    def __enter__(self) -> Deployment:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start(self) -> None:
        self._start_postgres()
        self._spawn(
            "redis",
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
        )
        wait_for(
            "Redis", lambda: socket.create_connection(("127.0.0.1", self.redis_port), 1).close() or True, 30
        )
        say(f"Redis on 127.0.0.1:{self.redis_port}")
        self.airflow("db", "migrate", timeout=600)
        say("Airflow metadata database migrated (PostgreSQL)")
        self._spawn(
            "api-server",
            [
                sys.executable,
                "-m",
                "airflow",
                "api-server",
                "--port",
                str(self.api_port),
                "--host",
                "127.0.0.1",
            ],
        )
        self._spawn("scheduler", [sys.executable, "-m", "airflow", "scheduler", "--skip-serve-logs"])
        self._spawn("dag-processor", [sys.executable, "-m", "airflow", "dag-processor"])
        self._spawn("triggerer", [sys.executable, "-m", "airflow", "triggerer", "--skip-serve-logs"])
        for n in range(1, self.workers + 1):
            name = f"worker{n}"
            self._spawn(
                name,
                [
                    sys.executable,
                    "-m",
                    "airflow",
                    "celery",
                    "worker",
                    "--celery-hostname",
                    f"{name}@%h",
                    "--skip-serve-logs",
                    "--concurrency",
                    "3",
                ],
                extra_env={
                    "JUSPAY_WORKER_NAME": name,
                    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.system.hostnames.worker_name",
                },
            )
        wait_for(
            "the api-server", lambda: requests.get(f"{self.api}/api/v2/monitor/health", timeout=5).ok, 180
        )
        say(
            f"Airflow on {self.api}: api-server, scheduler, dag-processor, triggerer, "
            f"{self.workers} Celery workers"
        )

    def _start_postgres(self) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        if not bins:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql; .ci/run does)")
        bin_dir = bins[-1]
        data = self.root / "pg"
        data.mkdir()
        run_as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(data, "postgres")
            shutil.chown(self.root, "postgres")
            run_as = ["runuser", "-u", "postgres", "--"]
        subprocess.run(
            [*run_as, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *run_as,
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(data / "server.log"),
                "-w",
                "-o",
                f"-p {self.pg_port} -k {data} -c listen_addresses=127.0.0.1 -c max_connections=300",
                "start",
            ],
            check=True,
            capture_output=True,
        )
        self._pg_stop = [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]
        import psycopg2

        db = psycopg2.connect(f"{self.pg_uri}/postgres")
        db.autocommit = True
        with db.cursor() as cursor:
            cursor.execute("CREATE DATABASE airflow")
            cursor.execute("CREATE DATABASE warehouse")
        db.close()
        say(f"PostgreSQL on 127.0.0.1:{self.pg_port} (databases airflow, warehouse)")

    def _spawn(self, name: str, command: list[str], extra_env: dict[str, str] | None = None) -> None:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        process = subprocess.Popen(
            command,
            env={**self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            start_new_session=True,  # its own process group: stopped with every child it forks
        )
        self.processes.append((name, process))

    def stop(self) -> None:
        """Stop every process started, Airflow first (TERM, then KILL), then Redis and PostgreSQL."""
        for _, process in reversed(self.processes):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for name, process in reversed(self.processes):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{name} did not stop on SIGTERM: killed")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # whatever its children left behind
        self.processes.clear()
        if self._pg_stop is not None:
            subprocess.run(self._pg_stop, capture_output=True, check=False)
            self._pg_stop = None

    def alive(self) -> list[str]:
        return [name for name, process in self.processes if process.poll() is None]

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    # -- the CLI and the REST API -----------------------------------------------------------------

    def airflow(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"airflow {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done


class Rest:
    """The REST API (``/api/v2``) with a token from the simple auth manager."""

    def __init__(self, base: str, username: str = "admin", password: str = ADMIN_PASSWORD) -> None:
        self.base = base
        answer = requests.post(
            f"{base}/auth/token", json={"username": username, "password": password}, timeout=30
        )
        answer.raise_for_status()
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.session.request(method, f"{self.base}/api/v2{path}", timeout=60, **kwargs)
        if not answer.ok:
            raise RuntimeError(f"{method} {path}: {answer.status_code} {answer.text[:1000]}")
        return answer.json() if answer.content else None

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params=params)

    def wait_for_dags(self, dag_ids: list[str], timeout: float = 240) -> None:
        def parsed() -> bool:
            known = {d["dag_id"] for d in self.get("/dags", limit=100)["dags"]}
            return set(dag_ids) <= known

        wait_for(f"DAGs {dag_ids} parsed", parsed, timeout, every=2)

    def unpause(self, dag_id: str) -> None:
        self.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(
        self,
        dag_id: str,
        *,
        logical_date: str | None = None,
        conf: dict | None = None,
        partition_key: str | None = None,
        data_interval: tuple[str, str] | None = None,
    ) -> str:
        body: dict[str, Any] = {"logical_date": logical_date, "conf": conf or {}}
        if data_interval is not None:
            body["data_interval_start"], body["data_interval_end"] = data_interval
        if partition_key is not None:
            body["partition_key"] = partition_key
        return self.call("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        def finished() -> str | None:
            state = self.get(f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
            return state if state in ("success", "failed") else None

        return wait_for(f"{dag_id} {run_id} to finish", finished, timeout, every=2)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100)["task_instances"]

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1
    ) -> Any:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        return self.get(path, map_index=map_index, deserialize=True, stringify=False)["value"]

    def log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        answer = self.get(path, full_content=True, map_index=map_index)
        content = answer.get("content", "")
        if isinstance(content, list):
            return "\n".join(c.get("event", "") if isinstance(c, dict) else str(c) for c in content)
        return str(content)
