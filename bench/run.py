"""`make bench`: every case, one table each, figures beside their peers (python -m bench.run --help)."""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

from bench import chaos, cpu, ledger_overhead, memory, outage, pacing, throughput
from bench.support import machine


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--cases", default="throughput,cpu,memory,ledger,outage,pacing,chaos", help="comma-separated"
    )
    parser.add_argument("--chaos-rows", type=int, default=100_000, help="rows of the chaos case (8)")
    parser.add_argument("--chaos-seed", type=int, default=None, help="seed of the chaos case (random)")
    parser.add_argument(
        "--chaos-postgres", action="store_true", help="chaos case: the ledger on a PostgreSQL of its own"
    )
    parser.add_argument(
        "--pacing-scale", type=float, default=1.0, help="length of the pacing runs (case 7), 1 = 20-36 s each"
    )
    parser.add_argument("--n", type=int, default=4000, help="records per bulk run (cases 1, 4)")
    parser.add_argument("--cpu-n", type=int, default=4000, help="records per client in case 2")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--naive-n", type=int, default=150, help="records for the sequential loops")
    parser.add_argument("--mapped", default="5,25", help="two task counts for the mapped HttpOperator slope")
    parser.add_argument("--sweep", default="32,64,128", help="max_concurrency values to try")
    parser.add_argument("--memory-sizes", default="10000,100000,1000000")
    parser.add_argument(
        "--outage-sizes", default="500,20000", help="rows of the runs with a breaker (case 5)"
    )
    parser.add_argument(
        "--grinding-n", type=int, default=64, help="rows of the run without a breaker (case 5)"
    )
    parser.add_argument(
        "--postgres-uri",
        default=os.environ.get("JUSPAY_BENCH_POSTGRES_URI"),
        help="also measure memory streaming from this PostgreSQL (its fulfilments table is replaced)",
    )
    parser.add_argument("--profile", action="store_true", help="profile the engine in case 2")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: that it works, not how fast")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.cpu_n, args.naive_n, args.mapped, args.sweep = 60, 60, 5, "1,2", "32"
        args.memory_sizes = "200,400"
        args.outage_sizes, args.grinding_n = "100", 4
        args.pacing_scale = 0.1
        args.chaos_rows = 1500
    cases = set(args.cases.split(","))
    started = time.monotonic()
    print(f"Machine: {machine()}")
    if "throughput" in cases:
        mapped = tuple(int(x) for x in args.mapped.split(","))
        sweep = tuple(int(x) for x in args.sweep.split(","))
        print(throughput.run(args.n, args.latency_ms, args.naive_n, mapped, sweep), flush=True)
    if "cpu" in cases:
        print(cpu.run(args.cpu_n, profile=args.profile), flush=True)
    if "memory" in cases:
        sizes = tuple(int(x) for x in args.memory_sizes.split(","))
        print(memory.run(sizes, args.postgres_uri), flush=True)
    if "ledger" in cases:
        print(ledger_overhead.run(args.n), flush=True)
    if "outage" in cases:
        sizes = tuple(int(x) for x in args.outage_sizes.split(","))
        print(outage.run(sizes, args.grinding_n), flush=True)
    if "pacing" in cases:
        # A smoke run's pictures say nothing: they go to a temporary folder, not over the README's.
        pictures = Path(tempfile.mkdtemp(prefix="juspay-pacing-")) if args.smoke else pacing.PICTURES
        # A smoke run takes one case of each kind (three pacings, shared tasks, a late task, 503s).
        names = ("cap400", "shards4", "late", "cap24") if args.smoke else tuple(c.name for c in pacing.CASES)
        print(pacing.run(names, scale=args.pacing_scale, pictures=pictures), flush=True)
    if "chaos" in cases:
        seed = args.chaos_seed if args.chaos_seed is not None else random.randrange(1_000_000)
        runs = 24 if args.chaos_rows >= 20_000 else 6
        outcome = chaos.run(args.chaos_rows, runs=runs, seed=seed, postgres=args.chaos_postgres)
        print(outcome.table(), flush=True)
    print(f"\nbench finished in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    main()
