"""The exceptions the provider raises, drawn once here.

::

    JuspayError
    ├── ConfigError(JuspayError, ValueError)   bad connection or config; names the missing field
    │   └── MappingError                       the source's columns name no field a record needs
    ├── RecordError(JuspayError, ValueError)   a record broke a rule          -> outcome "invalid"
    ├── SourceFileError                        a source file cannot be read any further; names the
    │                                          file and line (its rows read so far are kept)
    ├── LeaseLost                              the ledger lease could not be renewed: the run stops
    ├── RunStopped                             the run is stopping (breaker, signal, refused key)
    │                                                                          -> "not_attempted"
    └── ApiError                               Juspay could not be reached or said no
        ├── TransportError   timeouts, dropped connections   retryable  -> "failed" once retries run out
        │   ├── TimedOut     no complete answer in time (code TIMEOUT); in numbers, a sign of overload
        │   └── Cancelled    cut short because the run is stopping      -> "not_attempted" (the stop)
        ├── TlsError         the TLS handshake failed (a proxy, a wrong host); trips the breaker
        ├── RateLimited      429, carries retry_after        retryable  -> "failed" once retries run out
        ├── ServerError      5xx                             retryable  -> "failed" once retries run out
        ├── UnexpectedResponse  an answer that is not Juspay's (wrong base URL, a portal, a proxy page)
        │                                                               -> "failed", trips the breaker
        ├── AuthError        401/403; stops the run                     -> later rows "not_attempted"
        └── Rejected         any other 4xx; permanent                   -> "rejected"
            └── NotFound     Juspay does not know the order (RESOURCE_NOT_FOUND)

Every code the provider itself gives a result or a stop is an :class:`ErrorCode`; Juspay's own codes
(``ALREADY_EXISTS`` aside) are passed on as it sends them.

No error ever carries the API key: messages are built from order ids, codes and Juspay's messages only.
"""

from __future__ import annotations

from enum import Enum

__all__ = [
    "ApiError",
    "AuthError",
    "Cancelled",
    "ConfigError",
    "ErrorCode",
    "JuspayError",
    "LeaseLost",
    "LedgerUnusable",
    "MappingError",
    "NotFound",
    "RateLimited",
    "RecordError",
    "Rejected",
    "RunStopped",
    "ServerError",
    "SourceFileError",
    "TimedOut",
    "TlsError",
    "TransportError",
    "UnexpectedResponse",
]


class ErrorCode(str, Enum):
    """The codes the provider gives a result (``error_code``) or a stop; compare equal to their text."""

    # A row's own code.
    #: The row broke a rule of the API (outcome ``invalid``).
    INVALID_RECORD = "INVALID_RECORD"
    #: A delivered key's payload changed since, with ``on_change="fail"`` (outcome ``invalid``).
    CHANGED_AFTER_DELIVERY = "CHANGED_AFTER_DELIVERY"
    #: Juspay already has this fulfilment (outcome ``already_fulfilled``).
    ALREADY_EXISTS = "ALREADY_EXISTS"
    #: The answer was not Juspay's (wrong base URL, a portal or proxy page).
    UNEXPECTED_RESPONSE = "UNEXPECTED_RESPONSE"
    #: No complete answer in time.
    TIMEOUT = "TIMEOUT"
    #: The connection was refused or dropped.
    CONNECTION_ERROR = "CONNECTION_ERROR"
    #: The answer was larger than any Juspay sends.
    ANSWER_TOO_LARGE = "ANSWER_TOO_LARGE"
    #: The TLS handshake failed.
    TLS_ERROR = "TLS_ERROR"
    #: A key left in flight by a process that died; sent again by the next run (ledger reports).
    ABANDONED_IN_FLIGHT = "ABANDONED_IN_FLIGHT"
    # Why a run stopped (the code its unsent rows carry, outcome ``not_attempted``).
    #: Cancelled: a signal, a timeout of the task, ``on_kill``.
    CANCELLED = "CANCELLED"
    #: Juspay refused the credentials.
    UNAUTHORIZED = "UNAUTHORIZED"
    #: Too many requests failed: the breaker opened.
    CIRCUIT_OPEN = "CIRCUIT_OPEN"
    #: Answers in a row that were not Juspay's: the breaker opened.
    UNEXPECTED_RESPONSES = "UNEXPECTED_RESPONSES"
    #: Nothing but 429s for ``max_throttled_s``: the breaker opened.
    THROTTLED = "THROTTLED"
    #: The run ended on an error of its own (the database gone, a timeout).
    ABORTED = "ABORTED"
    #: The run's ledger lease lapsed (a pause, a hung connection, no progress): it sends nothing more.
    LEASE_LOST = "LEASE_LOST"
    # A row's own code again, for a key another run holds.
    #: Another run holds the key without renewing its lease past the wait limit (outcome ``not_attempted``).
    HELD_BY_STALLED_RUN = "HELD_BY_STALLED_RUN"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


