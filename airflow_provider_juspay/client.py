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
import threading
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any, Protocol
from urllib.parse import quote, urlencode, urlsplit

from requests.utils import get_environ_proxies
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    wait_exponential,
    wait_random,
)

from airflow_provider_juspay import __version__
from airflow_provider_juspay.config import ClientConfig, RetryPolicy, Timeouts, endpoint_of, is_loopback
from airflow_provider_juspay.errors import (
    ApiError,
    AuthError,
    ErrorCode,
    JuspayError,
    NotFound,
    RateLimited,
    Rejected,
    RunStopped,
    ServerError,
    UnexpectedResponse,
)
from airflow_provider_juspay.fulfilment import FulfilmentRecord, FulfilmentResult, Outcome, printable
from airflow_provider_juspay.ratelimit import RateLimitHint, parse_rate_limit
from airflow_provider_juspay.transport import Gate, SessionTransport, StdlibTransport, Transport

__all__ = ["USER_AGENT", "AttemptControl", "JuspayClient", "RetryTally"]

log = logging.getLogger(__name__)

USER_AGENT = f"airflow-provider-juspay/{__version__}"
NOT_FOUND_CODES = frozenset({"RESOURCE_NOT_FOUND", "NOT_FOUND"})
#: The connection test makes one attempt and waits at most this long (the UI's Test button waits on it).
TEST_DEADLINE = 10.0
#: Characters of an unexpected answer quoted in its error message.
QUOTED_CHARS = 80
#: Longest error code and message kept from an answer (the ledger's columns hold 255 and 2000).
MAX_CODE_CHARS = 100
MAX_MESSAGE_CHARS = 1000


class AttemptControl(Protocol):
    """What the workers of a bulk run share (``sync.control.RunControl``): pace, breaker and stop."""

    def before_attempt(self, record: FulfilmentRecord | None = None) -> None:
        """Wait for the pace; raise :class:`~airflow_provider_juspay.errors.RunStopped` when no request
        may leave any more."""

    def admit(self, record: FulfilmentRecord) -> None:
        """The last word, right before the request is written: raise
        :class:`~airflow_provider_juspay.errors.RunStopped` if this record may not go out now."""

    def after_attempt(self, error: ApiError | None, hint: RateLimitHint | None = None) -> None:
        """Learn how an attempt ended (None: Juspay answered); a 429 slows the run, failures count;
        ``hint``: the answer's ``RateLimit``/``RateLimit-Policy`` headers, when it had them."""

    def sleep(self, seconds: float) -> None:
        """Wait between retries; returns early when the run stops."""


