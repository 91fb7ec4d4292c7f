"""The sandbox's command line: ``python -m airflow_provider_juspay.testing.sandbox --help``."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

from airflow_provider_juspay.testing.sandbox import Faults, Sandbox

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Every flag, with its default (docs/sandbox.md lists the same, checked by a test)."""
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_juspay.testing.sandbox",
        description="A local Juspay-compatible server with faults on demand.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (loopback only by default)")
    add("--port", type=int, default=8765, help="port to listen on")
    add("--api-key", default="sandbox_api_key", help="the API key it accepts (Basic auth)")
    add("--merchant-id", default="sandbox_merchant", help="the x-merchantid it accepts")
    add(
        "--default-order-status",
        default="CHARGED",
        help="status of orders not in --orders-file: CHARGED (paid), NEW (unpaid) or NOT_FOUND (unknown)",
    )
    add("--orders-file", default=None, help="JSON object of order id -> status (NOT_FOUND: unknown)")
    add("--latency-ms", type=float, default=0.0, help="added to every answer")
    add("--error-rate", type=float, default=0.0, help="share of requests answered 503")
    add("--hang-rate", type=float, default=0.0, help="share of requests held --hang-seconds, unanswered")
    add("--hang-seconds", type=float, default=30.0, help="how long a hung request is held")
    add("--drop-rate", type=float, default=0.0, help="share of connections closed before the command")
    add(
        "--drop-after-accept-rate",
        type=float,
        default=0.0,
        help="share of commands accepted, then the connection closed (a lost reply)",
    )
    add("--rate-limit", type=float, default=None, help="requests per second before 429 (none: no limit)")
    add("--rate-burst-s", type=float, default=1.0, help="seconds of --rate-limit a burst may use")
    add("--retry-after", type=float, default=1.0, help="the Retry-After of a 429, seconds")
    add("--publish-rate-limit", action="store_true", help="send the IETF RateLimit headers of --rate-limit")
    add("--max-in-flight", type=int, default=None, help="requests at once before 503 (none: no limit)")
    add("--no-record", action="store_true", help="do not keep every request in memory (long benchmarks)")
    add("--seed", type=int, default=None, help="seed of the fault dice, for a repeatable run")
    return parser  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Run the sandbox until interrupted."""
    parser = build_parser()
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
