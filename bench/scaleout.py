"""Case 6: scale-out on a CeleryExecutor deployment: 1, 2 and 4 shards over two workers at 20 ms latency.

Records per second of the push (first shard start to last shard end), and Airflow's overhead: the
time from trigger to the run's success against the push tasks' own time. Needs what ``make
system-test`` needs (PostgreSQL, Redis, the ``system`` extra); ``python -m bench.scaleout --rows N``.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime

from airflow_provider_juspay.testing.sandbox import Faults, Sandbox
from bench.support import machine, table

ROWS = 20_000
SHARDS = (1, 2, 4)


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def seed(warehouse_uri: str, rows: int, table_name: str, suffix: str) -> None:
    """``rows`` orders in ``table_name``; ``suffix`` keeps each case's order ids its own."""
    import psycopg2

    with psycopg2.connect(warehouse_uri) as db, db.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {table_name}")
        cursor.execute(
            f"CREATE TABLE {table_name} AS SELECT g AS id, "
            f"'SCALE-' || lpad(g::text, 8, '0') || '-{suffix}' AS order_id, "
            "'SUCCESS' AS fulfillment_status, 'NO_ACTION' AS fulfillment_command "
            "FROM generate_series(1, %s) AS g",
            [rows],
        )


def measure(rest, warehouse_uri: str, rows: int, shards: tuple[int, ...] = SHARDS) -> list[tuple]:
    """One run per shard count, each over its own copy of the rows (nothing is ALREADY_EXISTS)."""
    results = []
    rest.unpause("juspay_bench_scaleout")
    for n in shards:
        table_name = f"bench_scaleout_{n}"
        seed(warehouse_uri, rows, table_name, suffix=f"S{n}")
        triggered = time.time()
        run_id = rest.trigger("juspay_bench_scaleout", conf={"shards": n, "table": table_name})
        state = rest.wait_run("juspay_bench_scaleout", run_id, timeout=900)
        if state != "success":
            raise RuntimeError(f"scale-out run with {n} shards ended {state}")
        run = rest.get(f"/dags/juspay_bench_scaleout/dagRuns/{run_id}")
        pushes = [
            t for t in rest.task_instances("juspay_bench_scaleout", run_id) if t["task_id"] == "push_shard"
        ]
        start = min(_seconds(t["start_date"]) for t in pushes)
        end = max(_seconds(t["end_date"]) for t in pushes)
        hosts = sorted({t["hostname"] for t in pushes})
        push_s = end - start
        total_s = _seconds(run["end_date"]) - triggered
        results.append(
            (
                f"{n} shard{'s' if n > 1 else ''}",
                rows / push_s,
                push_s,
                total_s,
                total_s - push_s,
                ", ".join(hosts),
            )
        )
    return results


def report(results: list[tuple], rows: int) -> str:
    base = results[0][1]
    lines = [
        (name, per_s, per_s / base, push_s, total_s, overhead, hosts)
        for name, per_s, push_s, total_s, overhead, hosts in results
    ]
    return table(
        f"6. Scale-out on Celery (2 workers x 3 slots), {rows:,} rows at 20 ms latency, max_concurrency=16",
        ("shards", "records/s", "x 1 shard", "push s", "trigger->success s", "Airflow s", "workers"),
        lines,
    )


def main() -> None:
    from tests.system.deployment import REPO, Deployment, Rest, say
    from tests.system.run import conn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS)
    args = parser.parse_args()
    print(f"Machine: {machine()}")
    with Sandbox(
        api_key="system_test_secret_key_0123456789",
        merchant_id="demo_merchant",
        faults=Faults(latency=0.02),
        record=False,
    ) as sandbox:
        deployment = Deployment(
            dags=[REPO / "bench" / "scaleout_dags"], connections={"juspay_default": conn(sandbox.base_url)}
        )
        with deployment:
            rest = Rest(deployment.api)
            rest.wait_for_dags(["juspay_bench_scaleout"])
            say("measuring 1, 2 and 4 shards")
            print(report(measure(rest, f"{deployment.pg_uri}/warehouse", args.rows), args.rows), flush=True)


if __name__ == "__main__":
    main()
