"""The IETF ``RateLimit`` and ``RateLimit-Policy`` headers (draft-ietf-httpapi-ratelimit-headers), read
when a server sends them: a published quota caps the pace, an exhausted one pauses until it resets.

Both the structured-field form of the later drafts (``RateLimit-Policy: "default";q=100;w=10``,
``RateLimit: "default";r=0;t=7``) and the earlier one (``RateLimit-Policy: 100;w=10``,
``RateLimit: limit=100, remaining=0, reset=7``) are understood; anything else is ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["RateLimitHint", "parse_rate_limit"]

_PARAM = re.compile(r"(?:^|[;,\s])([a-z]+)\s*=\s*\"?([0-9]+(?:\.[0-9]+)?)")
_LEADING_NUMBER = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(?:;|$)")


@dataclass(frozen=True)
class RateLimitHint:
    """What the headers said: requests per second allowed, requests left now, seconds until reset."""

    rate: float | None = None
    remaining: float | None = None
    reset_s: float | None = None


def parse_rate_limit(rate_limit: str | None, policy: str | None) -> RateLimitHint | None:
    """The hint in a response's ``RateLimit`` and ``RateLimit-Policy`` headers, or None without them."""
    if not rate_limit and not policy:
        return None
    rate = None
    if policy:
        # The first policy (a header may list several, comma separated): quota per window.
        first = policy.split(",")[0]
        values = dict(_PARAM.findall(first))
        quota = values.get("q")
        if quota is None and (leading := _LEADING_NUMBER.match(first)):
            quota = leading.group(1)
        window = float(values.get("w", "1") or 1)
        if quota is not None and window > 0:
            rate = float(quota) / window
    remaining = reset = None
    if rate_limit:
        values = dict(_PARAM.findall(rate_limit.split(",")[0] if ";" in rate_limit else rate_limit))
        remaining = _number(values.get("r", values.get("remaining")))
        reset = _number(values.get("t", values.get("reset")))
    if rate is None and remaining is None and reset is None:
        return None
    return RateLimitHint(rate=rate, remaining=remaining, reset_s=reset)


def _number(text: str | None) -> float | None:
    return None if text is None else float(text)