class RetryTally:
    """Counts retries by cause; the first of each cause is logged in full, the rest only counted.

    A run with many retries logs them as counts beside its progress lines instead of a line each.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._server_errors = 0

    def add(self, exc: BaseException | None, attempt: int, wait: float) -> None:
        cause = (getattr(exc, "error_code", None) or type(exc).__name__).upper()
        status = getattr(exc, "http_status", None)
        with self._lock:
            self._counts[cause] += 1
            self._server_errors += bool(status and status >= 500)
            first = self._counts[cause] == 1
        order = getattr(exc, "order_id", None)
        level = logging.INFO if first else logging.DEBUG
        tail = " (retries of this kind are counted in the progress lines from now on)" if first else ""
        log.log(level, "order %s: attempt %d got %s; retrying in %.2fs%s", order, attempt, exc, wait, tail)

    def counts(self) -> dict[str, int]:
        """Retries so far, by cause (error code), most frequent first."""
        with self._lock:
            return dict(self._counts.most_common())

    def server_errors(self) -> int:
        """Retried attempts Juspay answered with a 5xx."""
        with self._lock:
            return self._server_errors


class JuspayClient:
    """Sends fulfilments and reads order status; maps every answer to a result or a typed error.

    :param config: where Juspay is, the credentials, timeouts and retry policy.
    """

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self._transport = _transport_for(config)
        token = basic_token(config.api_key)
        self._headers = {
            "Authorization": f"Basic {token}",
            "x-merchantid": config.merchant_id,
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        }
        # A gateway may echo the Authorization header back: scrub both forms of the key from answers.
        self._secrets = tuple(sorted({config.api_key, token}, key=len, reverse=True))
        #: Retries by cause, for progress lines and the report.
        self.retries = RetryTally()
        self._retrying = _retrying(config.retry, self.retries)
        self._controlled: tuple[AttemptControl, Retrying] | None = None
        #: The rate-limit headers of the last answer this thread read (see ``after_attempt``).
        self._hints = threading.local()

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

    def fulfil(self, record: FulfilmentRecord, *, control: AttemptControl | None = None) -> FulfilmentResult:
        """Send one fulfilment; transient errors are retried, the outcome is returned.

        :param control: shared by the workers of a bulk run: each attempt waits for its pace and
            reports how it ended (429s slow the run, failures feed the circuit breaker).
        :raises AuthError: on 401/403, which no later request can get past.
        :raises RunStopped: the run stopped before this record's first attempt.
        """
        path = f"/orders/{quote(record.order_id, safe='')}/fulfillment"
        body = urlencode(record.to_form())
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if record.routing_id:
            headers["x-routing-id"] = record.routing_id
        attempts = 0
        last_error: ApiError | None = None

        def attempt() -> tuple[int, dict[str, Any]]:
            nonlocal attempts, last_error
            if control is not None:
                control.before_attempt(record)  # the pace and a slot
            attempts += 1
            self._hints.last = None
            gate = partial(control.admit, record) if control is not None else None
            try:
                answer = self._call("POST", path, record.order_id, body=body, headers=headers, gate=gate)
                _check_fulfilment_answer(answer[1], record.order_id, self._scrub)
            except ApiError as exc:
                last_error = exc
                if control is not None:
                    control.after_attempt(exc, self._hints.last)
                raise
            if control is not None:
                control.after_attempt(None, self._hints.last)
            return answer

        def result(outcome: Outcome, **kwargs: Any) -> FulfilmentResult:
            return FulfilmentResult(
                order_id=record.order_id,
                outcome=outcome,
                attempts=attempts,
                command=record.fulfillment_command,
                fulfillment_id=record.fulfillment_id,
                position=record.position,
                **kwargs,
            )

        try:
            status, _ = self._retrying_for(control)(attempt)
        except AuthError:
            raise
        except RunStopped as stop:
            if last_error is None:
                raise
            # Tried and not delivered before the stop: the last answer stands, and the key goes again.
            return result(
                Outcome.FAILED,
                http_status=last_error.http_status,
                error_code=last_error.error_code,
                message=f"{last_error.detail or last_error}; then {stop}",
            )
        except ApiError as exc:
            if exc.error_code == ErrorCode.ALREADY_EXISTS:
                return result(
                    Outcome.ALREADY_FULFILLED,
                    http_status=exc.http_status,
                    error_code=ErrorCode.ALREADY_EXISTS,
                )
            outcome = Outcome.REJECTED if isinstance(exc, Rejected) else Outcome.FAILED
            message = exc.detail or str(exc)
            return result(outcome, http_status=exc.http_status, error_code=exc.error_code, message=message)
        return result(Outcome.SENT, http_status=status)

    def _retrying_for(self, control: AttemptControl | None) -> Retrying:
        """The retry policy; within a run, its waits end early when the run stops."""
        if control is None:
            return self._retrying
        bound = self._controlled
        if bound is None or bound[0] is not control:
            bound = (control, self._retrying.copy(sleep=control.sleep))
            self._controlled = bound
        return bound[1]

    def get_order_status(self, order_id: str) -> dict[str, Any]:
        """Juspay's view of an order (``GET /orders/{id}``); read-only, so always safe to retry.

        :raises NotFound: Juspay does not know the order.
        """
        _, payload = self._retrying(self._get_order, str(order_id), self._transport)
        return payload

    def _get_order(self, order_id: str, transport: Transport) -> tuple[int, dict[str, Any]]:
        path = f"/orders/{quote(order_id, safe='')}"
        status, payload = self._call("GET", path, order_id, transport=transport)
        _check_order_answer(payload, order_id, self._scrub)
        return status, payload

    def test_connection(self) -> tuple[bool, str]:
        """Check the credentials without side effects: look up an order id that cannot exist.

        One attempt, at most ``TEST_DEADLINE`` seconds: it backs the UI's Test button. Juspay's
        not-found answer proves the key works; a 404 without Juspay's body (a wrong base path) does not.
        """
        probe = f"airflow-provider-juspay-connection-test-{uuid.uuid4().hex}"
        short = Timeouts(
            connect=min(self.config.timeouts.connect, TEST_DEADLINE),
            read=min(self.config.timeouts.read, TEST_DEADLINE),
            deadline=min(self.config.timeouts.deadline, TEST_DEADLINE),
        )
        transport = _transport_for(replace(self.config, timeouts=short, pool_size=1))
        try:
            self._get_order(probe, transport)
        except NotFound:
            return True, f"Connected to {self.config.base_url}: Juspay accepted the API key."
        except AuthError as exc:
            return False, (
                f"Juspay at {endpoint_of(self.config.base_url)} refused the credentials: {exc}. A key works "
                "only in the environment that issued it: check the API key, the merchant id and the extra "
                "'environment' (sandbox | production)."
            )
        except JuspayError as exc:
            return False, f"Could not check the connection to {self.config.base_url}: {exc}"
        finally:
            transport.close()
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
        transport: Transport | None = None,
        gate: Gate | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """One request, no retry: the status and decoded body of a 2xx, else the matching error.

        A body that is not a JSON object is an :class:`UnexpectedResponse` (unless the status is
        5xx or 429, which are transient whatever the body says). ``gate`` is asked right before the
        request is written (see ``AttemptControl.admit``).
        """
        all_headers = {**self._headers, **headers} if headers else self._headers
        answer = (transport or self._transport).exchange(method, path, body, all_headers, order_id, gate)
        # Per thread: the attempt that made this call reads it (a pacing hint, when the server gives one).
        self._hints.last = parse_rate_limit(answer.rate_limit, answer.rate_limit_policy)
        payload = _decode(answer.data)
        transient = answer.status >= 500 or answer.status == 429
        if payload is None and not transient:
            raise UnexpectedResponse(
                f"HTTP {answer.status} with a body that is not Juspay's JSON "
                f"({self._scrub(_quote(answer.data))}); is the base URL right?",
                order_id=order_id,
                http_status=answer.status,
                error_code=ErrorCode.UNEXPECTED_RESPONSE,
            )
        if 200 <= answer.status < 300:
            return answer.status, payload or {}
        raise _error_for(answer.status, payload or {}, order_id, answer.retry_after, self._scrub)

    def abort_in_flight(self) -> int:
        """Cut the requests on the wire now (a run that is stopping); returns how many."""
        return self._transport.abort_in_flight()

    def _scrub(self, text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
        """Juspay's text made safe to keep: no API key or Basic token (a gateway may echo them back), no
        control characters or lone surrogates (the ledger and logs cannot hold them), at most ``limit``.
        """
        for secret in self._secrets:
            if secret and secret in text:
                text = text.replace(secret, "***")
        text = printable(text)
        return text if len(text) <= limit else text[: limit - 3] + "..."


def basic_token(api_key: str) -> str:
    """The Basic credentials Juspay takes: base64 of ``<api key>:``; as secret as the key."""
    return base64.b64encode(f"{api_key}:".encode()).decode("ascii")


def _transport_for(config: ClientConfig) -> Transport:
    """http.client by default; requests' adapter when a proxy from the environment applies."""
    host = urlsplit(config.base_url).hostname or ""
    proxies = {} if is_loopback(host) else get_environ_proxies(config.base_url)
    if proxies:
        return SessionTransport(
            config.base_url,
            timeouts=config.timeouts,
            pool_size=config.pool_size,
            proxies=proxies,
            max_answer_bytes=config.max_answer_bytes,
        )
    return StdlibTransport(
        config.base_url,
        timeouts=config.timeouts,
        pool_size=config.pool_size,
        max_answer_bytes=config.max_answer_bytes,
    )


