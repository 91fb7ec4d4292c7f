"""The ``juspay://`` asset URI: a merchant's fulfilments at Juspay, what a push task produces.

``juspay://<merchant id>/fulfillment``. Registered under ``asset-uris`` in the provider info, so
Airflow checks and normalises such URIs when a DAG declares them: the scheme and path in lower case,
the British ``fulfilment`` accepted for Juspay's ``fulfillment``, a trailing slash dropped.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from urllib.parse import SplitResult

    from airflow.sdk import Asset

__all__ = ["RESOURCE", "SCHEME", "asset_uri", "create_asset", "merchant_of", "sanitize_uri"]

SCHEME = "juspay"
RESOURCE = "fulfillment"
# URL-safe merchant ids only (unreserved characters), so the id is the URI's authority unchanged.
_MERCHANT = re.compile(r"[A-Za-z0-9._~-]{1,128}")
_PATHS = {"", "/", "/fulfillment", "/fulfillment/", "/fulfilment", "/fulfilment/"}


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Airflow's handler of ``juspay://`` URIs: the canonical form, or a ValueError that says why."""
    merchant = uri.netloc
    if not merchant:
        raise ValueError("a juspay:// asset URI names the merchant: juspay://<merchant id>/fulfillment")
    if not _MERCHANT.fullmatch(merchant):
        raise ValueError(
            f"juspay:// asset URI: {merchant!r} is not a merchant id (letters, digits, '.', '_', '~', '-'; "
            "no user, password or port)"
        )
    if uri.path.lower() not in _PATHS:
        raise ValueError(f"juspay:// asset URI: the path must be /fulfillment, got {uri.path!r}")
    if uri.query or uri.fragment:
        raise ValueError(
            "juspay:// asset URI: no query or fragment (the run's summary goes in the event's extra)"
        )
    return uri._replace(scheme=SCHEME, path=f"/{RESOURCE}")


def asset_uri(merchant_id: str) -> str:
    """The URI of a merchant's fulfilments at Juspay."""
    return f"{SCHEME}://{merchant_id}/{RESOURCE}"


def create_asset(*, merchant_id: str, name: str | None = None, extra: dict[str, Any] | None = None) -> Asset:
    """The Asset a push task of ``merchant_id`` produces (the ``factory`` of the provider info)."""
    from airflow.sdk import Asset

    uri = asset_uri(merchant_id)
    return Asset(uri=uri, name=name or uri, extra=extra or {})


def merchant_of(uri: str) -> str | None:
    """The merchant id of a ``juspay://`` URI, or None for any other URI."""
    prefix = f"{SCHEME}://"
    if not uri.lower().startswith(prefix):
        return None
    return uri[len(prefix) :].split("/", 1)[0] or None
