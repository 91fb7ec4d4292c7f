"""A local Juspay-compatible server for tests, demos and benchmarks, with faults on demand.

In-process::

    with Sandbox(api_key="k", merchant_id="m1", default_order_status="CHARGED") as sandbox:
        ...  # point a connection at sandbox.base_url; inspect sandbox.requests, sandbox.accepted

From a shell::

    python -m airflow_provider_juspay.testing.sandbox --port 8765 --latency-ms 20 --error-rate 0.02

It answers like Juspay's public docs: Basic auth with the API key as username, ``x-merchantid``,
form-encoded ``POST /orders/{id}/fulfillment`` (200 body, 400 "No txn Found" for unknown or unpaid
orders, ALREADY_EXISTS for a repeated command of an order), and ``GET /orders/{id}``. A repeat is keyed
on (order id, command), whatever the status (open point 4 of juspay-api.md). ``/__sandbox/*`` endpoints
let another process configure faults and read what was received.

Every command that reaches Juspay's fulfilment handling is counted per key (:attr:`Sandbox.commands`),
repeats included: Juspay documents de-duplication only for split settlements, so a second
``INITIATE_REFUND`` may be a second refund. :meth:`Sandbox.doubles` lists the keys that reached it more
than once beyond the retries its own lost replies called for; it must stay empty.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import random
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, unquote

from aiohttp import web

__all__ = ["Faults", "ReceivedRequest", "Sandbox"]

STATUS_IDS = {
    "NEW": 10, "STARTED": 20, "CHARGED": 21, "JUSPAY_DECLINED": 22, "PENDING_VBV": 23,
    "AUTHENTICATION_FAILED": 26, "AUTHORIZATION_FAILED": 27, "AUTHORIZING": 28, "AUTO_REFUNDED": 36,
}  # fmt: skip
FAULT_KINDS = (
    "error", "throttle", "hang", "drop", "drop_after_accept", "trickle", "huge", "not_juspay", "echo_auth"
)  # fmt: skip


@dataclass(frozen=True)
class Faults:
    """Random faults, each a share of requests (0..1), plus latency and an optional rate limit."""

    latency: float = 0.0  #: seconds before each answer
    error_rate: float = 0.0  #: answered 503
    hang_rate: float = 0.0  #: answered only after ``hang_seconds`` (past the client's timeout)
    drop_rate: float = 0.0  #: connection closed without an answer, before processing
    drop_after_accept_rate: float = 0.0  #: command accepted, then the connection closed (lost reply)
    trickle_rate: float = 0.0  #: a 200 whose body comes one byte per ``trickle_interval``
    huge_rate: float = 0.0  #: a 200 of ``huge_bytes`` (no Juspay answer is that big)
    not_juspay_rate: float = 0.0  #: a 200 HTML page, as a portal or a proxy behind a wrong base URL
    echo_auth_rate: float = 0.0  #: a 400 whose message echoes the Authorization header (a gateway)
    rate_limit: float | None = None  #: requests per second; above it, 429 with Retry-After
    retry_after: float = 1.0  #: seconds, sent in Retry-After
    #: seconds of ``rate_limit`` the token bucket holds: how big a burst passes after a quiet spell
    rate_burst_s: float = 1.0
    #: requests handled at once at most; beyond it, 503 at once (a server shedding load)
    max_in_flight: int | None = None
    #: with ``rate_limit``: publish it in the IETF ``RateLimit-Policy`` / ``RateLimit`` headers
    publish_rate_limit: bool = False
    hang_seconds: float = 30.0
    trickle_interval: float = 0.2
    huge_bytes: int = 5 * 1024 * 1024


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the sandbox saw it."""

    method: str
    raw_path: str
    order_id: str | None
    headers: dict[str, str]
    form: dict[str, str]
    status: int | None
    fault: str | None = None
    #: When it was answered (``time.monotonic()``): for pictures of requests per second.
    at: float = 0.0


def _error(
    status: int, code: str, message: str, *, error_code: str | None = None, **info: str
) -> web.Response:
    body = {
        "status": "ERROR",
        "error_code": error_code or code,
        "error_message": message,
        "error_info": {"code": code, "user_message": message, "developer_message": message, **info},
    }
    return web.json_response(body, status=status)