def _decode(data: bytes) -> dict[str, Any] | None:
    """The answer as a JSON object; None when it is anything else."""
    try:
        payload = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None


def _quote(data: bytes) -> str:
    text = data[: QUOTED_CHARS * 4].decode("utf-8", "replace")
    text = " ".join(text.split())
    return repr(text[:QUOTED_CHARS] + ("..." if len(text) > QUOTED_CHARS else "")) if text else "empty"


#: Keys of Juspay's error envelope; a 4xx without any of them is not Juspay's answer.
_ENVELOPE = ("error_code", "error_message", "error_info", "status")


def _check_fulfilment_answer(payload: Mapping[str, Any], order_id: str, scrub: Any) -> None:
    """A 2xx counts as delivered only when it is Juspay's fulfilment answer for this order."""
    named = payload.get("order_id")
    if named is not None and str(named) != order_id:
        raise UnexpectedResponse(
            f"the answer names order {scrub(str(named)[:QUOTED_CHARS])!r}, not this one",
            order_id=order_id,
            error_code=ErrorCode.UNEXPECTED_RESPONSE,
        )
    if named is None and str(payload.get("status", "")).upper() != "SUCCESS":
        raise UnexpectedResponse(
            "the answer is JSON but not Juspay's fulfilment answer (no order_id, no SUCCESS status); "
            "is the base URL right?",
            order_id=order_id,
            error_code=ErrorCode.UNEXPECTED_RESPONSE,
        )