def code_text(code: str | None) -> str | None:
    """A code as plain text (what reports, XCom and the ledger hold)."""
    return None if code is None else str(code)


class JuspayError(Exception):
    """Root of every error this package raises."""

    #: Whether sending the same request again may succeed.
    retryable: bool = False


class ConfigError(JuspayError, ValueError):
    """The connection or configuration is unusable; the message names the field."""


class MappingError(ConfigError):
    """The source's columns name no record field for a required one: every row would be invalid."""


class RecordError(JuspayError, ValueError):
    """A record broke a rule; carries the order id, field, value and rule."""

    def __init__(self, order_id: str | None, field: str, value: object, rule: str) -> None:
        self.order_id = order_id
        self.field = field
        self.value = value
        self.rule = rule
        #: The row's identifying fields as given (command, fulfilment id...), for the failure export.
        self.fields: dict[str, str] = {}
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        # An invalid id is shown as the field's value, never as a "missing" order.
        super().__init__(
            f"order {order_id}: {field}={shown}: {rule}" if order_id else f"{field}={shown}: {rule}"
        )


class SourceFileError(JuspayError):
    """A source file cannot be read any further (missing, not its format, cut short); names file and line."""


class LedgerUnusable(JuspayError):
    """The ledger's database cannot be used as it is (a SQLite file that cannot switch to WAL); the
    message names the fix. Not a set-up mistake for good: another process may let the file go, so an
    Airflow retry may pass."""


class LeaseLost(JuspayError):
    """This run no longer holds its ledger lease (not renewed in time, or keys taken over): it sends
    nothing more, and stops."""

    retryable = True


class RunStopped(JuspayError):
    """The run is stopping, so no further request leaves; ``error_code`` names why."""

    def __init__(self, message: str, *, error_code: str) -> None:
        self.error_code = str(error_code)
        super().__init__(message)


class ApiError(JuspayError):
    """Juspay could not be reached, or answered with an error."""

    def __init__(
        self,
        message: str,
        *,
        order_id: str | None = None,
        http_status: int | None = None,
        error_code: str | None = None,
        detail: str | None = None,
    ) -> None:
        self.order_id = order_id
        self.http_status = http_status
        self.error_code = code_text(error_code)
        #: Juspay's own words (``error_message``), without our prefix; for reports.
        self.detail = detail
        super().__init__(message)


class TransportError(ApiError):
    """The request did not complete: timeout, refused or dropped connection. Safe to retry."""

    retryable = True


class TimedOut(TransportError):
    """No complete answer within the timeouts or the request's deadline (code ``TIMEOUT``). Safe to retry."""


class Cancelled(TransportError):
    """The request was cut short because the run is stopping: not Juspay's fault (the breaker ignores it);
    its retry meets the stop, so the row ends ``not_attempted``."""


class TlsError(ApiError):
    """The TLS handshake failed: a proxy in the way or the wrong host; sending again will not help."""


class RateLimited(ApiError):
    """Juspay answered 429; ``retry_after`` is its Retry-After in seconds, if it sent one. Safe to retry."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class ServerError(ApiError):
    """Juspay answered 5xx. Safe to retry."""

    retryable = True


class UnexpectedResponse(ApiError):
    """The answer is not Juspay's (not its JSON, or about another order): never counted as delivered."""


class AuthError(ApiError):
    """Juspay refused the credentials (401/403); no later request can succeed."""


class Rejected(ApiError):
    """Juspay refused this request permanently (a 4xx other than 401/403/429)."""


class NotFound(Rejected):
    """Juspay does not know the order (``RESOURCE_NOT_FOUND``)."""
