"""The exceptions the provider raises, drawn once here.

::

    JuspayError
    ├── ConfigError(JuspayError, ValueError)   bad connection or config; names the missing field
    │   └── MappingError                       the source's columns name no field a record needs
    ├── RecordError(JuspayError, ValueError)   a record broke a rule          -> outcome "invalid"
    ├── RunStopped                             the run is stopping (breaker, signal, refused key)
    │                                                                          -> "not_attempted"
    └── ApiError                               Juspay could not be reached or said no
        ├── TransportError   timeouts, dropped connections   retryable  -> "failed" once retries run out
        ├── RateLimited      429, carries retry_after        retryable  -> "failed" once retries run out
        ├── ServerError      5xx                             retryable  -> "failed" once retries run out
        ├── UnexpectedResponse  an answer that is not Juspay's (wrong base URL, a portal, a proxy page)
        │                                                               -> "failed", trips the breaker
        ├── AuthError        401/403; stops the run                     -> later rows "not_attempted"
        └── Rejected         any other 4xx; permanent                   -> "rejected"
            └── NotFound     Juspay does not know the order (RESOURCE_NOT_FOUND)

No error ever carries the API key: messages are built from order ids, codes and Juspay's messages only.
"""

from __future__ import annotations

__all__ = [
    "ApiError",
    "AuthError",
    "ConfigError",
    "JuspayError",
    "MappingError",
    "NotFound",
    "RateLimited",
    "RecordError",
    "Rejected",
    "RunStopped",
    "ServerError",
    "TransportError",
    "UnexpectedResponse",
]


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


class RunStopped(JuspayError):
    """The run is stopping, so no further request leaves; ``error_code`` names why."""

    def __init__(self, message: str, *, error_code: str) -> None:
        self.error_code = error_code
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
        self.error_code = error_code
        #: Juspay's own words (``error_message``), without our prefix; for reports.
        self.detail = detail
        super().__init__(message)


class TransportError(ApiError):
    """The request did not complete: timeout, refused or dropped connection. Safe to retry."""

    retryable = True


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