class Sandbox:
    """A Juspay-compatible HTTP server on loopback, run in a background thread or from the CLI.

    :param orders: order id -> status (``CHARGED`` can be fulfilled); ids not listed take
        ``default_order_status`` (None: unknown to Juspay).
    :param record: keep every request in :attr:`requests` (turn off for very long benchmarks).
    """

    def __init__(
        self,
        *,
        api_key: str = "sandbox_api_key",
        merchant_id: str = "sandbox_merchant",
        orders: Mapping[str, str] | None = None,
        default_order_status: str | None = "CHARGED",
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults | None = None,
        record: bool = True,
        seed: int | None = None,
        not_found_status: int = 400,
    ) -> None:
        self.api_key = api_key
        self.merchant_id = merchant_id
        self.orders: dict[str, str] = dict(orders or {})
        self.default_order_status = default_order_status
        self.host = host
        self.port = port
        self.faults = faults or Faults()
        self.record = record
        #: HTTP status of an unknown order's status answer: 400 as Juspay's samples, 404 as juspay-mcp.
        self.not_found_status = not_found_status
        self.requests: list[ReceivedRequest] = []
        #: (order id, command) -> 1 once the command was accepted (a repeat is answered ALREADY_EXISTS).
        self.accepted: collections.Counter[tuple[str, str]] = collections.Counter()
        #: (order id, command) -> every POST of it that reached the fulfilment handling (repeats included).
        self.commands: collections.Counter[tuple[str, str]] = collections.Counter()
        #: (order id, command) -> accepted answers this sandbox lost on purpose (``drop_after_accept``):
        #: the client's retry of such a command is the one repeat the sandbox expects.
        self.lost_answers: collections.Counter[tuple[str, str]] = collections.Counter()
        self.status_counts: collections.Counter[int] = collections.Counter()
        #: Requests that break the documented format (answered 400 INVALID_INPUT): must stay empty.
        self.format_violations: list[str] = []
        self._script: collections.deque[tuple[str, int | None]] = collections.deque()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._tokens = float("inf")  # capped at one second's worth on first use: a full bucket
        self._in_flight = 0
        self._token_time = time.monotonic()
        self._expected_auth = ""
        self.rotate_key(api_key)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # -- control ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def configure(self, **changes: Any) -> None:
        """Change the random faults (see :class:`Faults`) while running."""
        self.faults = replace(self.faults, **changes)

    def script(self, kind: str, count: int = 1, status: int | None = None) -> None:
        """Inject ``count`` faults of ``kind`` into the next requests, before any random fault."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}, got {kind!r}")
        with self._lock:
            self._script.extend([(kind, status)] * count)

    def rotate_key(self, api_key: str) -> None:
        """Accept only ``api_key`` from now on (a revoked key mid-run answers 401)."""
        self.api_key = api_key
        self._expected_auth = "Basic " + base64.b64encode(f"{api_key}:".encode()).decode()

    def reset(self) -> None:
        """Forget received requests, accepted commands and scripted faults."""
        with self._lock:
            self.requests.clear()
            self.format_violations.clear()
            self.accepted.clear()
            self.commands.clear()
            self.lost_answers.clear()
            self.status_counts.clear()
            self._script.clear()

    def doubles(self) -> dict[tuple[str, str], int]:
        """Keys POSTed to the fulfilment handling more than once, beyond one retry per reply this
        sandbox lost on purpose, with their count: must always be empty."""
        with self._lock:
            return {key: n for key, n in self.commands.items() if n > 1 + self.lost_answers.get(key, 0)}

    def accepted_keys(self) -> set[tuple[str, str]]:
        """The (order id, command) keys accepted so far, read under the lock (safe while serving)."""
        with self._lock:
            return set(self.accepted)

    def repeats(self) -> dict[tuple[str, str], int]:
        """Every key POSTed more than once, whatever the reason (a kill with requests on the wire too)."""
        with self._lock:
            return {key: n for key, n in self.commands.items() if n > 1}

    def state(self) -> dict[str, Any]:
        """A JSON-friendly summary, also served at ``GET /__sandbox/state``."""
        return {
            "requests": len(self.requests),
            "statuses": {str(k): v for k, v in sorted(self.status_counts.items())},
            "accepted": sum(self.accepted.values()),
            "commands": sum(self.commands.values()),
            "doubles": len(self.doubles()),
            "repeats": len(self.repeats()),
            "format_violations": self.format_violations[-20:],
            "faults": asdict(self.faults),
        }

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Sandbox:
        """Serve from a background thread; returns once the port is bound."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="juspay-sandbox", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.bind(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        """Stop serving and close every connection."""
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self.unbind(), self._loop).result(timeout=10)
        asyncio.run_coroutine_threadsafe(_cancel_pending(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop.close()
        self._loop = self._thread = self._runner = None

    async def unbind(self) -> None:
        """Stop serving on the running event loop and close every connection."""
        if self._runner is not None:
            await self._runner.cleanup()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def bind(self) -> None:
        """Start serving on the running event loop (the CLI's); ``start()`` does this in a thread."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=2048)
        await site.start()
        self.port = self._runner.addresses[0][1]

    # -- handling ---------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        segments = request.raw_path.split("?", 1)[0].split("/")[1:]
        if segments and segments[0] == "__sandbox":
            return await self._admin(request, segments[1:])
        try:
            order_id = unquote(segments[1], errors="strict") if len(segments) >= 2 else None
            body = await request.text() if request.can_read_body else ""
            form = dict(parse_qsl(body, keep_blank_values=True, errors="strict"))
        except UnicodeDecodeError:
            return self._refuse(request, "the path or the body is not UTF-8")
        if order_id is not None and (problem := _bad_order_id(order_id)):
            return self._refuse(request, problem)
        fault = self._next_fault()
        cap = self.faults.max_in_flight
        with self._lock:
            self._in_flight += 1
            over = cap is not None and self._in_flight > cap and fault is None
        if over:
            fault = "error"  # shed at once, as a loaded server does
        try:
            return await self._answer(request, segments, order_id, form, fault, shed=over)
        finally:
            with self._lock:
                self._in_flight -= 1

    async def _answer(
        self,
        request: web.Request,
        segments: list[str],
        order_id: str | None,
        form: dict[str, str],
        fault: str | None,
        *,
        shed: bool,
    ) -> web.StreamResponse:
        response: web.StreamResponse | None = None
        if self.faults.latency and not shed:
            await asyncio.sleep(self.faults.latency)
        if fault in ("drop", "hang", "error", "throttle", "trickle", "huge", "not_juspay", "echo_auth"):
            response = await self._fault_response(request, fault)
        elif segments[:1] == ["orders"] and len(segments) == 2 and request.method == "GET":
            response = self._auth_error(request) or self._order_status(order_id or "")
        elif segments[:1] == ["orders"] and len(segments) == 3 and segments[2] == "fulfillment":
            if request.method != "POST":
                response = _error(405, "INVALID_ACTION", "Use POST for fulfillment")
            else:
                response = self._auth_error(request) or self._fulfil(request, order_id or "", form)
        else:
            response = web.json_response({"status": "ERROR", "error_message": "Not found"}, status=404)
        if fault == "drop_after_accept" and response is not None and response.status == 200:
            if order_id is not None:
                with self._lock:
                    self.lost_answers[(order_id, form.get("fulfillment_command", ""))] += 1
            response = await self._fault_response(request, "drop")
        f = self.faults
        if f.publish_rate_limit and f.rate_limit and response is not None and not response.prepared:
            window = max(f.rate_burst_s, 1e-3)
            left = max(0, int(self._tokens)) if self._tokens != float("inf") else int(f.rate_limit * window)
            response.headers["RateLimit-Policy"] = f'"default";q={int(f.rate_limit * window)};w={window:g}'
            response.headers["RateLimit"] = f'"default";r={left};t={window:g}'
        self._remember(request, order_id, form, response, fault)
        # A dropped connection has no one to answer; aiohttp discards this reply.
        return response if response is not None else web.Response(status=499)

    def _next_fault(self) -> str | None:
        with self._lock:
            if self._script:
                return self._script.popleft()[0]
        f = self.faults
        roll = self._random.random()
        for kind, rate in (
            ("drop", f.drop_rate),
            ("hang", f.hang_rate),
            ("error", f.error_rate),
            ("drop_after_accept", f.drop_after_accept_rate),
            ("trickle", f.trickle_rate),
            ("huge", f.huge_rate),
            ("not_juspay", f.not_juspay_rate),
            ("echo_auth", f.echo_auth_rate),
        ):
            if roll < rate:
                return kind
            roll -= rate
        if f.rate_limit and not self._take_token(f.rate_limit):
            return "throttle"
        return None

    def _take_token(self, rate: float) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(
                rate * self.faults.rate_burst_s, self._tokens + (now - self._token_time) * rate
            )
            self._token_time = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False

    async def _fault_response(self, request: web.Request, fault: str) -> web.StreamResponse | None:
        if fault == "drop":
            if request.transport is not None:
                request.transport.abort()
            return None
        if fault == "hang":
            await asyncio.sleep(self.faults.hang_seconds)
            return _error(504, "GATEWAY_TIMEOUT", "Sandbox hung on purpose")
        if fault == "trickle":
            response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            await response.prepare(request)
            for byte in b'{"status": "SUCCESS", "trickled": "' + b"." * 200 + b'"}':
                await asyncio.sleep(self.faults.trickle_interval)
                await response.write(bytes([byte]))
            await response.write_eof()
            return response
        if fault == "huge":
            padding = "x" * self.faults.huge_bytes
            return web.json_response({"status": "SUCCESS", "padding": padding})
        if fault == "not_juspay":
            page = "<html><head><title>Merchant portal</title></head><body>Please log in.</body></html>"
            return web.Response(status=200, text=page, content_type="text/html")
        if fault == "echo_auth":
            echoed = f"Bad request; headers were Authorization: {request.headers.get('Authorization')}"
            return _error(400, "INVALID_REQUEST", echoed)
        if fault == "throttle":
            response = _error(429, "TOO_MANY_REQUESTS", "Rate limit exceeded")
            response.headers["Retry-After"] = f"{self.faults.retry_after:g}"
            return response
        return _error(503, "SERVICE_UNAVAILABLE", "Sandbox injected a server error")

    def _auth_error(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != self._expected_auth:
            return _error(401, "UNAUTHORIZED", "Invalid API key", error_code="access_denied")
        merchant = request.headers.get("x-merchantid")
        if not merchant:
            return _error(400, "MISSING_MANDATORY_PARAMETER", "x-merchantid header is required")
        if merchant != self.merchant_id:
            return _error(
                401, "UNAUTHORIZED", "API key does not belong to this merchant", error_code="access_denied"
            )
        return None

    def _order_status(self, order_id: str) -> web.Response:
        status = self.orders.get(order_id, self.default_order_status)
        if status is None or status == "NOT_FOUND":
            body = {
                "status": "NOT_FOUND",
                "error_code": "object_not_found",
                "error_message": "Order not found",
                "error_info": {"code": "RESOURCE_NOT_FOUND", "category": "USER_ERROR"},
            }
            return web.json_response(body, status=self.not_found_status)
        return web.json_response(
            {
                "order_id": order_id,
                "merchant_id": self.merchant_id,
                "status": status,
                "status_id": STATUS_IDS.get(status, 0),
            }
        )

    def _refuse(self, request: web.Request, problem: str) -> web.Response:
        """A request Juspay would refuse as malformed: answered 400 and kept for tests to see."""
        with self._lock:
            self.format_violations.append(f"{request.method} {request.raw_path[:200]}: {problem}")
            self.status_counts[400] += 1
        return _error(400, "INVALID_INPUT", problem)

    def _fulfil(self, request: web.Request, order_id: str, form: dict[str, str]) -> web.Response:
        if not request.content_type.startswith("application/x-www-form-urlencoded"):
            return _error(400, "INVALID_INPUT", "Body must be application/x-www-form-urlencoded")
        if problem := _bad_fulfilment(form, request.headers.get("x-routing-id")):
            return self._refuse(request, problem)
        missing = [name for name in ("fulfillment_status", "fulfillment_command") if not form.get(name)]
        if missing:
            return _error(400, "MISSING_MANDATORY_PARAMETER", f"Missing {', '.join(missing)}")
        if form["fulfillment_status"] not in ("SUCCESS", "FAILURE"):
            return _error(400, "INVALID_INPUT", "fulfillment_status must be SUCCESS or FAILURE")
        if self.orders.get(order_id, self.default_order_status) != "CHARGED":
            return _error(
                400,
                "RESOURCE_NOT_FOUND",
                "No successfull txn found for given order_id ",
                error_code="No txn Found",
            )
        command = form["fulfillment_command"]
        with self._lock:
            self.commands[(order_id, command)] += 1
            if self.accepted[(order_id, command)]:
                duplicate = True
            else:
                duplicate = False
                self.accepted[(order_id, command)] += 1
        if duplicate:
            return _error(
                400,
                "ALREADY_EXISTS",
                "Fulfillment already exists",
                error_code="invalid_request",
                category="USER_ERROR",
            )
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return web.json_response(
            {
                "status": "SUCCESS",
                "merchant_id": self.merchant_id,
                "order_id": order_id,
                "commands": [
                    {
                        "status": "SUCCESS",
                        "metadata": form.get("fulfillment_data", ""),
                        "date_created": now,
                        "command": command,
                    }
                ],
            }
        )

    def _remember(
        self,
        request: web.Request,
        order_id: str | None,
        form: dict[str, str],
        response: web.StreamResponse | None,
        fault: str | None,
    ) -> None:
        status = response.status if response is not None else None
        with self._lock:
            self.status_counts[status or 0] += 1
            if self.record:
                self.requests.append(
                    ReceivedRequest(
                        request.method,
                        request.raw_path,
                        order_id,
                        dict(request.headers),
                        form,
                        status,
                        fault,
                        time.monotonic(),
                    )
                )

    async def _admin(self, request: web.Request, segments: list[str]) -> web.Response:
        """Control endpoints for a sandbox run as its own process."""
        action = segments[0] if segments else ""
        payload = await request.json() if request.can_read_body else {}
        if action == "state":
            return web.json_response(self.state())
        if action == "requests":
            return web.json_response(
                [asdict(r) for r in self.requests[-int(request.query.get("last", 100)) :]]
            )
        if action == "configure" and request.method == "POST":
            known = {f.name for f in fields(Faults)}
            self.configure(**{k: v for k, v in payload.items() if k in known})
            return web.json_response(self.state())
        if action == "orders" and request.method == "POST":
            self.orders.update(payload)
            return web.json_response({"orders": len(self.orders)})
        if action == "reset" and request.method == "POST":
            self.reset()
            return web.json_response(self.state())
        return web.json_response({"error": f"unknown sandbox action {action!r}"}, status=404)


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")
_COMMAND = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_HEADER = re.compile(r"[\x20-\x7e]{1,255}")


def _bad_order_id(order_id: str) -> str | None:
    """What Juspay (or any server behind a normalising proxy) could not take as one order id."""
    if not order_id or order_id in (".", ".."):
        return f"order id {order_id!r} is not an id"
    if _CONTROL.search(order_id):
        return "order id holds control characters"
    return None


def _bad_fulfilment(form: dict[str, str], routing_id: str | None) -> str | None:
    """The documented format of a fulfilment: the provider must never send anything else."""
    when = form.get("fulfillment_time")
    if when is not None and not _TIME.fullmatch(when):
        return f"fulfillment_time {when[:40]!r} is not YYYY-MM-DDTHH:MM:SS"
    command = form.get("fulfillment_command")
    if command and not _COMMAND.fullmatch(command):
        return f"fulfillment_command {command[:40]!r} is not a command name"
    for name in ("fulfillment_data", "split_settlement_details", "product_details"):
        if len(form.get(name, "")) > 10_000:
            return f"{name} is over 10,000 characters"
    if routing_id is not None and not _HEADER.fullmatch(routing_id):
        return "x-routing-id is not printable ASCII of 1-255 characters"
    return None


async def _cancel_pending() -> None:
    """Cancel handlers still sleeping (hung on purpose) so the loop closes cleanly."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    from airflow_provider_juspay.testing.sandbox_cli import main

    main()
