"""JuspayClient: speaks Juspay's Fulfillment Sync and Order Status APIs over one connection pool.

The client is safe to share between threads: it holds no per-request state. The pool and the wire
live in ``transport`` (kept-alive ``http.client`` connections; requests' adapter behind a proxy):
``requests.Session.send`` costs about ten times the CPU of the exchange itself, which would cap a bulk
push near 600 records/s on one worker.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import quote, urlencode, urlsplit

from requests.utils import get_environ_proxies
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from airflow_provider_juspay import __version__
from airflow_provider_juspay.config import ClientConfig, RetryPolicy, is_loopback
from airflow_provider_juspay.errors import (
    ApiError,
    AuthError,
    JuspayError,
    NotFound,
    RateLimited,
    Rejected,
    ServerError,
)
from airflow_provider_juspay.fulfilment import FulfilmentRecord, FulfilmentResult, Outcome
from airflow_provider_juspay.transport import SessionTransport, StdlibTransport, Transport

__all__ = ["USER_AGENT", "JuspayClient", "Pacing"]

log = logging.getLogger(__name__)

USER_AGENT = f"airflow-provider-juspay/{__version__}"
ALREADY_EXISTS = "ALREADY_EXISTS"
NOT_FOUND_CODES = frozenset({"RESOURCE_NOT_FOUND", "NOT_FOUND"})
#: Seconds a 429 without Retry-After pauses a paced run.
DEFAULT_THROTTLE_PAUSE = 1.0


class Pacing(Protocol):
    """What a bulk run shares between its workers (see ``sync.pacer.Pacer``)."""

    def wait(self) -> None: ...

    def pause(self, seconds: float) -> None: ...


class JuspayClient:
    """Sends fulfilments and reads order status; maps every answer to a result or a typed error.

    :param config: where Juspay is, the credentials, timeouts and retry policy.
    """

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self._transport = _transport_for(config)
        token = base64.b64encode(f"{config.api_key}:".encode()).decode("ascii")
        self._headers = {
            "Authorization": f"Basic {token}",
            "x-merchantid": config.merchant_id,
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        }
        self._retrying = _retrying(config.retry)

    def __repr__(self) -> str:
        return f"JuspayClient(base_url={self.config.base_url!r}, merchant_id={self.config.merchant_id!r})"

    def __enter__(self) -> JuspayClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._transport.close()

    # -- public API -------------------------------------------------------------------------

    def fulfil(self, record: FulfilmentRecord, *, pacer: Pacing | None = None) -> FulfilmentResult:
        """Send one fulfilment; transient errors are retried, the outcome is returned.

        :param pacer: shared by the workers of a bulk run: each attempt waits for it, and a 429
            pauses it (so the whole run slows down, not just this worker).
        :raises AuthError: on 401/403, which no later request can get past.
        """
        path = f"/orders/{quote(record.order_id, safe='')}/fulfillment"
        body = urlencode(record.to_form())
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if record.routing_id:
            headers["x-routing-id"] = record.routing_id
        attempts = 0

        def attempt() -> tuple[int, dict[str, Any]]:
            nonlocal attempts
            attempts += 1
            if pacer is None:
                return self._call("POST", path, record.order_id, body=body, headers=headers)
            pacer.wait()
            try:
                return self._call("POST", path, record.order_id, body=body, headers=headers)
            except RateLimited as exc:
                pause = exc.retry_after if exc.retry_after is not None else DEFAULT_THROTTLE_PAUSE
                pacer.pause(min(pause, self.config.retry.max_wait))
                raise

        def result(outcome: Outcome, **kwargs: Any) -> FulfilmentResult:
            return FulfilmentResult(
                order_id=record.order_id,
                outcome=outcome,
                attempts=attempts,
                command=record.fulfillment_command,
                fulfillment_id=record.fulfillment_id,
                **kwargs,
            )

        try:
            status, _ = self._retrying(attempt)
        except AuthError:
            raise
        except ApiError as exc:
            if exc.error_code == ALREADY_EXISTS:
                return result(
                    Outcome.ALREADY_FULFILLED, http_status=exc.http_status, error_code=ALREADY_EXISTS
                )
            outcome = Outcome.REJECTED if isinstance(exc, Rejected) else Outcome.FAILED
            message = exc.detail or str(exc)
            return result(outcome, http_status=exc.http_status, error_code=exc.error_code, message=message)
        return result(Outcome.SENT, http_status=status)

    def get_order_status(self, order_id: str) -> dict[str, Any]:
        """Juspay's view of an order (``GET /orders/{id}``); read-only, so always safe to retry.

        :raises NotFound: Juspay does not know the order.
        """
        path = f"/orders/{quote(str(order_id), safe='')}"
        _, payload = self._retrying(self._call, "GET", path, str(order_id))
        return payload

    def test_connection(self) -> tuple[bool, str]:
        """Check the credentials without side effects: look up an order id that cannot exist."""
        probe = f"airflow-provider-juspay-connection-test-{uuid.uuid4().hex}"
        try:
            self.get_order_status(probe)
        except NotFound:
            return True, f"Connected to {self.config.base_url}: Juspay accepted the API key."
        except AuthError as exc:
            return False, f"Juspay refused the credentials: {exc}"
        except JuspayError as exc:
            return False, f"Could not check the connection to {self.config.base_url}: {exc}"
        return True, f"Connected to {self.config.base_url}."

    # -- one exchange -----------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        order_id: str,
        *,
        body: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """One request, no retry: the status and decoded body of a 2xx, else the matching error."""
        all_headers = {**self._headers, **headers} if headers else self._headers
        answer = self._transport.exchange(method, path, body, all_headers, order_id)
        payload = _decode(answer.data)
        if 200 <= answer.status < 300:
            return answer.status, payload
        raise _error_for(answer.status, payload, order_id, answer.retry_after)


def _transport_for(config: ClientConfig) -> Transport:
    """http.client by default; requests' adapter when a proxy from the environment applies."""
    host = urlsplit(config.base_url).hostname or ""
    proxies = {} if is_loopback(host) else get_environ_proxies(config.base_url)
    if proxies:
        return SessionTransport(
            config.base_url, timeouts=config.timeouts, pool_size=config.pool_size, proxies=proxies
        )
    return StdlibTransport(config.base_url, timeouts=config.timeouts, pool_size=config.pool_size)