def _check_order_answer(payload: Mapping[str, Any], order_id: str, scrub: Any) -> None:
    """A 2xx of the Order Status API names the order and its status."""
    named = payload.get("order_id")
    if (named is not None and str(named) != order_id) or ("status" not in payload and named is None):
        raise UnexpectedResponse(
            "the answer is not Juspay's order status for this order; is the base URL right?",
            order_id=order_id,
            error_code=ErrorCode.UNEXPECTED_RESPONSE,
        )


def _error_for(
    status: int, payload: Mapping[str, Any], order_id: str, retry_after: str | None, scrub: Any
) -> ApiError:
    """Map a non-2xx answer to its error, keyed on ``error_info.code`` (Juspay's stable field)."""
    transient = status >= 500 or status == 429
    if not transient and not any(key in payload for key in _ENVELOPE):
        return UnexpectedResponse(
            f"HTTP {status} without Juspay's error body; is the base URL right?",
            order_id=order_id,
            http_status=status,
            error_code=ErrorCode.UNEXPECTED_RESPONSE,
        )
    found = payload.get("error_info")
    info: Mapping[str, Any] = found if isinstance(found, dict) else {}
    code = info.get("code") or payload.get("error_code") or None
    code = scrub(str(code), MAX_CODE_CHARS) if code is not None else None
    text = payload.get("error_message") or info.get("developer_message") or info.get("user_message")
    detail = scrub(str(text).strip()) if text else None
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


#: A 429 says "not now": the request was not processed, so it may be tried this many times as often.
RATE_LIMITED_ATTEMPTS_FACTOR = 4


class _stop_after_attempts:
    """Stop after ``max_attempts``, or after four times as many while Juspay answers 429: a burst of 429s
    is pushback for the pacing to absorb, not a failed row."""

    def __init__(self, max_attempts: int) -> None:
        self.max_attempts = max_attempts

    def __call__(self, state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        budget = self.max_attempts * (RATE_LIMITED_ATTEMPTS_FACTOR if isinstance(exc, RateLimited) else 1)
        return state.attempt_number >= budget


def _retrying(policy: RetryPolicy, tally: RetryTally) -> Retrying:
    """The retry policy as tenacity pieces; one instance serves all threads (its state is thread-local)."""

    def count_retry(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        tally.add(exc, state.attempt_number, state.next_action.sleep if state.next_action else 0.0)

    return Retrying(
        stop=_stop_after_attempts(policy.max_attempts),
        wait=_wait_retry_after_or_backoff(policy),
        retry=retry_if_exception(lambda exc: isinstance(exc, JuspayError) and exc.retryable),
        sleep=policy.sleep,
        before_sleep=count_retry,
        reraise=True,
    )
