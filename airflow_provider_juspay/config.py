"""Client settings: where Juspay is, who we are, how long to wait and how often to retry."""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from airflow_provider_juspay.errors import ConfigError
from airflow_provider_juspay.fulfilment import COMMAND_NAME, DEFAULT_TIMEZONE

__all__ = [
    "BASE_URLS",
    "DEFAULT_ENVIRONMENT",
    "ClientConfig",
    "RetryPolicy",
    "Timeouts",
    "base_url_for",
    "endpoint_of",
    "portal_url",
]

#: Juspay's global hosts by environment; other regions (EU, Brazil) are set through the host field.
BASE_URLS: dict[str, str] = {
    "sandbox": "https://sandbox.juspay.in",
    "production": "https://api.juspay.in",
}
DEFAULT_ENVIRONMENT = "sandbox"

#: Near Juspay's own SDKs (15 s / 30 s); a timeout is always set.
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 30.0
#: The whole exchange (connect, send, the complete answer): a server that trickles bytes cannot hold
#: a worker past it, which a per-read timeout alone allows.
DEFAULT_DEADLINE = 60.0
#: Juspay's answers are a few KB; a bigger one is not Juspay's and is not read into memory.
DEFAULT_MAX_ANSWER_BYTES = 1024 * 1024
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_INITIAL_WAIT = 0.5
DEFAULT_MAX_WAIT = 30.0
DEFAULT_POOL_SIZE = 32


@dataclass(frozen=True, kw_only=True)
class Timeouts:
    """Seconds to wait for a connection, for each read of the answer, and for the whole exchange."""

    connect: float = DEFAULT_CONNECT_TIMEOUT
    read: float = DEFAULT_READ_TIMEOUT
    deadline: float = DEFAULT_DEADLINE

    def __post_init__(self) -> None:
        for name in ("connect", "read", "deadline"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"timeout {name} must be a positive number of seconds, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How transient errors (429, 5xx, timeouts, dropped connections) are retried; never other 4xx.

    Waits grow exponentially from ``initial_wait`` up to ``max_wait``, with jitter; a 429's
    Retry-After is honoured up to ``max_wait``.
    """

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    initial_wait: float = DEFAULT_INITIAL_WAIT
    max_wait: float = DEFAULT_MAX_WAIT
    jitter: float = 0.5
    #: How to wait; tests pass a recorder so retries run instantly.
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be an integer >= 1, got {self.max_attempts!r}")
        if self.initial_wait < 0 or self.max_wait < 0 or self.jitter < 0:
            raise ConfigError("retry waits must not be negative")


@dataclass(frozen=True, kw_only=True)
class ClientConfig:
    """Everything a :class:`~airflow_provider_juspay.client.JuspayClient` needs; ``repr`` hides the key."""

    base_url: str
    merchant_id: str
    api_key: str = field(repr=False)
    timeouts: Timeouts = field(default_factory=Timeouts)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Connections the HTTP pool keeps open to Juspay (the bulk operator raises it to its
    #: ``max_concurrency``). Not the in-flight limit: that is the engine's ``max_concurrency`` (and the
    #: adaptive limit under it); a request beyond the pool's size opens a connection it does not keep.
    pool_size: int = DEFAULT_POOL_SIZE
    #: Zone that aware fulfilment times are converted to.
    timezone: str = DEFAULT_TIMEZONE
    #: Commands enabled for this merchant beyond the documented ones.
    extra_commands: tuple[str, ...] = ()
    #: Longest answer body read; a longer one is a transient failure (ANSWER_TOO_LARGE).
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES

    def __post_init__(self) -> None:
        if not self.merchant_id or not str(self.merchant_id).strip():
            raise ConfigError("merchant id is missing (the connection's login field)")
        if not re.fullmatch(r"[\x21-\x7e]{1,128}", self.merchant_id):
            raise ConfigError(
                "merchant id must be 1-128 printable ASCII characters without spaces "
                "(it travels as the x-merchantid header and is part of every ledger key)"
            )
        bad = [c for c in self.extra_commands if not COMMAND_NAME.fullmatch(c)]
        if bad:
            raise ConfigError(f"extra_commands must be names like SHIP_NOTICE (A-Z, 0-9, _), got {bad!r}")
        if not self.api_key:
            raise ConfigError("API key is missing (the connection's password field)")
        if self.pool_size < 1:
            raise ConfigError(f"pool_size must be >= 1, got {self.pool_size!r}")
        if self.max_answer_bytes < 1024:
            raise ConfigError(f"max_answer_bytes must be >= 1024, got {self.max_answer_bytes!r}")
        object.__setattr__(self, "base_url", check_base_url(self.base_url))


#: Juspay's merchant dashboards: where people look at the orders a sync told Juspay about.
PORTALS: dict[str, str] = {
    "sandbox": "https://sandbox.portal.juspay.in",
    "production": "https://portal.juspay.in",
}


def portal_url(base_url: str) -> str:
    """The dashboard of an API base URL: sandbox hosts (and the local sandbox) get the sandbox one."""
    host = urlsplit(base_url).hostname or ""
    return PORTALS["sandbox"] if "sandbox" in host or is_loopback(host) else PORTALS["production"]


def base_url_for(host: str | None, environment: str | None, port: int | None = None) -> str:
    """The base URL from an explicit host (and port), else from the environment name.

    A host without a scheme (a connection URI splits it off) is https, or plain http for a loopback
    host (the sandbox); a port given apart (the URI form, or the form's port field) is kept.
    """
    if host and host.strip():
        host = host.strip()
        if "://" not in host:
            hostname = urlsplit(f"//{host}").hostname or host
            host = f"{'http' if is_loopback(hostname) else 'https'}://{host}"
        parts = urlsplit(host)
        if port and parts.port is None and parts.hostname:
            host = parts._replace(netloc=f"{parts.netloc}:{int(port)}").geturl()
        return host
    env = (environment or DEFAULT_ENVIRONMENT).strip().lower()
    if env not in BASE_URLS:
        raise ConfigError(f"environment must be one of {', '.join(BASE_URLS)}, got {environment!r}")
    return BASE_URLS[env]


def endpoint_of(base_url: str) -> str:
    """Which Juspay a base URL is, in words for error messages: ``the sandbox environment (URL)``."""
    for name, url in BASE_URLS.items():
        if base_url.rstrip("/") == url:
            return f"the {name} environment ({url})"
    host = urlsplit(base_url).hostname or ""
    if is_loopback(host):
        return f"a local sandbox ({base_url})"
    return f"the connection's host ({base_url})"


def check_base_url(url: str) -> str:
    """Refuse anything but https, or plain http to a loopback host (the sandbox)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"base URL must be http(s)://host[:port], got {url!r}")
    if parts.username or parts.password:
        raise ConfigError("base URL must not carry credentials; use the connection's login and password")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(
            f"plain http is only allowed to a loopback host (the sandbox); use https for {parts.hostname}"
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def is_loopback(hostname: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1."""
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False