def _decode(data: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(data) if data else {}
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _error_for(status: int, payload: Mapping[str, Any], order_id: str, retry_after: str | None) -> ApiError:
    """Map a non-2xx answer to its error, keyed on ``error_info.code`` (Juspay's stable field)."""
    info = payload.get("error_info") if isinstance(payload.get("error_info"), dict) else {}
    code = info.get("code") or payload.get("error_code") or None
    text = payload.get("error_message") or info.get("developer_message") or info.get("user_message")
    detail = str(text).strip() if text else None
    message = f"HTTP {status}" + (f" {code}" if code else "") + (f": {detail}" if detail else "")
    kwargs: dict[str, Any] = {
        "order_id": order_id,
        "http_status": status,
        "error_code": code,
        "detail": detail,
    }
    if status in (401, 403):
        return AuthError(message, **kwargs)
    if status == 429:
        return RateLimited(message, retry_after=_retry_after_seconds(retry_after), **kwargs)
    if status >= 500:
        return ServerError(message, **kwargs)
    if code in NOT_FOUND_CODES or payload.get("status") == "NOT_FOUND":
        return NotFound(message, **kwargs)
    return Rejected(message, **kwargs)


def _retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


class _wait_retry_after_or_backoff:
    """Wait as a 429's Retry-After says (capped), else capped exponential backoff with jitter."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.max_wait = policy.max_wait
        # initial * 2**n, capped, plus up to ``jitter`` seconds so workers do not retry in step.
        self.backoff = wait_exponential(multiplier=policy.initial_wait, max=policy.max_wait) + wait_random(
            0, policy.jitter
        )

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_wait)
        return self.backoff(state)


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    order = getattr(exc, "order_id", None)
    log.info("order %s: attempt %d got %s; retrying in %.2fs", order, state.attempt_number, exc, wait)


def _retrying(policy: RetryPolicy) -> Retrying:
    """The retry policy as tenacity pieces; one instance serves all threads (its state is thread-local)."""
    return Retrying(
        stop=stop_after_attempt(policy.max_attempts),
        wait=_wait_retry_after_or_backoff(policy),
        retry=retry_if_exception(lambda exc: isinstance(exc, JuspayError) and exc.retryable),
        sleep=policy.sleep,
        before_sleep=_log_retry,
        reraise=True,
    )
