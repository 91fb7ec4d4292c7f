"""The sandbox's command line: ``python -m airflow_provider_juspay.testing.sandbox --help``."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

from airflow_provider_juspay.testing.sandbox import Faults, Sandbox

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Run the sandbox until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_juspay.testing.sandbox",
        description="A local Juspay-compatible server with faults on demand.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default="sandbox_api_key")
    parser.add_argument("--merchant-id", default="sandbox_merchant")
    parser.add_argument(
        "--default-order-status", default="CHARGED", help="status of unlisted orders; NOT_FOUND: unknown"
    )
    parser.add_argument("--orders-file", help="JSON object: order id -> status")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--hang-rate", type=float, default=0.0)
    parser.add_argument("--drop-rate", type=float, default=0.0)
    parser.add_argument("--drop-after-accept-rate", type=float, default=0.0)
    parser.add_argument("--rate-limit", type=float, default=None, help="requests per second before 429")
    parser.add_argument("--retry-after", type=float, default=1.0)
    parser.add_argument(
        "--rate-burst-s", type=float, default=1.0, help="seconds of --rate-limit a burst may use"
    )
    parser.add_argument("--max-in-flight", type=int, default=None, help="requests at once before 503")
    parser.add_argument(
        "--publish-rate-limit", action="store_true", help="send the IETF RateLimit headers of --rate-limit"
    )
    parser.add_argument("--hang-seconds", type=float, default=30.0)
    parser.add_argument("--no-record", action="store_true", help="do not keep every request in memory")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    orders = {}
    if args.orders_file:
        with open(args.orders_file, encoding="utf-8") as fh:
            orders = json.load(fh)
    faults = Faults(
        latency=args.latency_ms / 1000,
        error_rate=args.error_rate,
        hang_rate=args.hang_rate,
        drop_rate=args.drop_rate,
        drop_after_accept_rate=args.drop_after_accept_rate,
        rate_limit=args.rate_limit,
        retry_after=args.retry_after,
        hang_seconds=args.hang_seconds,
        rate_burst_s=args.rate_burst_s,
        max_in_flight=args.max_in_flight,
        publish_rate_limit=args.publish_rate_limit,
    )
    default_status = (
        None if args.default_order_status.upper() == "NOT_FOUND" else args.default_order_status.upper()
    )
    sandbox = Sandbox(
        api_key=args.api_key,
        merchant_id=args.merchant_id,
        orders=orders,
        default_order_status=default_status,
        host=args.host,
        port=args.port,
        faults=faults,
        record=not args.no_record,
        seed=args.seed,
    )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await sandbox.bind()
        print(f"Juspay sandbox listening on {sandbox.base_url} (merchant {sandbox.merchant_id})", flush=True)
        await stop.wait()
        await sandbox.unbind()

    asyncio.run(run())
